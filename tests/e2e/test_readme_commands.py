"""Every command the README and docs/ show works as written: run here against services
started on loopback, or by the test named beside it in RUN_ELSEWHERE."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunsFilter

from nids_cli.local_daemon import embedded_env
from nids_core.kafka import DEFAULT_TOPIC
from nids_core.kafka.log import KafkaSettings, open_client
from nids_core.stores.cold import ColdStore
from nids_devkit.broker import free_port
from tests.support.deployment import ROOT, iot23

BIN = Path(sys.executable).parent
NIDS = str(BIN / "nids")
COMMAND = re.compile(
    r"`((?:NIDS_MODEL_SIGNING_KEY=\$\(cat [^)]*\) )?"
    r"(?:\./dev|\.venv/bin/|DAGSTER_HOME=\S+ |nids |dagster asset |dg )[^`]*)`"
)

# README command (its start) -> the test that runs it. The rest are run below.
RUN_ELSEWHERE = {
    "./dev test": "tests/: CI runs exactly this command (.ci/run)",
    "./dev": "the set-up both ./dev commands run, under ./dev test in CI",
    "./dev demo": "the demo: runs in minutes, by hand and before each release",
    ".venv/bin/nids demo": "the demo",
    "nids demo": "the demo",
    "nids alerts": "test_detection.py::test_analysts_list_show_export_ack_and_close_alerts_and_a_verdict_becomes_labels",
    "nids allow": "test_detection.py::test_analysts_list_show_export_ack_and_close_alerts_and_a_verdict_becomes_labels",
    "nids label": "test_reference_and_labels.py::test_analyst_labels_by_uid_and_host_range_change_the_next_training_set_and_only_it",
    "nids model evaluate": "test_reference_and_labels.py::test_model_evaluate_on_tsv_json_csv_unlabelled_and_non_zeek_files",
    "nids model rollback": "test_model_faults.py::test_rollback_to_a_gate_failed_version_is_refused_unless_explicitly_overridden",
    "nids model status|rollback": "test_model_faults.py::test_rollback_to_a_gate_failed_version_is_refused_unless_explicitly_overridden",
    "nids ingest --until-idle": "test_ingest_cli.py::test_a_killed_ingest_process_mid_batch_is_recovered_by_the_next_one",
    "nids hot init": "test_ducklake.py::test_nids_hot_init_creates_the_lake_once_and_a_bad_setting_is_named",
    "nids data download": "test_data_dir.py::test_download_verifies_content_checksum_plain_or_gzip",
    "dagster asset materialize -m nids_jobs.definitions --select training_set,gnn_model,champion_model": "test_model.py::test_training_job_gate_promotion_and_rollback (the same selection, as training_job)",
    "NIDS_MODEL_SIGNING_KEY=$(cat var/model-signing.key) DAGSTER_HOME=$PWD/var/dagster .venv/bin/dagster dev": "test_ui.py::test_lineage_and_asset_check_pages_render",
}
# Benchmarks run for minutes to hours, by hand (docs/benchmarks.md has their figures and
# commands): here each documented one is checked to take the options it is shown with.
BENCHMARK = ".venv/bin/python bench/"
RUN_HERE = (
    BENCHMARK,
    "nids broker",
    "nids replay",
    "nids ingest",
    "nids data where",
    "nids settings",
    "nids model status",
    "dagster asset materialize -m nids_jobs.definitions --select cold_flows --partition-range",
    "dagster asset materialize -m nids_jobs.definitions --select cold_predictions --partition-range",
    "dg launch --assets cold_flows --partition-range",
    "dg dev",
)


DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


def readme_commands() -> list[str]:
    return sorted({c for doc in DOCUMENTS for c in COMMAND.findall(doc.read_text())})


def test_every_readme_command_is_run_by_a_test():
    commands = readme_commands()
    assert len(commands) > 15
    unrun = [
        c
        for c in commands
        if not any(c.startswith(k) for k in RUN_ELSEWHERE) and not c.startswith(RUN_HERE)
    ]
    assert not unrun, f"README commands no test runs: {unrun}"
    for where in RUN_ELSEWHERE.values():
        if "::" in where:
            path, name = where.split(" ")[0].split("::")
            (found,) = (ROOT / "tests").rglob(path)  # test files have unique names
            assert f"def {name}(" in found.read_text(), where


def test_every_documented_benchmark_takes_the_options_it_is_shown_with():
    shown_with: dict[str, set[str]] = {}
    for command in readme_commands():
        if command.startswith(BENCHMARK):
            flags = re.findall(r"--[a-z][a-z-]*", command)
            shown_with.setdefault(command.split()[1], set()).update(flags)
    assert len(shown_with) >= 4
    # All at once: each --help imports the benchmark's modules (torch, Dagster), which is
    # most of the time.
    helps = {
        script: subprocess.Popen(
            [sys.executable, script, "--help"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script in shown_with
    }
    for script, shown in shown_with.items():
        out, err = helps[script].communicate(timeout=300)
        assert helps[script].returncode == 0, f"{script} --help: {err[-2000:]}"
        taken = set(re.findall(r"--[a-z][a-z-]*", out))
        assert shown <= taken, f"{script} does not take {sorted(shown - taken)}"


def _run(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        list(args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {seconds} s")


def _cold_files(store: ColdStore, days: list[str]) -> dict[str, bytes]:
    return {d: store.fs.cat_file(store.cold_file(d)) for d in days}


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path):
    port = free_port()
    env = embedded_env(tmp_path, f"127.0.0.1:{port}", NIDS_REFERENCE_DATA_DIR="false")
    broker = subprocess.Popen(
        [NIDS, "broker", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert "Ctrl-C or SIGTERM stops" in broker.stdout.readline()
        # `nids replay ... --repeat N` with --limit: exactly N flows, repeats included.
        capture = str(iot23("CTU-Honeypot-Capture-7-1-labeled.csv.gz"))
        replayed = _run(env, NIDS, "replay", capture, "--repeat", "2", "--limit", "150")
        assert "replayed 150 flows" in replayed.stdout
        with open_client("kafka-python", KafkaSettings(f"127.0.0.1:{port}", "check")) as c:
            assert c.watermarks(DEFAULT_TOPIC, [0])[0].high == 150

        _run(env, NIDS, "ingest", "--until-idle", "--timeout", "240")
        assert Path(env["DAGSTER_HOME"]).is_dir()
        where = _run(env, NIDS, "data", "where").stdout.splitlines()
        assert Path(where[0]).is_dir()
        assert any(line.strip() == Path(capture).name for line in where[1:])
        assert "| NIDS_KAFKA_BOOTSTRAP |" in _run(env, NIDS, "settings").stdout
        status = _run(env, NIDS, "model", "status").stdout
        assert status.splitlines() == ["champion: none", "challenger: none"]

        # Backfills of a partition range from both CLIs: one run each, each day rebuilt once,
        # identical files whichever CLI or grouping rebuilt them.
        store = ColdStore(env["NIDS_COLD_URL"])
        days = store.landing_days()
        first, last = days[0], days[-1]
        span = [
            (date.fromisoformat(first) + timedelta(d)).isoformat()
            for d in range((date.fromisoformat(last) - date.fromisoformat(first)).days + 1)
        ]
        appended = {d: store.read_cold_day(d) for d in days}  # what ingest appended
        assert all(store.appended_batches(d) for d in days)
        partition_range = f"{first}...{last}"
        materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "nids_jobs.definitions"]
        _run(env, *materialize, "--select", "cold_flows", "--partition-range", partition_range)
        compacted = _cold_files(store, days)
        assert not any(store.appended_batches(d) for d in days)
        assert all(store.read_cold_day(d).equals(appended[d]) for d in days)
        dg_launch = [str(BIN / "dg"), "launch", "--assets", "cold_flows"]
        _run(env, *dg_launch, "--partition-range", partition_range)
        assert _cold_files(store, days) == compacted
        _run(
            env, *materialize, "--select", "cold_predictions", "--partition-range", partition_range
        )
        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        backfills = [
            r.dagster_run
            for r in instance.get_run_records(RunsFilter(job_name="__ASSET_JOB"))
            if r.dagster_run.tags.get("dagster/asset_partition_range_start") == first
        ]
        assert len(backfills) == 3, [r.tags for r in backfills]
        for run in backfills:
            materialized = [
                e.asset_materialization
                for e in instance.all_logs(run.run_id)
                if e.asset_materialization is not None
            ]
            rows_by_day = [
                m.metadata["rows_by_day"].value for m in materialized if "rows_by_day" in m.metadata
            ]
            assert [sorted(r) for r in rows_by_day] == [span], rows_by_day

        # `dg dev` loads the code location and serves the UI.
        ui_port = free_port()
        dev = subprocess.Popen(
            [str(BIN / "dg"), "dev", "--port", str(ui_port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()

            def assets_listed() -> bool:
                try:
                    request = urllib.request.Request(
                        f"http://127.0.0.1:{ui_port}/graphql",
                        data=query,
                        headers={"Content-Type": "application/json"},
                    )
                    body = json.load(urllib.request.urlopen(request, timeout=5))
                except OSError:
                    return False
                return len(body.get("data", {}).get("assetNodes") or []) == 12

            _wait(assets_listed, 120, "dg dev served the 12 assets")
        finally:
            os.killpg(dev.pid, signal.SIGTERM)
            try:
                dev.wait(60)
            except subprocess.TimeoutExpired:
                # Cleanup, not what this test checks: on a loaded machine a sensor tick in
                # flight when `dg dev` stops its code server can hold the daemon past this.
                os.killpg(dev.pid, signal.SIGKILL)
                dev.wait(30)
    finally:
        # `nids broker` stops its broker on SIGTERM, as on Ctrl-C.
        broker.send_signal(signal.SIGTERM)
        broker.wait(30)
        _wait(lambda: not _listening(port), 15, "the broker stopped listening")
