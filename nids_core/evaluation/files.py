"""Check a model on labelled Zeek files of the user's own networks (`nids model evaluate`).

Each file is one network: its flows are scored together (the graph model sees each flow
with its neighbours in the file), rows without a label are skipped and counted, and the
figures are per file, then mean and worst over the files that have labelled rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from nids_core.model.features import attack_labels
from nids_core.model.metrics import alarms_per_host_day, benign_hosts_and_days, evaluate
from nids_core.zeek.files import (
    DEFAULT_MAX_FILE_BYTES,
    FileTooLarge,
    NotZeekConnLog,
    read_zeek_file,
)

# name -> (flows -> attack scores, threshold)
Scorers = dict[str, tuple[Callable[[pl.DataFrame], np.ndarray], float]]
FILE_METRICS = (
    "macro_f1",
    "attack_recall",
    "benign_fpr",
    "alarms_per_host_day",
    "roc_auc",
    "average_precision",
)


@dataclass
class FileEvaluation:
    path: str
    flows: int = 0
    labelled: int = 0
    attacks: int = 0
    unreadable: int = 0
    repeated: int = 0  # rows repeated whole, read once
    reject_reasons: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)  # scorer name -> evaluate(...)
    error: str | None = None

    @property
    def counted(self) -> bool:
        """Whether this file enters the means: read, with labelled rows."""
        return self.error is None and self.labelled > 0

    def line(self) -> str:
        if self.error is not None:
            return f"{self.path}: ERROR {self.error}"
        head = (
            f"{self.path}: flows {self.flows}, labelled {self.labelled} "
            f"({self.flows - self.labelled} without a label skipped), attacks {self.attacks}"
            + (
                f", unreadable rows {self.unreadable} ({self._reasons()})"
                if self.unreadable
                else ""
            )
            + (f", rows repeated whole read once {self.repeated}" if self.repeated else "")
        )
        if not self.labelled:
            return f"{head}; no labelled flows: left out of the means"
        cells = [
            f"{name} " + " ".join(f"{k}={_fmt(m[k])}" for k in FILE_METRICS)
            for name, m in self.metrics.items()
        ]
        return f"{head}; " + "; ".join(cells)

    def _reasons(self) -> str:
        top = sorted(self.reject_reasons.items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{n} x {r}" for r, n in top)


def _fmt(value: float | None) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
    )


def evaluate_file(
    path: str | Path, scorers: Scorers, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> FileEvaluation:
    result = FileEvaluation(str(path))
    try:
        parsed = read_zeek_file(path, max_bytes=max_bytes)
    except (NotZeekConnLog, FileTooLarge) as exc:
        result.error = str(exc).removeprefix(f"{path}: ")
        return result
    flows = parsed.flows
    result.flows, result.unreadable = flows.height, parsed.rejects.height
    result.repeated = parsed.duplicates
    result.reject_reasons = {
        r: int(n) for r, n in parsed.rejects.group_by("error").len().iter_rows()
    }
    labelled = flows["label"].is_not_null().to_numpy()
    result.labelled = int(labelled.sum())
    if not result.labelled:
        return result
    judged = flows.filter(pl.Series(labelled))
    y = attack_labels(judged)
    result.attacks = int(y.sum())
    hosts, days = benign_hosts_and_days(judged, y)
    for name, (score, threshold) in scorers.items():
        # Scored on every flow of the file (unlabelled ones are graph context), judged on
        # the labelled ones: the verdict at the cut, and the ranking whatever the cut.
        m = evaluate(y, score(flows)[labelled], threshold)
        m["alarms_per_host_day"] = alarms_per_host_day(m, hosts, days)
        m["average_precision"] = m["pr_auc"]
        result.metrics[name] = m
    return result


def evaluate_files(paths: Sequence[str | Path], scorers: Scorers) -> list[FileEvaluation]:
    return [evaluate_file(p, scorers) for p in paths]


def summary_line(
    results: Sequence[FileEvaluation], names: Sequence[str] = ("model", "baseline")
) -> str:
    """`evaluate: model mean_macro_f1=<x> min=<m>; baseline mean_macro_f1=<z> min=<v>`
    over the files with labelled rows (`-` where a scorer did not run or no file counts)."""
    parts = []
    for name in names:
        values = [r.metrics[name]["macro_f1"] for r in results if r.counted and name in r.metrics]
        mean = sum(values) / len(values) if values else None
        parts.append(
            f"{name} mean_macro_f1={_fmt(mean)} min={_fmt(min(values) if values else None)}"
        )
    return "evaluate: " + "; ".join(parts)
