"""The reference corpus resource: where the labelled captures of other networks are read."""

from dagster import ConfigurableResource, ResourceDependency
from pydantic import Field, field_validator

from nids_core.training_data.data_dir import content_sha256
from nids_core.training_data.reference_corpus import (
    ReferenceCorpusError,
    ReferenceFile,
    list_reference_files,
    read_reference_file,
)
from nids_core.zeek.files import FileTooLarge
from nids_resources.settings import setting
from nids_resources.stores import ColdStoreResource


class ReferenceCorpusResource(ConfigurableResource):
    """Labelled Zeek conn logs of other networks, one capture per file (TSV, JSON or CSV,
    plain or gzip; a `networks.toml` beside them may group files into networks): the data
    directory's labelled captures and the user's own folder or
    `s3://bucket/prefix` (read with the cold store's S3 settings)."""

    locations: list[str] = Field(
        default_factory=list, description="Folders or s3:// prefixes holding capture files."
    )
    include_data_dir: bool = setting(
        True,
        env="NIDS_REFERENCE_DATA_DIR",
        description="Reference corpus includes the data directory's labelled captures "
        "(IoT-23, Stratosphere Botnet-4, UWF-ZeekData22) (true/false)",
    )
    url: str | None = setting(
        None,
        env="NIDS_REFERENCE_URL",
        description="Folder or s3://bucket/prefix of your own labelled Zeek conn logs "
        "(reference corpus)",
    )
    max_file_mb: int = setting(
        512,
        env="NIDS_MAX_FILE_MB",
        description="Largest capture file read (reference corpus, `nids model evaluate`), "
        "in MB once decompressed",
        ge=1,
    )
    cold_store: ResourceDependency[ColdStoreResource]

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 2**20

    @field_validator("url")
    @classmethod
    def _folder_or_s3(cls, value: str | None) -> str | None:
        from pathlib import Path

        if value is None:
            return None
        if "://" in value and not value.startswith("s3://"):
            raise ValueError("use a folder or s3://bucket/prefix")
        if "://" not in value and not Path(value).is_dir():
            raise ValueError("is not a folder")
        return value if "://" in value else str(Path(value).resolve())

    def all_locations(self) -> list[str]:
        """`locations`, the data directory's folders of labelled captures (with
        `include_data_dir`, those there are) and `url`."""
        from nids_core.training_data.data_dir import (
            DataDirNotFound,
            find_data_dir,
            labelled_folders,
        )

        found = list(self.locations)
        if self.include_data_dir:
            try:
                data_dir = find_data_dir()
            except DataDirNotFound:  # no data directory: only the other locations
                data_dir = None
            if data_dir is not None:
                found += [str(f.resolve()) for f in labelled_folders(data_dir)]
        if self.url:
            found.append(self.url)
        return found

    def _options(self) -> dict:
        return self.cold_store.storage_options()

    def files(self) -> list[ReferenceFile]:
        locations = self.all_locations()
        if not locations:
            raise ReferenceCorpusError(
                "no reference corpus: no data directory with labelled captures was found and "
                "NIDS_REFERENCE_URL is unset; run `nids data download` or set NIDS_REFERENCE_URL"
            )
        return list_reference_files(locations, self._options())

    def networks(self) -> dict:
        """{capture: Network} of the files there now."""
        return {f.capture: f.network for f in self.files() if f.network is not None}

    def read(self, ref: ReferenceFile) -> bytes:
        return read_reference_file(ref, self._options(), self.max_file_bytes)

    def versions(self, known: dict[str, list[str]] | None = None) -> dict[str, str]:
        """{capture: SHA-256 of its content} for the files there now. With `known`
        ({capture: [signature, sha256]}, updated in place), only files whose size or
        modification time changed are read and hashed again."""
        known = {} if known is None else known
        versions = {}
        for ref in self.files():
            signature, sha = known.get(ref.capture, [None, None])
            if signature != ref.signature or sha is None:
                try:
                    sha = content_sha256(self.read(ref), self.max_file_bytes, ref.url)
                except FileTooLarge:
                    # Its run is requested and fails saying so; the other files go on.
                    sha = f"too-large:{ref.signature}"
            known[ref.capture] = [ref.signature, sha]
            versions[ref.capture] = sha
        for gone in set(known) - set(versions):
            del known[gone]
        return versions
