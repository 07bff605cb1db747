"""Allow-list entries: evidence that matches one is kept and counted but never makes or
raises an alert. An entry names any of host (address or CIDR), peer (address or CIDR),
port and detector; every field it names must match. It says who added it and why, and
may expire. Entries come from `nids allow add` (the triage store) and from a TOML file
(NIDS_ALLOW_LIST_FILE: `[[allow]] host = "10.0.0.5" detector = "beacon" why = "..."`)."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from nids_core.checksum import sha256_hex
from nids_core.detection.evidence import DETECTORS


class AllowListError(ValueError):
    """An entry that cannot be used; nothing was written."""


def _network(text: str | None, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if text is None:
        return None
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise AllowListError(f"{what} {text!r} is not an IP address or CIDR") from None


@dataclass(frozen=True)
class AllowEntry:
    by: str
    why: str
    host: str | None = None
    peer: str | None = None
    port: int | None = None
    detector: str | None = None
    expires: datetime | None = None
    entry_id: str = field(default="")
    source: str = "cli"

    def __post_init__(self) -> None:
        if not any(v is not None for v in (self.host, self.peer, self.port, self.detector)):
            raise AllowListError("an entry names at least one of host, peer, port, detector")
        _network(self.host, "host")
        _network(self.peer, "peer")
        if self.port is not None and not 0 <= int(self.port) <= 65535:
            raise AllowListError(f"port {self.port} is not in 0..65535")
        if self.detector is not None and self.detector not in DETECTORS:
            raise AllowListError(f"detector {self.detector!r} is not one of {', '.join(DETECTORS)}")
        if not self.by.strip() or not self.why.strip():
            raise AllowListError("an entry says who added it (--by) and why (--why)")
        if self.expires is not None and self.expires.tzinfo is None:
            object.__setattr__(self, "expires", self.expires.replace(tzinfo=UTC))
        if not self.entry_id:
            key = f"{self.host}|{self.peer}|{self.port}|{self.detector}|{self.source}"
            object.__setattr__(self, "entry_id", sha256_hex(key, 12))

    def active(self, now: datetime) -> bool:
        return self.expires is None or self.expires > now

    def matches(self, detector: str, host: str, peers: list[str], ports: list[int]) -> bool:
        if self.detector is not None and detector != self.detector:
            return False
        if self.host is not None and not _contains(self.host, host):
            return False
        if self.peer is not None and not any(_contains(self.peer, p) for p in peers):
            return False
        return self.port is None or int(self.port) in ports


def _contains(network: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def read_allow_file(path: str | Path) -> list[AllowEntry]:
    """Entries of a TOML allow-list file; a bad entry fails naming the file and entry."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise AllowListError(f"NIDS_ALLOW_LIST_FILE {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise AllowListError(f"NIDS_ALLOW_LIST_FILE {p} is not TOML: {exc}") from None
    entries = []
    for i, raw in enumerate(doc.get("allow", [])):
        try:
            expires = raw.get("expires")
            if isinstance(expires, str):
                expires = datetime.fromisoformat(expires)
            entries.append(
                AllowEntry(
                    by=str(raw.get("by", f"file {p.name}")),
                    why=str(raw.get("why", "")),
                    host=raw.get("host"),
                    peer=raw.get("peer"),
                    port=raw.get("port"),
                    detector=raw.get("detector"),
                    expires=expires,
                    source=f"file:{p.name}:{i}",
                )
            )
        except (AllowListError, ValueError, TypeError) as exc:
            raise AllowListError(f"{p} entry {i + 1}: {exc}") from None
    return entries


def suppressed_by(evidence: pl.DataFrame, entries: list[AllowEntry], now: datetime) -> pl.Series:
    """For each evidence row, the id of the first active entry that matches it, or null."""
    active = [e for e in entries if e.active(now)]
    out: list[str | None] = []
    for row in evidence.select("detector", "host", "peers", "ports").iter_rows():
        detector, host, peers, ports = row
        hit = next((e.entry_id for e in active if e.matches(detector, host, peers, ports)), None)
        out.append(hit)
    return pl.Series("suppressed_by", out, dtype=pl.String())
