"""Flow features for the model: what a flow looks like, never who or when it was.

From the canonical flow schema: log-scaled volume and duration, derived bytes per packet,
missing-value flags, one-hot `proto`, `service` and `conn_state`, and one flag per Zeek
`history` letter. Addresses, ports and timestamps are graph structure (or nothing) and are
never features. The fitted spec (vocabularies, feature names, scaler statistics) is a small
JSON document saved with the model and reused unchanged at inference.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from nids_core.schema import NON_NEGATIVE_COLUMNS

# Duration and the byte and packet counts: the schema's non-negative volume columns.
VOLUME_COLUMNS = NON_NEGATIVE_COLUMNS
# Zeek writes "-" (null here) for these when the connection carried no payload accounting.
MISSING_FLAG_COLUMNS = ("duration", "orig_bytes", "resp_bytes")
PROTOS = ("tcp", "udp", "icmp")
CONN_STATES = (
    "S0",
    "S1",
    "SF",
    "REJ",
    "S2",
    "S3",
    "RSTO",
    "RSTR",
    "RSTOS0",
    "RSTRH",
    "SH",
    "SHR",
    "OTH",
)
# Zeek conn.log history letters (upper case: originator, lower case: responder).
HISTORY_LETTERS = "ShADadFfRrCcGgTtWwIiQq^"
# Columns that identify hosts, services-by-port or time: never features.
FORBIDDEN_COLUMNS = frozenset({"ts", "uid", "orig_h", "resp_h", "orig_p", "resp_p"})
SPEC_VERSION = 1


@dataclass
class FeatureSpec:
    """Everything needed to turn canonical flows into the model's input matrix."""

    services: list[str]
    names: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    version: int = SPEC_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @property
    def width(self) -> int:
        return len(self.names)


def _onehot(col: str, values: tuple[str, ...] | list[str], prefix: str) -> list[pl.Expr]:
    exprs = [(pl.col(col) == v).fill_null(False).alias(f"{prefix}={v}") for v in values]
    known = pl.col(col).is_in(list(values)).fill_null(False)
    if col == "service":
        none = pl.col(col).is_null() | (pl.col(col) == "-")
        exprs.append(none.alias(f"{prefix}=none"))
        exprs.append((~known & ~none).alias(f"{prefix}=other"))
    else:
        exprs.append((~known).alias(f"{prefix}=other"))
    return exprs


def _raw_feature_exprs(services: list[str]) -> list[pl.Expr]:
    exprs: list[pl.Expr] = []
    for c in VOLUME_COLUMNS:
        exprs.append(pl.col(c).cast(pl.Float64).clip(lower_bound=0).fill_null(0).log1p().alias(c))
    for direction in ("orig", "resp"):
        pkts = pl.col(f"{direction}_pkts").cast(pl.Float64).fill_null(0)
        ip_bytes = pl.col(f"{direction}_ip_bytes").cast(pl.Float64).fill_null(0)
        per_pkt = pl.when(pkts > 0).then(ip_bytes / pkts).otherwise(0.0)
        exprs.append(per_pkt.clip(lower_bound=0).log1p().alias(f"{direction}_bytes_per_pkt"))
    for c in MISSING_FLAG_COLUMNS:
        exprs.append(pl.col(c).is_null().alias(f"{c}_missing"))
    exprs += _onehot("proto", PROTOS, "proto")
    exprs += _onehot("service", services, "service")
    exprs += _onehot("conn_state", CONN_STATES, "conn_state")
    history = pl.col("history").fill_null("")
    for letter in HISTORY_LETTERS:
        exprs.append(history.str.contains(letter, literal=True).alias(f"history_{letter}"))
    return exprs


def raw_features(flows: pl.DataFrame, services: list[str]) -> pl.DataFrame:
    """Unscaled features, one row per flow, in a fixed column order."""
    return flows.select(_raw_feature_exprs(services)).cast(pl.Float32)


def fit_feature_spec(train: pl.DataFrame, min_service_count: int = 20) -> FeatureSpec:
    """Learn the service vocabulary and the scaler from training rows only."""
    counts = (
        train.filter(pl.col("service").is_not_null() & (pl.col("service") != "-"))
        .group_by("service")
        .len()
        .filter(pl.col("len") >= min_service_count)
        .sort(["len", "service"], descending=[True, False])
    )
    services = counts["service"].to_list()
    raw = raw_features(train, services)
    matrix = raw.to_numpy().astype(np.float64)
    mean = matrix.mean(axis=0) if len(matrix) else np.zeros(raw.width)
    std = matrix.std(axis=0) if len(matrix) else np.ones(raw.width)
    std[std < 1e-6] = 1.0
    names = raw.columns
    if FORBIDDEN_COLUMNS & set(names):
        raise AssertionError(f"identity columns among features: {FORBIDDEN_COLUMNS & set(names)}")
    return FeatureSpec(services, names, mean.tolist(), std.tolist())


def transform(flows: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Scaled float32 feature matrix (rows = flows, columns = spec.names)."""
    raw = raw_features(flows, spec.services)
    if raw.columns != spec.names:
        raise ValueError("feature columns differ from the fitted spec")
    matrix = raw.to_numpy(writable=True)  # float32, column-major, a copy of its own
    matrix -= np.asarray(spec.mean, np.float32)
    matrix /= np.asarray(spec.std, np.float32)
    return matrix


def attack_labels(flows: pl.DataFrame) -> np.ndarray:
    """1 for malicious, 0 for benign (rows must be labelled)."""
    if flows["label"].null_count():
        raise ValueError("unlabelled rows cannot be used for training or evaluation")
    return (flows["label"] == "malicious").to_numpy().astype(np.int64)
