"""Alerts per detector on every labelled capture of the data directory, as the live path
makes them: each capture is landed in a fresh hot store, scored by a registered model
(default: the champion of MLFLOW_TRACKING_URI / NIDS_MODEL_NAME, e.g. the demo's), and its
evidence and alerts refreshed at a sensitivity. Per capture: evidence and alerts per
detector, how many alerted hosts the capture labels all-benign (false alarms), and the
share of the alerts' flows its labels call attacks.

The model was trained on these captures (the demo's reference corpus), so its evidence
here is in-sample; the label-free detectors' figures are not. The last line is

`alert_counts: captures=<n> alerts=<a> benign_host_alerts=<b> sensitivity=<s>`
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import duckdb
import polars as pl

from nids_cli.evaluation import _resolve
from nids_core.detection.refresh import refresh_detections
from nids_core.detection.sensitivity import SENSITIVITIES, Thresholds
from nids_core.registry.versions import ModelRegistry
from nids_core.serving.model_cache import ServedModel, load_version
from nids_core.serving.scoring import score_unscored
from nids_core.stores.hot import upsert_flows
from nids_core.stores.hot_schema import ensure_schema
from nids_core.training_data.data_dir import find_data_dir, labelled_folders
from nids_core.training_data.reference_corpus import list_reference_files
from nids_core.zeek.files import read_zeek_file


def capture_counts(path: Path, work: Path, scorer, version: str, th: Thresholds) -> dict:
    flows = read_zeek_file(path).flows
    con = duckdb.connect(str(work / f"{path.name}.duckdb"))
    try:
        ensure_schema(con)
        upsert_flows(
            con,
            flows.with_columns(
                pl.lit("bench").alias("topic"),
                pl.lit(0, dtype=pl.Int32).alias("partition"),
                pl.int_range(pl.len(), dtype=pl.Int64).alias("offset"),
            ),
        )
        score_unscored(con, ServedModel(version, scorer, "passed"))
        refresh_detections(con, None, 15, th, [])
        evidence = Counter(
            dict(con.execute("SELECT detector, count(*) FROM evidence GROUP BY 1").fetchall())
        )
        alerts = con.execute(
            "SELECT alert_id, host, detectors, evidence_ids FROM analyst_alerts"
        ).fetchall()
        alert_uids = con.execute(
            "SELECT DISTINCT unnest(e.uids) FROM analyst_alerts a JOIN evidence e "
            "ON list_contains(a.evidence_ids, e.evidence_id)"
        ).fetchall()
    finally:
        con.close()
    labels = dict(flows.select("uid", "label").iter_rows())
    attack_hosts = set(flows.filter(pl.col("label") == "malicious")["orig_h"])
    per_detector = Counter(d for _, _, ds, _ in alerts for d in ds)
    uids = [u for (u,) in alert_uids]
    return {
        "flows": flows.height,
        "evidence": evidence,
        "alerts": len(alerts),
        "per_detector": per_detector,
        "benign_host_alerts": sum(h not in attack_hosts for _, h, _, _ in alerts),
        "attack_share": sum(labels.get(u) == "malicious" for u in uids) / len(uids)
        if uids
        else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="champion", help="alias or version")
    ap.add_argument("--sensitivity", choices=SENSITIVITIES, default="medium")
    args = ap.parse_args()
    registry = ModelRegistry(
        os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///var/mlflow/mlflow.db"),
        os.environ.get("NIDS_MODEL_NAME", "nids-gnn"),
    )
    version = _resolve(registry, args.model)
    work = Path(tempfile.mkdtemp(prefix="nids-bench-alert-counts-"))
    try:
        scorer = load_version(registry, version, work / "cache")
        th = Thresholds.for_sensitivity(args.sensitivity)
        files = list_reference_files([str(f) for f in labelled_folders(find_data_dir())])
        if not files:
            sys.exit("no labelled captures in the data directory")
        total = benign = 0
        print(f"model {registry.model_name} v{version}, sensitivity {args.sensitivity}")
        for ref in files:
            path = ref.url.removeprefix("file://")
            c = capture_counts(Path(path), work, scorer, version, th)
            total += c["alerts"]
            benign += c["benign_host_alerts"]
            print(
                f"  {Path(path).name[:44]:44s} {c['flows']:>7,} flows  alerts {c['alerts']:>3} "
                f"({', '.join(f'{d} {n}' for d, n in sorted(c['per_detector'].items())) or '-'}); "
                f"on benign-only hosts {c['benign_host_alerts']}; attack share of their flows "
                f"{c['attack_share']:.2f}; evidence "
                + ", ".join(f"{d} {n}" for d, n in sorted(c["evidence"].items()))
            )
        print(
            f"alert_counts: captures={len(files)} alerts={total} benign_host_alerts={benign} "
            f"sensitivity={args.sensitivity}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
