"""Which network, and which kind of network, each reference capture file belongs to.

A file is one capture; a network may be several (one site on several days, a dataset
published in parts). Unless told otherwise, each capture is its own network and its kind
is the name of the folder it lies in. A `networks.toml` beside the files says otherwise:

    [networks.office-hq]
    kind = "office"
    captures = ["hq-2026-11-01", "hq-2026-11-02"]   # capture = file name without suffixes

Leave-one-network-out holds a network out whole, and means over kinds keep many networks
of one kind (eight IoT homes) from outvoting one of another.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import polars as pl

MANIFEST_NAME = "networks.toml"
NETWORK_KIND_COLUMN = "network_kind"


class NetworkManifestError(ValueError):
    """A networks.toml that cannot be used, with the file and the reason."""


@dataclass(frozen=True)
class Network:
    name: str
    kind: str


# The data directory's labelled captures (../shared/data/README.md): each IoT-23 capture
# is one small home; the two UWF-ZeekData22 files are one cyber range.
DATA_DIR_KINDS = {
    "iot23": "iot-home",
    "stratosphere-botnet-4": "windows-host",
    "uwf-zeekdata22": "cyber-range",
}
DATA_DIR_NETWORKS = {
    "uwf-zeekdata22-discovery": "uwf-zeekdata22",
    "uwf-zeekdata22-reconnaissance": "uwf-zeekdata22",
}


def parse_manifest(text: str, source: str) -> dict[str, Network]:
    """{capture: Network} from a networks.toml's text; NetworkManifestError naming
    `source` and what is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NetworkManifestError(f"{source}: not TOML: {exc}") from exc
    tables = doc.get("networks")
    if not isinstance(tables, dict) or not tables:
        raise NetworkManifestError(f"{source}: no [networks.NAME] table")
    out: dict[str, Network] = {}
    for name, table in tables.items():
        captures = table.get("captures") if isinstance(table, dict) else None
        kind = table.get("kind", name) if isinstance(table, dict) else None
        if not isinstance(kind, str) or not kind.strip():
            raise NetworkManifestError(f"{source}: networks.{name}.kind must be a name")
        if (
            not isinstance(captures, list)
            or not captures
            or not all(isinstance(c, str) and c for c in captures)
        ):
            raise NetworkManifestError(
                f"{source}: networks.{name}.captures must list capture names (file names "
                "without their suffixes)"
            )
        for capture in captures:
            if capture in out:
                raise NetworkManifestError(
                    f"{source}: capture {capture} is in networks {out[capture].name} and {name}"
                )
            out[capture] = Network(name, kind.strip())
    return out


def default_network(capture: str, folder: str) -> Network:
    """A capture no manifest names: its own network, of the kind its folder says."""
    network = DATA_DIR_NETWORKS.get(capture, capture)
    return Network(network, DATA_DIR_KINDS.get(folder, folder))


def assign_networks(flows: pl.DataFrame, networks: dict[str, Network]) -> pl.DataFrame:
    """`capture` (the file's capture) replaced by its network's name, and the network's
    kind in `network_kind`; a capture not in `networks` stays its own network and kind."""
    names = {c: n.name for c, n in networks.items()}
    kinds = {c: n.kind for c, n in networks.items()}
    capture = pl.col("capture")
    return flows.with_columns(
        capture.replace_strict(kinds, default=capture).alias(NETWORK_KIND_COLUMN),
        capture.replace_strict(names, default=capture).alias("capture"),
    )
