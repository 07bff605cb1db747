"""A run is tagged with its own worker process, also when it is a retry of another run."""

from dagster import DagsterInstance

from nids_core.worker_process import worker_tag_value
from nids_resources.run_worker import PARENT_RUN_TAG, WORKER_TAG, tag_run_worker


def test_a_retry_replaces_the_worker_tag_it_inherited_and_keeps_its_own():
    with DagsterInstance.ephemeral() as instance:
        dead = "boot/ns/999999/1.0"  # the failed parent's process, gone
        parent = instance.add_run(_run("parent", {WORKER_TAG: dead}))
        retry = instance.add_run(_run("retry", {WORKER_TAG: dead, PARENT_RUN_TAG: parent.run_id}))
        tag_run_worker(instance, retry.run_id)
        assert instance.get_run_by_id(retry.run_id).tags[WORKER_TAG] == worker_tag_value()
        # A tag of its own (another process of the same run wrote it) is kept.
        own = instance.add_run(_run("own", {WORKER_TAG: "boot/ns/123/2.0"}))
        tag_run_worker(instance, own.run_id)
        assert instance.get_run_by_id(own.run_id).tags[WORKER_TAG] == "boot/ns/123/2.0"


def _run(run_id: str, tags: dict):
    from dagster._core.storage.dagster_run import DagsterRun

    return DagsterRun(job_name="ingest_job", run_id=run_id, tags=tags)
