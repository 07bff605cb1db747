"""The one checksum of the project: SHA-256, as hex, of bytes, of text, or of a folder.

Every content identity goes through here: a reference capture's content, a model's files
(checked before unpickling), a corpus version, and the stable ids of evidence, alerts and
allow-list entries, a landed batch's records (a prefix of the digest, long enough that ids never collide in practice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def sha256_hex(data: bytes | str, length: int | None = None) -> str:
    """SHA-256 of `data` (text as UTF-8) as hex, cut to its first `length` characters."""
    raw = data.encode() if isinstance(data, str) else data
    digest = hashlib.sha256(raw).hexdigest()
    return digest if length is None else digest[:length]


def parts_sha256(parts: Iterable[bytes], length: int | None = None) -> str:
    """SHA-256 of `parts` fed in order (without joining them in memory first)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    digest = h.hexdigest()
    return digest if length is None else digest[:length]


def folder_sha256(root: str | Path) -> str:
    """SHA-256 over every file of a folder: each file's relative path and content digest,
    in path order (so a renamed, added or changed file changes it)."""
    base = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        h.update(path.relative_to(base).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
