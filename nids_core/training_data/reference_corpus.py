"""The labelled reference corpus: captures of other networks that a champion is trained on
when live traffic carries no labels. Kept apart from live data: it is read from its own
locations and stored under `reference/` in the cold store, never in the hot table, the
alerts or the live `flows/` partitions.

Each file is one capture, named by its file (`capture_name`) and identified by the SHA-256
of its content (gunzipped, so recompressing a file changes nothing); each capture belongs to
a network of a kind (nids_core.training_data.networks: its own, unless a `networks.toml`
beside it groups it with others).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import fsspec
import polars as pl

from nids_core.checksum import sha256_hex
from nids_core.schema import LABEL_MALICIOUS
from nids_core.stores.cold import ColdStore
from nids_core.training_data.networks import (
    MANIFEST_NAME,
    Network,
    assign_networks,
    default_network,
    parse_manifest,
)
from nids_core.zeek.files import (
    DEFAULT_MAX_FILE_BYTES,
    FileTooLarge,
    capture_name,
    gunzip,
    parse_zeek_bytes,
)
from nids_core.zeek.normalize import ParseResult

REFERENCE_DIR = "reference"
# What a Zeek conn log is called in the wild; anything else in a location (READMEs,
# licences, hidden files) is not part of the corpus.
_LOG_SUFFIXES = (".gz", ".log", ".csv", ".json", ".jsonl", ".labeled", ".tsv")


class ReferenceCorpusError(ValueError):
    """The corpus as configured cannot be used (a location, a name clash, a missing read)."""


@dataclass(frozen=True)
class ReferenceFile:
    """One capture file: its partition key, where it is, a cheap change signature, and the
    network it belongs to."""

    capture: str
    url: str
    signature: str  # size and modification time (or ETag): changes when the file does
    network: Network | None = None


def _is_log(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(_LOG_SUFFIXES)


def list_reference_files(
    locations: Sequence[str], storage_options: dict | None = None
) -> list[ReferenceFile]:
    """The capture files directly under each location (a folder or `s3://bucket/prefix`),
    sorted by capture, each with its network (from a `networks.toml` in the location, else
    its own, of the kind named by the location's folder). Two files that name the same
    capture are an error: they would be one partition."""
    files: dict[str, ReferenceFile] = {}
    for location in locations:
        opts = storage_options if location.startswith("s3://") else {}
        fs, root = fsspec.core.url_to_fs(location, **(opts or {}))
        fs.invalidate_cache(root)
        if not fs.isdir(root):
            raise ReferenceCorpusError(f"reference corpus location {location} is not a folder")
        protocol = location.split("://", 1)[0] + "://" if "://" in location else ""
        listing = fs.ls(root, detail=True)
        folder = root.rstrip("/").rsplit("/", 1)[-1]
        manifest: dict[str, Network] = {}
        for info in listing:
            if info["name"].rstrip("/").rsplit("/", 1)[-1] == MANIFEST_NAME:
                source = f"{protocol}{info['name']}"
                with fs.open(info["name"], "rb") as fh:
                    text = fh.read(1 << 20).decode("utf-8", errors="replace")
                manifest = parse_manifest(text, source)
        for info in listing:
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            if info.get("type") != "file" or not _is_log(name):
                continue
            changed = info.get("ETag") or info.get("mtime") or info.get("LastModified")
            capture = capture_name(name)
            ref = ReferenceFile(
                capture,
                f"{protocol}{info['name']}",
                f"{info.get('size')}:{changed}",
                manifest.get(capture) or default_network(capture, folder),
            )
            if ref.capture in files:
                raise ReferenceCorpusError(
                    f"two reference files name capture {ref.capture}: "
                    f"{files[ref.capture].url} and {ref.url}; rename one"
                )
            files[ref.capture] = ref
    return [files[c] for c in sorted(files)]


def read_reference_file(
    ref: ReferenceFile,
    storage_options: dict | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> bytes:
    """The file's bytes as stored; FileTooLarge past `max_bytes` (read no further)."""
    opts = storage_options if ref.url.startswith("s3://") else {}
    with fsspec.open(ref.url, "rb", **(opts or {})) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLarge(
            f"{ref.url}: is larger than {max_bytes / 2**20:.0f} MB, the limit on one file "
            "(NIDS_MAX_FILE_MB)"
        )
    return data


def stored_path(capture: str, sha256: str) -> str:
    """Where a capture's flows are stored in the cold store, per content version."""
    return f"{REFERENCE_DIR}/capture={capture}/{sha256}.parquet"


@dataclass(frozen=True)
class ReferenceSummary:
    capture: str
    sha256: str
    flows: int
    labelled: int
    attacks: int
    unreadable: int
    reject_reasons: dict[str, int]
    repeated: int = 0  # rows repeated whole, read once

    def as_metadata(self) -> dict:
        return {
            "capture": self.capture,
            "sha256": self.sha256,
            "flows": self.flows,
            "labelled_flows": self.labelled,
            "attack_flows": self.attacks,
            "unlabelled_flows": self.flows - self.labelled,
            "unreadable_rows": self.unreadable,
            "repeated_rows_read_once": self.repeated,
            "unreadable_reasons": ", ".join(
                f"{n} x {r}" for r, n in sorted(self.reject_reasons.items(), key=lambda kv: -kv[1])
            )
            or "none",
        }


def parse_reference(
    data: bytes, capture: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[pl.DataFrame, ReferenceSummary]:
    """A capture file's flows (every readable row, labelled or not) and its summary.
    Raises NotZeekConnLog when the file is not a conn log at all, FileTooLarge when it
    decompresses past `max_bytes`."""
    content = gunzip(data, max_bytes, capture)
    parsed: ParseResult = parse_zeek_bytes(content, capture)
    flows = parsed.flows.drop("position").with_columns(pl.lit(capture).alias("capture"))
    reasons = {r: int(n) for r, n in parsed.rejects.group_by("error").len().iter_rows()}
    summary = ReferenceSummary(
        capture=capture,
        sha256=sha256_hex(content),  # the gunzipped content, as content_sha256(data)
        flows=flows.height,
        labelled=int(flows["label"].is_not_null().sum()),
        attacks=int((flows["label"] == LABEL_MALICIOUS).sum()),
        unreadable=parsed.rejects.height,
        reject_reasons=reasons,
        repeated=parsed.duplicates,
    )
    return flows, summary


def corpus_digest(versions: dict[str, str]) -> str:
    """One name for a whole corpus version: {capture: sha256} hashed."""
    text = "\n".join(f"{c}={s}" for c, s in sorted(versions.items()))
    return sha256_hex(text, 16)


def missing_versions(store: ColdStore, versions: dict[str, str]) -> list[str]:
    """Captures whose current content has not been read into the store yet."""
    return [c for c, sha in sorted(versions.items()) if not store.exists(stored_path(c, sha))]


def load_reference_corpus(
    store: ColdStore, versions: dict[str, str], networks: dict[str, Network] | None = None
) -> pl.DataFrame:
    """The stored flows of each capture at its current content version, `capture` being
    its network's name and `network_kind` its kind (`networks`: {capture: Network}; a
    capture not in it is its own network). Raises when one has not been read yet, naming
    the partitions to materialize (training on an older version of a file than the one on
    disk would be silent and wrong)."""
    missing = missing_versions(store, versions)
    if missing:
        raise ReferenceCorpusError(
            f"reference captures not read at their current content: {', '.join(missing)}; "
            "materialize those partitions of reference_flows (the reference_corpus_sensor "
            "requests them)"
        )
    frames = [store.read_frame(stored_path(c, sha)) for c, sha in sorted(versions.items())]
    if not frames:
        return pl.DataFrame()
    return assign_networks(pl.concat(frames, how="vertical_relaxed"), networks or {})


def read_corpus(
    locations: Sequence[str],
    storage_options: dict | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> tuple[pl.DataFrame, list[ReferenceSummary]]:
    """Every capture file of `locations` read at once (as reference_flows reads each), its
    rows' `capture` being their network and `network_kind` its kind: what benchmarks and
    tools read without the platform's store. Returns the flows and one summary per file."""
    files = list_reference_files(locations, storage_options)
    frames, summaries = [], []
    for ref in files:
        flows, summary = parse_reference(
            read_reference_file(ref, storage_options, max_bytes), ref.capture, max_bytes
        )
        frames.append(flows)
        summaries.append(summary)
    networks = {f.capture: f.network for f in files if f.network is not None}
    flows = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    return (assign_networks(flows, networks) if frames else flows), summaries
