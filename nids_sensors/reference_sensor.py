"""Reference-corpus sensor: the capture files become partitions of `reference_flows`, each
read again when its content changes, and an install without a champion gets one trained
from the corpus as soon as every capture has been read."""

from __future__ import annotations

import json

from dagster import (
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from nids_assets.reference import reference_partitions
from nids_core.ingest.planning import BatchStatus
from nids_core.registry.names import CHAMPION
from nids_core.training_data.reference_corpus import (
    ReferenceCorpusError,
    corpus_digest,
    missing_versions,
)
from nids_jobs.jobs import reference_job, training_job
from nids_resources.mlflow import ModelRegistryResource
from nids_resources.reference import ReferenceCorpusResource
from nids_resources.stores import ColdStoreResource
from nids_sensors.run_state import run_status


def _bootstrap(
    context: SensorEvaluationContext, registry: ModelRegistryResource, versions: dict[str, str]
) -> RunRequest | str:
    """A training run when no champion exists yet, once per corpus version; else why not."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        champion = registry.registry().version_by_alias(CHAMPION)
    except (MlflowException, OSError, SQLAlchemyError) as exc:
        return f"model registry locked or unreachable: {str(exc)[:300]}"
    if champion is not None:
        return (
            f"reference corpus current ({len(versions)} captures); champion is v{champion.version}"
        )
    digest = corpus_digest(versions)
    key = f"bootstrap:{digest}"
    status, _ = run_status(context.instance, key)
    if status is BatchStatus.UNKNOWN:
        return RunRequest(
            job_name=training_job.name, run_key=key, tags={"nids/reference_corpus": digest}
        )
    if status is BatchStatus.IN_FLIGHT:
        return f"training a first champion from the reference corpus ({key})"
    return (
        f"no champion: the first training on reference corpus {digest} ended without one "
        "(see its gate checks); run training_job once labelled data is added"
    )


def reference_corpus_sensor(interval_s: int) -> SensorDefinition:
    """The sensor, looking every `interval_s` seconds (a setting read at load)."""
    return sensor(
        name="reference_corpus_sensor",
        jobs=[reference_job, training_job],
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Keeps one reference_flows partition per capture file of the reference corpus and "
            "requests a read of each new or changed file; when every capture is read and the "
            "registry has no champion, requests a training run so a fresh install scores from "
            "its first batch."
        ),
    )(_reference_corpus_sensor)


def _reference_corpus_sensor(
    context: SensorEvaluationContext,
    reference_corpus: ReferenceCorpusResource,
    cold_store: ColdStoreResource,
    model_registry: ModelRegistryResource,
):
    try:
        seen = json.loads(context.cursor or "{}")
        versions = reference_corpus.versions(seen)
    except ReferenceCorpusError as exc:
        return SkipReason(str(exc))
    existing = set(context.instance.get_dynamic_partitions(reference_partitions.name))
    partition_requests: list = []
    if added := sorted(set(versions) - existing):
        partition_requests.append(reference_partitions.build_add_request(added))
    if removed := sorted(existing - set(versions)):
        context.log.info(f"reference captures no longer on disk: {removed}")
        partition_requests.append(
            DeleteDynamicPartitionsRequest(reference_partitions.name, removed)
        )
    requests: list[RunRequest] = []
    waiting = []
    for capture in missing_versions(cold_store.store(), versions):
        key = f"reference:{capture}@{versions[capture][:16]}"
        status, _ = run_status(context.instance, key)
        if status is BatchStatus.UNKNOWN:
            requests.append(
                RunRequest(job_name=reference_job.name, partition_key=capture, run_key=key)
            )
        elif status is BatchStatus.FAILED:
            waiting.append(f"{capture} could not be read (run {key} failed): fix or remove it")
        else:
            waiting.append(f"{capture} being read")
    skip = "; ".join(waiting) if waiting else None
    if not requests and not waiting and versions:
        outcome = _bootstrap(context, model_registry, versions)
        if isinstance(outcome, RunRequest):
            requests.append(outcome)
        else:
            skip = outcome
    elif not versions:
        skip = "the reference corpus has no capture files"
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        skip_reason=SkipReason(skip) if skip and not requests else None,
        cursor=json.dumps(seen, sort_keys=True),
    )
