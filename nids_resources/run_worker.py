"""Resources tag the run they start in with its worker process, so a run whose process dies
can be recognised as dead (see nids_sensors.dead_runs)."""

from dagster import DagsterInstance, InitResourceContext

from nids_core.worker_process import worker_tag_value

WORKER_TAG = "nids/worker"
# Set by Dagster on a run retry or re-execution, whose tags are copied from this parent.
PARENT_RUN_TAG = "dagster/parent_run_id"

_TAGGED: set[str] = set()


class TagsRunWorker:
    """Mixin for the resources every job uses: on start in a run, tag the run once."""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = context.run
        if run is not None and context.instance is not None and run.run_id not in _TAGGED:
            tag_run_worker(context.instance, run.run_id)
            _TAGGED.add(run.run_id)
        super().setup_for_execution(context)  # type: ignore[misc]


def tag_run_worker(instance: DagsterInstance, run_id: str) -> None:
    """Record on the run where its worker process runs (once per run). A retry or
    re-execution starts with its parent's tags: a worker tag it inherited names the
    parent's (gone) process, so it is replaced, or dead_run_sensor would fail a live run."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return
    tag = run.tags.get(WORKER_TAG)
    if tag is None or _inherited(instance, run.tags.get(PARENT_RUN_TAG), tag):
        instance.add_run_tags(run_id, {WORKER_TAG: worker_tag_value()})


def _inherited(instance: DagsterInstance, parent_id: str | None, tag: str) -> bool:
    parent = instance.get_run_by_id(parent_id) if parent_id else None
    return parent is not None and parent.tags.get(WORKER_TAG) == tag
