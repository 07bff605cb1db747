"""Live traffic without labels: the reference corpus, analysts' labels, `nids model evaluate`.

Real broker, DuckDB, cold store and MLflow, real IoT-23 captures as both the reference
corpus and (labels removed) the live stream.
"""

import gzip
import json
import re
import shutil
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner
from dagster import AssetKey

from nids_cli.driver import drain, drive_reference, execute_request
from nids_cli.main import main
from nids_core.registry.versions import ModelRegistry
from nids_core.training_data.analyst_labels import LABELS_DIR, read_labels
from nids_core.training_data.reference_corpus import stored_path
from nids_core.training_data.training_set import TRAINING_SET_PATH
from nids_core.zeek.files import read_zeek_file
from nids_devkit.replay import to_zeek_json
from nids_jobs.definitions import build_definitions
from tests.support.deployment import data_dir, iot23, make_resources
from tests.support.ingest import file_digests, replay, table_digest
from tests.support.model import (
    capture_flows,
    read_reference_corpus,
    register_trained,
    sqlite_store,
)

REFERENCE = (
    "CTU-Malware-Capture-8-1-labeled.csv.gz",  # 10,403 flows, 8,222 attacks
    "CTU-Honeypot-Capture-5-1-labeled.csv.gz",  # 1,374 benign
    "CTU-Honeypot-Capture-7-1-labeled.csv.gz",  # 130 benign
)
LIVE = "CTU-Malware-Capture-20-1-labeled.csv.gz"  # 3,209 flows (16 attacks), labels withheld
FAST = {"max_epochs": 40, "patience": 8, "hidden": 32, "lono_seeds": 1}


def _reference_dir(tmp_path, names):
    folder = tmp_path / "reference"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(iot23(name), folder / name)
    (folder / "README.md").write_text("not a capture: the corpus skips it")
    return folder


def _defs(broker, topic, tmp_path, reference, **kw):
    return build_definitions(
        make_resources(
            broker,
            topic,
            tmp_path,
            reference=[reference],
            model_settings=FAST,
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
            **kw,
        )
    )


def _hot(tmp_path, sql):
    con = duckdb.connect(str(tmp_path / "hot.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _cli(args, tmp_path):
    env = {
        "NIDS_COLD_URL": str(tmp_path / "cold"),
        "NIDS_DUCKDB_PATH": str(tmp_path / "hot.duckdb"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "NIDS_MODEL_CACHE_DIR": str(tmp_path / "model-cache"),
    }
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


# --------------------------------------------------------------------------- fresh install


@pytest.mark.slow
def test_unlabelled_live_traffic_gets_a_champion_from_the_reference_corpus_and_is_all_scored(
    broker, topic, tmp_path, instance
):
    """A fresh install fed unlabelled flows: the sensor reads the corpus, trains a first
    champion from it alone, and every live flow is scored; nothing of the corpus enters
    the hot table or the live cold partitions, and no live flow enters the training set."""
    reference = _reference_dir(tmp_path, REFERENCE)
    sent = replay(broker, topic, [iot23(LIVE)], shift_to_now=True, strip_labels=True).sent
    defs = _defs(broker, topic, tmp_path, reference)
    cursors: dict = {}
    stats = drain(defs, instance, cursors)
    assert stats.failed_runs == 0 and stats.scoring_runs == 0  # no champion yet
    assert _hot(tmp_path, "SELECT count(*), count(label), count(capture) FROM flows")[0] == (
        sent,
        0,
        0,
    )

    runs, failed, _ = drive_reference(defs, instance, cursors)
    assert failed == 0 and runs == len(REFERENCE) + 1  # one read per capture, one training
    assert sorted(instance.get_dynamic_partitions("reference_captures")) == sorted(
        n.split("-labeled")[0] for n in REFERENCE
    )
    registry = defs.resources["model_registry"].registry()
    assert str(registry.version_by_alias("champion").version) == "1"
    frame = defs.resources["cold_store"].store().read_frame(TRAINING_SET_PATH)
    assert set(frame["source"].unique()) == {"reference"}
    assert frame["capture"].n_unique() == len(REFERENCE)
    live_uids = {u for (u,) in _hot(tmp_path, "SELECT uid FROM flows")}
    assert not live_uids & set(frame["uid"].to_list())
    # Once the champion exists, the sensor asks for nothing more.
    assert drive_reference(defs, instance, cursors)[0] == 0

    stats = drain(defs, instance, cursors)
    assert stats.failed_runs == 0 and stats.scoring_runs >= 1
    assert _hot(tmp_path, "SELECT count(*) FROM flows ANTI JOIN predictions USING (uid)") == [(0,)]
    assert _hot(tmp_path, "SELECT count(DISTINCT uid), min(model_version) FROM predictions") == [
        (sent, "1")
    ]
    cold = pl.read_parquet(tmp_path / "cold" / "flows" / "*" / "*.parquet")
    assert cold.height == sent and cold["capture"].null_count() == sent


# --------------------------------------------------------------------------- reference files


def test_a_changed_reference_file_becomes_a_new_partition_version(
    broker, topic, tmp_path, instance
):
    reference = _reference_dir(tmp_path, ["CTU-Honeypot-Capture-7-1-labeled.csv.gz"])
    defs = _defs(broker, topic, tmp_path, reference)
    job = "reference_job"
    cursors: dict = {}

    def tick():
        from nids_cli.driver import tick_sensor

        requests, skip, cursors["reference_corpus_sensor"] = tick_sensor(
            defs, instance, "reference_corpus_sensor", cursors
        )
        return requests, skip

    requests, _ = tick()
    assert [(r.job_name, r.partition_key) for r in requests] == [(job, "CTU-Honeypot-Capture-7-1")]
    assert execute_request(defs, instance, job, requests[0])
    first = instance.get_latest_materialization_event(AssetKey("reference_flows"))
    md = first.asset_materialization.metadata
    assert md["flows"].value == 130 and md["labelled_flows"].value == 130
    v1 = first.asset_materialization.tags["dagster/data_version"]
    assert v1 == md["sha256"].value
    # Unchanged: nothing to read again (the next request is the first training).
    requests, _ = tick()
    assert [r.job_name for r in requests] == ["training_job"]

    # The file changes on disk: its last 30 rows are cut.
    path = reference / "CTU-Honeypot-Capture-7-1-labeled.csv.gz"
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(lines[:-30])))
    requests, _ = tick()
    assert [(r.job_name, r.partition_key) for r in requests] == [(job, "CTU-Honeypot-Capture-7-1")]
    assert execute_request(defs, instance, job, requests[0])
    second = instance.get_latest_materialization_event(AssetKey("reference_flows"))
    v2 = second.asset_materialization.tags["dagster/data_version"]
    assert v2 != v1 and second.asset_materialization.metadata["flows"].value == 100
    store = defs.resources["cold_store"].store()
    assert store.exists(stored_path("CTU-Honeypot-Capture-7-1", v1))  # the old version stays
    assert store.read_frame(stored_path("CTU-Honeypot-Capture-7-1", v2)).height == 100

    # A new file is a new partition; a removed file's partition goes.
    shutil.copy(iot23("CTU-Honeypot-Capture-4-1-labeled.csv.gz"), reference)
    path.unlink()
    requests, _ = tick()
    assert [r.partition_key for r in requests] == ["CTU-Honeypot-Capture-4-1"]
    assert instance.get_dynamic_partitions("reference_captures") == ["CTU-Honeypot-Capture-4-1"]


# --------------------------------------------------------------------------- analyst labels


@pytest.fixture
def labelled_install(broker, topic, tmp_path, instance):
    """Live flows (labels withheld) ingested and cold, a small reference corpus read."""
    reference = _reference_dir(tmp_path, ["CTU-Honeypot-Capture-7-1-labeled.csv.gz"])
    replay(broker, topic, [iot23(LIVE)], shift_to_now=True, strip_labels=True)
    defs = _defs(broker, topic, tmp_path, reference)
    assert drain(defs, instance, {}, serve=False).failed_runs == 0
    read_reference_corpus(defs, instance)
    return defs, defs.resources["cold_store"].store()


def _training_set(defs, instance) -> pl.DataFrame:
    result = defs.resolve_job_def("training_job").execute_in_process(
        instance=instance,
        asset_selection=[AssetKey("flow_labels"), AssetKey("training_set")],
    )
    assert result.success
    return defs.resources["cold_store"].store().read_frame(TRAINING_SET_PATH)


def test_analyst_labels_by_uid_and_host_range_change_the_next_training_set_and_only_it(
    labelled_install, tmp_path, instance
):
    defs, store = labelled_install
    before = _training_set(defs, instance)
    assert set(before["source"]) == {"reference"} and before.height == 130
    hot_before = table_digest(tmp_path, "flows", "uid")
    cold_before = file_digests(tmp_path / "cold" / "flows")
    live = pl.read_parquet(tmp_path / "cold" / "flows" / "*" / "*.parquet").sort("ts")

    # By uid: two flows malicious.
    uids = live["uid"][:2].to_list()
    out = _cli(
        ["label", "malicious", "--uid", uids[0], "--uid", uids[1], "--by", "ana", "--why", "C2"],
        tmp_path,
    )
    assert out.exit_code == 0, out.output
    assert "naming 2 flow(s)" in out.output
    # By host range: every flow of one host within ten minutes, benign.
    host = live["orig_h"][100]
    t0 = live["ts"][100]
    in_range = live.filter(
        ((pl.col("orig_h") == host) | (pl.col("resp_h") == host))
        & pl.col("ts").is_between(t0, t0 + timedelta(minutes=10))
    )
    assert in_range.height >= 1
    out = _cli(
        [
            "label",
            "benign",
            "--host",
            host,
            "--from",
            t0.isoformat(),
            "--to",
            str((t0 + timedelta(minutes=10)).timestamp()),
            "--by",
            "bo",
            "--why",
            "backup job",
        ],
        tmp_path,
    )
    assert out.exit_code == 0, out.output
    # A later label wins: the first uid is relabelled benign from a CSV file.
    csv = tmp_path / "labels.csv"
    csv.write_text(f"verdict,uid,why\nbenign,{uids[0]},false positive: the printer\n")
    assert _cli(["label", "--csv", str(csv), "--by", "cy"], tmp_path).exit_code == 0

    after = _training_set(defs, instance)
    analyst = after.filter(pl.col("source") == "analyst")
    expected = {uids[0]: "benign", uids[1]: "malicious"}
    for uid in in_range["uid"].to_list():
        expected.setdefault(uid, "benign")
    assert dict(zip(analyst["uid"], analyst["label"], strict=True)) == expected
    assert set(analyst["capture"]) == {"live"}
    # The reference rows are unchanged; no unlabelled live flow entered.
    ref_cols = ["uid", "label", "split"]
    assert (
        after.filter(pl.col("source") == "reference")
        .select(ref_cols)
        .sort("uid")
        .equals(before.select(ref_cols).sort("uid"))
    )
    assert after.height == before.height + len(expected)
    # Only the training set changed: hot and cold are as they were; history is kept.
    assert table_digest(tmp_path, "flows", "uid") == hot_before
    assert file_digests(tmp_path / "cold" / "flows") == cold_before
    assert read_labels(store).height == 2 + 1 + 1
    md = instance.get_latest_materialization_event(AssetKey("flow_labels")).asset_materialization
    assert md.metadata["labelled_flows"].value == len(expected)
    assert md.metadata["malicious_flows"].value == 1


def test_bad_labels_get_a_clear_error_and_write_nothing(labelled_install, tmp_path):
    _, store = labelled_install
    live = pl.read_parquet(tmp_path / "cold" / "flows" / "*" / "*.parquet")
    uid, host, ts = live["uid"][0], live["orig_h"][0], live["ts"][0]
    when = ts.isoformat()
    cases = [
        (["label", "malicious", "--uid", "CnotAUid0000", "--by", "a", "--why", "w"],
         "no stored flow for: uid CnotAUid0000"),
        (["label", "malicious", "--uid", uid, "--uid", "Cmissing", "--by", "a", "--why", "w"],
         "uid Cmissing"),
        (["label", "evil", "--uid", uid, "--by", "a", "--why", "w"], "unknown verdict 'evil'"),
        (["label", "benign", "--host", host, "--from", when, "--to",
          (ts - timedelta(hours=1)).isoformat(), "--by", "a", "--why", "w"],
         "reversed time range"),
        (["label", "benign", "--host", host, "--from", "2001-01-01T00:00:00",
          "--to", "2001-01-02T00:00:00", "--by", "a", "--why", "w"],
         f"no stored flow for: host {host}"),
        (["label", "benign", "--uid", uid, "--why", "w"], "--by NAME"),
        (["label", "benign", "--host", "not-an-ip", "--from", when, "--to", when,
          "--by", "a", "--why", "w"], "not an IP address"),
        (["label", "benign", "--host", host, "--from", "yesterday", "--to", when,
          "--by", "a", "--why", "w"], "is not a time"),
    ]  # fmt: skip
    for args, message in cases:
        out = _cli(args, tmp_path)
        assert out.exit_code != 0, args
        assert message in out.output, (args, out.output)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(f"verdict,uid\nmalicious,{uid}\nmaybe,{uid}\n")
    out = _cli(["label", "--csv", str(bad_csv), "--by", "a", "--why", "w"], tmp_path)
    assert out.exit_code != 0 and "line 3: unknown verdict 'maybe'" in out.output
    assert store.list_frames(LABELS_DIR) == []


# --------------------------------------------------------------------------- evaluate


def test_model_evaluate_on_tsv_json_csv_unlabelled_and_non_zeek_files(tmp_path):
    uri = sqlite_store(tmp_path / "mlflow", "nids-gnn")
    from nids_core.model.training import TrainConfig

    version = register_trained(
        uri,
        "nids-gnn",
        capture_flows(*REFERENCE),
        TrainConfig(max_epochs=40, patience=8, hidden=32),
    )
    ModelRegistry(uri, "nids-gnn").promote(version)
    # The same real capture in Zeek's JSON form, as a user's sensor would write it.
    json_file = tmp_path / "capture-42-1.json.log"
    flows = read_zeek_file(iot23("CTU-Malware-Capture-42-1-labeled.csv.gz")).flows
    json_file.write_bytes(b"\n".join(to_zeek_json(flows)) + b"\n")
    assert json.loads(json_file.read_text().splitlines()[0])["id.orig_h"]
    not_zeek = tmp_path / "inventory.csv"
    not_zeek.write_text("host,owner\n10.0.0.1,alice\n")
    files = [
        iot23("CTU-Malware-Capture-34-1.conn.log.labeled.gz"),  # native TSV
        json_file,
        iot23("CTU-Malware-Capture-21-1-labeled.csv.gz"),  # CSV
        data_dir() / "zeek-samples" / "conn.log",  # no labels
        not_zeek,
    ]
    out = _cli(["model", "evaluate", "--baseline", *map(str, files)], tmp_path)
    lines = out.output.strip().splitlines()
    assert out.exit_code == 1  # one file was not a conn log; the others were evaluated
    by_file = {str(f): next(line for line in lines if line.startswith(f"{f}: ")) for f in files}
    assert "flows 23145, labelled 23145" in by_file[str(files[0])]
    assert "attacks 21222" in by_file[str(files[0])]
    assert "flows 4426, labelled 4426" in by_file[str(files[1])]
    assert "no labelled flows: left out of the means" in by_file[str(files[3])]
    assert "ERROR not a Zeek conn log: no uid, ts, id.orig_h" in by_file[str(files[4])]
    assert all("; gnn macro_f1=" in by_file[str(f)] for f in files[:3])  # the graph alone
    f1 = {"model": [], "baseline": []}
    for f in files[:3]:
        for name in f1:
            match = re.search(
                rf"; {name} macro_f1=([0-9.]+) attack_recall=\S+ benign_fpr=\S+", by_file[str(f)]
            )
            f1[name].append(float(match.group(1)))
    last = lines[-1]
    assert re.fullmatch(
        r"evaluate: model mean_macro_f1=[0-9.]+ min=[0-9.]+; baseline mean_macro_f1=[0-9.]+ min=[0-9.]+",
        last,
    )
    numbers = [float(x) for x in re.findall(r"=([0-9.]+)", last)]
    assert numbers == pytest.approx(
        [sum(f1["model"]) / 3, min(f1["model"]), sum(f1["baseline"]) / 3, min(f1["baseline"])],
        abs=1e-4,
    )
    # Without --baseline, and a version that does not exist.
    out = _cli(["model", "evaluate", "--model", version, str(files[2])], tmp_path)
    assert out.exit_code == 0
    assert out.output.strip().splitlines()[-1].endswith("baseline mean_macro_f1=- min=-")
    out = _cli(["model", "evaluate", "--model", "99", str(files[2])], tmp_path)
    assert out.exit_code != 0 and "has no version 99" in out.output


def test_label_times_and_csv_rules():
    from nids_core.training_data.analyst_labels import LabelError, parse_time

    assert parse_time("2024-01-02T03:04:05") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time("1704164645") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time("2024-01-02T04:04:05+01:00") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(LabelError):
        parse_time("noon")


def test_a_reference_file_that_is_not_a_conn_log_fails_its_read_and_the_sensor_says_so(
    broker, topic, tmp_path, instance
):
    reference = _reference_dir(tmp_path, [])
    (reference / "inventory.csv").write_text("host,owner\n10.0.0.1,alice\n")
    defs = _defs(broker, topic, tmp_path, reference)
    cursors: dict = {}
    runs, failed, _ = drive_reference(defs, instance, cursors)
    assert (runs, failed) == (1, 1)  # one read, refused; no training was requested
    run = instance.get_runs()[0]
    assert run.tags["dagster/partition"] == "inventory"
    failure = next(
        e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_failure
    )
    assert "not a Zeek conn log: no uid, ts" in str(failure.dagster_event.event_specific_data)
    assert defs.resources["cold_store"].store().list_frames("reference/capture=inventory") == []
    # Asked again, the sensor requests nothing more and says what to do.
    runs, _, skip = drive_reference(defs, instance, cursors)
    assert runs == 0 and "inventory could not be read" in skip and "fix or remove it" in skip


@pytest.mark.slow
def test_a_reference_file_that_decompresses_past_the_limit_is_refused_naming_it(
    broker, topic, tmp_path, instance
):
    """Issue 25: a gzip of zeros (6 MB here, 1 MB the limit) is read in chunks and refused
    as soon as it passes NIDS_MAX_FILE_MB, naming the file, and the run fails; the corpus's
    other files are read as usual."""
    reference = _reference_dir(tmp_path, ["CTU-Honeypot-Capture-4-1-labeled.csv.gz"])
    (reference / "zeros.log.gz").write_bytes(gzip.compress(bytes(6 * 2**20)))
    defs = _defs(broker, topic, tmp_path, reference, max_file_mb=1)
    runs, failed, _ = drive_reference(defs, instance, {})
    assert (runs, failed) == (2, 1)
    run = next(r for r in instance.get_runs() if r.tags["dagster/partition"] == "zeros")
    failure = next(
        e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_failure
    )
    text = str(failure.dagster_event.event_specific_data)
    assert "zeros: decompresses to more than 1 MB, the limit on one file (NIDS_MAX_FILE_MB)" in text
