"""Resources tag the run they start in with its worker process, so a run whose process dies
can be recognised as dead (see nids_sensors.dead_runs)."""

from dagster import InitResourceContext

_TAGGED: set[str] = set()


class TagsRunWorker:
    """Mixin for the resources every job uses: on start in a run, tag the run once."""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = context.run
        if run is not None and context.instance is not None and run.run_id not in _TAGGED:
            from nids_sensors.dead_runs import tag_run_worker

            tag_run_worker(context.instance, run.run_id)
            _TAGGED.add(run.run_id)
        super().setup_for_execution(context)  # type: ignore[misc]
