"""`nids model evaluate`: a registered model (and the flow-only baseline fitted on the rows
it was trained on) on the user's own labelled Zeek files."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from nids_core.evaluation.files import FileEvaluation, Scorers, evaluate_file, summary_line
from nids_core.registry.names import CHALLENGER, CHAMPION
from nids_core.registry.versions import ModelRegistry
from nids_resources.from_env import serving_from_env


def max_file_bytes() -> int:
    """NIDS_MAX_FILE_MB, the limit on one file handed in, as the reference corpus reads it."""
    from nids_resources.from_env import cold_store_from_env
    from nids_resources.reference import ReferenceCorpusResource
    from nids_resources.settings import from_env

    return from_env(ReferenceCorpusResource, cold_store=cold_store_from_env()).max_file_bytes


def _resolve(registry: ModelRegistry, which: str) -> str:
    from mlflow.exceptions import MlflowException

    if which in (CHAMPION, CHALLENGER):
        mv = registry.version_by_alias(which)
        if mv is None:
            raise LookupError(f"{registry.model_name} has no `{which}`: train a model first")
        return mv.version
    if not which.isdigit():
        raise LookupError(f"--model {which!r}: use champion, challenger or a version number")
    try:
        return registry.get_version(which).version
    except MlflowException as exc:
        raise LookupError(f"{registry.model_name} has no version {which}") from exc


def evaluate_registered(
    registry: ModelRegistry,
    which: str,
    files: list[Path],
    with_baseline: bool,
    echo: Callable[[str], None] = print,
    cache_dir: str | None = None,
) -> tuple[list[FileEvaluation], str]:
    """Evaluate every file, echoing one line per file; returns the results and the
    summary line."""
    import polars as pl

    from nids_core.model.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
    from nids_core.model.gnn import HybridScorer
    from nids_core.registry.runs import TRAINING_ROWS_ARTIFACT
    from nids_core.serving.model_cache import load_version

    version = _resolve(registry, which)
    cache = cache_dir or serving_from_env().model_cache_dir
    scorer = load_version(registry, version, cache)
    scorers: Scorers = {"model": (scorer.score, scorer.threshold)}
    served = getattr(scorer, "served_candidate", "gnn")
    echo(
        f"model: {registry.model_name} version {version}, serving {served} "
        f"(threshold {scorer.threshold:.3f})"
    )
    if isinstance(scorer, HybridScorer):
        # What the graph adds: the version's graph model alone, beside what it serves.
        scorers["gnn"] = (scorer.gnn_score, scorer.gnn_threshold)
        echo(f"gnn: the same version's graph model alone (threshold {scorer.gnn_threshold:.3f})")
    if with_baseline:
        with tempfile.TemporaryDirectory() as tmp:
            rows = pl.read_parquet(
                registry.download_run_artifact(version, TRAINING_ROWS_ARTIFACT, tmp)
            )
        run = registry.client.get_run(registry.get_version(version).run_id)
        seed = int(run.data.params.get("train_seed", "0"))
        forest = train_baseline(rows, scorer.spec, seed)
        scorers["baseline"] = (
            lambda flows: baseline_scores(forest, flows, scorer.spec),
            BASELINE_THRESHOLD,
        )
        echo(
            f"baseline: flow-only ExtraTrees fitted on the {rows.height} rows version "
            f"{version} was trained on (seed {seed})"
        )
    results = []
    for path in files:
        result = evaluate_file(path, scorers, max_file_bytes())
        echo(result.line())
        results.append(result)
    return results, summary_line(results)
