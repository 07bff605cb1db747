"""Find the data directory, and download the official IoT-23 files for users who have none.

The labelled captures are not ours to redistribute, so they are never committed: the data
directory is `$NIDS_DATA_DIR`, else `./data`, else `../shared/data`.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nids_core.checksum import sha256_hex
from nids_core.training_data.networks import DATA_DIR_KINDS
from nids_core.zeek.files import DEFAULT_MAX_FILE_BYTES, gunzip

IOT23_SUBDIR = "iot23"
SAMPLES_SUBDIR = "zeek-samples"


class DataDirNotFound(FileNotFoundError):
    pass


class ChecksumMismatch(ValueError):
    pass


def candidate_dirs(cwd: Path | None = None) -> list[Path]:
    cwd = cwd or Path.cwd()
    dirs = []
    if os.environ.get("NIDS_DATA_DIR"):
        dirs.append(Path(os.environ["NIDS_DATA_DIR"]))
    dirs += [cwd / "data", cwd.parent / "shared" / "data"]
    return dirs


def find_data_dir(cwd: Path | None = None) -> Path:
    """The first candidate that exists: $NIDS_DATA_DIR, ./data, ../shared/data."""
    for d in candidate_dirs(cwd):
        if d.is_dir():
            return d
    tried = ", ".join(str(d) for d in candidate_dirs(cwd))
    raise DataDirNotFound(
        f"no data directory found (tried {tried}); set NIDS_DATA_DIR or run `nids data download`"
    )


def iot23_files(data_dir: Path) -> list[Path]:
    """The IoT-23 captures in a data directory, sorted by name."""
    d = data_dir / IOT23_SUBDIR
    return sorted(p for p in d.glob("*.gz") if p.is_file()) if d.is_dir() else []


def labelled_folders(data_dir: Path) -> list[Path]:
    """The data directory's folders of labelled captures (IoT-23, Botnet-4, UWF-ZeekData22)
    that are there."""

    return [data_dir / f for f in DATA_DIR_KINDS if (data_dir / f).is_dir()]


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: name on disk, URL, SHA-256 of its *uncompressed* content.

    Hashing the content rather than the bytes lets a mirror serve it plain or gzipped.
    """

    name: str
    url: str
    content_sha256: str


# The IoT-23 captures used by the demo and the benchmarks, at pinned commits of the public
# repositories named in the data README (CSV conversions by aucad/sensor-data; the native
# Zeek log of capture 34-1 as published by Stratosphere Lab, mirrored by sinanw).
_AUCAD = "https://raw.githubusercontent.com/aucad/sensor-data/d3721027/iot-23"
_SINANW = "https://raw.githubusercontent.com/sinanw/ml-classification-malicious-network-traffic/e0db1d06/data/raw"
IOT23_FILES: list[RemoteFile] = [
    *(
        RemoteFile(f"{n}-labeled.csv.gz", f"{_AUCAD}/{n}-labeled.csv.gz", h)
        for n, h in [
            (
                "CTU-Honeypot-Capture-4-1",
                "a06bffea764fee031fabc272f9a02b6ba82ca280d9b22e68bf6c7150e935ad36",
            ),
            (
                "CTU-Honeypot-Capture-5-1",
                "8f42c8840abc7b03e3a44dd469b360d10c3e0dfbfca64f7f42565e045af6c9f0",
            ),
            (
                "CTU-Honeypot-Capture-7-1",
                "eb57856b0b724da53fe2df82e1eb030e46dd1aaa10b6895a514fd3780879b426",
            ),
            (
                "CTU-Malware-Capture-20-1",
                "3317826d4fc14949110bee6a679a51da971d8702b18c368f03168ec030cb4e38",
            ),
            (
                "CTU-Malware-Capture-21-1",
                "223f8a0ff991ee7477c4ff313325ce167a3e23cd29012e0e51d62a9c6075a13d",
            ),
            (
                "CTU-Malware-Capture-42-1",
                "7c2046c416e4cbcb69877af4579b0d414349d7a765ab48b48bfaa3c116057060",
            ),
            (
                "CTU-Malware-Capture-8-1",
                "6e5cfe72ee4cbaabfec277e4ab38f649e73a84f3ef3076ce88b3e1eb883d1428",
            ),
        ]
    ),
    RemoteFile(
        "CTU-Malware-Capture-34-1.conn.log.labeled.gz",
        f"{_SINANW}/conn.log.labeled",
        "7d1d052835439d77dae246b588d7628813bbdef21fdf3b323f4b3eb2c61ef146",
    ),
]


def content_sha256(data: bytes, max_bytes: int = DEFAULT_MAX_FILE_BYTES, name: str = "file") -> str:
    """SHA-256 of the content, gunzipped (bounded: FileTooLarge past `max_bytes`)."""
    return sha256_hex(gunzip(data, max_bytes, name))


def download(
    files: list[RemoteFile], dest: Path, base_url: str | None = None, timeout_s: float = 60
) -> list[Path]:
    """Download and verify files into `dest/iot23/`; a file that fails its checksum is not kept.

    base_url replaces each URL's directory (a mirror, or a local server in tests).
    """
    out_dir = dest / IOT23_SUBDIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        target = out_dir / f.name
        if target.exists() and content_sha256(target.read_bytes()) == f.content_sha256:
            written.append(target)
            continue
        url = f"{base_url.rstrip('/')}/{f.name}" if base_url else f.url
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            data = resp.read()
        got = content_sha256(data)
        if got != f.content_sha256:
            raise ChecksumMismatch(
                f"{f.name} from {url}: content SHA-256 {got} != expected {f.content_sha256}; not saved"
            )
        if data[:2] != b"\x1f\x8b":
            data = gzip.compress(data, mtime=0)
        with tempfile.NamedTemporaryFile(dir=out_dir, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)
        written.append(target)
    return written
