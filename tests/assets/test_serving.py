"""Scoring, alerts, hot-data lifecycle, lag and the alert webhook, on real services."""

import json
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import duckdb
import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, SensorResult, build_sensor_context, materialize

from nids_assets.scoring import flow_predictions
from nids_cli.driver import drain, execute_request, tick_sensor
from nids_core.kafka.lag import measure_lag
from nids_core.kafka.log import KafkaSettings, open_client
from nids_core.model.training import TrainConfig
from nids_core.registry.versions import ModelRegistry
from nids_core.serving.outbox import retry_after_s
from nids_core.serving.webhook import post_alert
from nids_core.stores.lifecycle import expire_hot_data
from nids_core.zeek.files import read_zeek_file
from nids_devkit.broker import free_port
from nids_jobs.definitions import build_definitions
from tests.support.deployment import iot23, make_resources
from tests.support.ingest import produce, replay
from tests.support.model import capture_flows, register_trained

TRAIN_ON = ("CTU-Malware-Capture-8-1-labeled.csv.gz", "CTU-Honeypot-Capture-7-1-labeled.csv.gz")
STREAM = ("CTU-Malware-Capture-20-1-labeled.csv.gz",)  # 3,209 flows, 16 attacks
FAST = TrainConfig(max_epochs=40, patience=8, hidden=32)


def _train_version(tracking_uri: str, name: str, seed: int) -> str:
    config = TrainConfig(**{**FAST.__dict__, "seed": seed})
    return register_trained(tracking_uri, name, capture_flows(*TRAIN_ON), config)


@pytest.fixture(scope="module")
def champion(mlflow_server):
    """A registered model with version 1 promoted to champion (and version 2 in reserve)."""
    name = f"serving-{uuid.uuid4().hex[:6]}"
    registry = ModelRegistry(mlflow_server.url, name)
    v1 = _train_version(mlflow_server.url, name, seed=0)
    registry.promote(v1)
    v2 = _train_version(mlflow_server.url, name, seed=1)
    return registry, v1, v2


def _defs(broker, topic, tmp_path, registry, **serving):
    return build_definitions(
        make_resources(
            broker,
            topic,
            tmp_path,
            tracking_uri=registry.tracking_uri,
            model_name=registry.model_name,
            serving={"model_cache_dir": str(tmp_path / "cache"), **serving},
        )
    )


def _hot(tmp_path, sql):
    con = duckdb.connect(str(tmp_path / "hot.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_registry_champion_is_enough_to_score_and_a_new_champion_is_picked_up(
    broker, topic, tmp_path, instance, champion
):
    """This Dagster instance never materialized champion_model (a fresh deployment pointed
    at a registry that has a champion): the first batches are scored all the same."""
    registry, v1, v2 = champion
    defs = _defs(broker, topic, tmp_path, registry)
    replay(broker, topic, [iot23(n) for n in STREAM], shift_to_now=True)
    cursors: dict = {}  # one cursor dict throughout, as the daemon keeps its sensor cursors
    served = drain(defs, instance, cursors)
    assert served.failed_runs == 0 and served.scoring_runs == 1
    assert instance.get_latest_materialization_event(AssetKey("champion_model")) is None
    rows = _hot(
        tmp_path,
        "SELECT count(*), count(DISTINCT p.uid), min(p.model_version), max(p.model_version), "
        "(SELECT count(*) FROM flows) FROM predictions p JOIN flows f USING (uid)",
    )
    assert rows == [(3209, 3209, v1, v1, 3209)]
    again = drain(defs, instance, cursors)
    assert again.scoring_runs == 0
    assert _hot(tmp_path, "SELECT count(*) FROM predictions") == [(3209,)]
    alerts = _hot(tmp_path, "SELECT count(*), coalesce(sum(attack_flows), 0) FROM alerts")
    flagged = _hot(tmp_path, "SELECT count(*) FROM predictions WHERE score >= 0.9")
    assert alerts[0][1] == flagged[0][0]

    # A new champion, no restart: new flows get version 2, old predictions stay version 1.
    registry.promote(v2)
    try:
        replay(broker, topic, [iot23("CTU-Honeypot-Capture-4-1-labeled.csv.gz")], shift_to_now=True)
        assert drain(defs, instance, cursors).failed_runs == 0
        by_version = dict(
            _hot(tmp_path, "SELECT model_version, count(*) FROM predictions GROUP BY 1 ORDER BY 1")
        )
        assert by_version == {v1: 3209, v2: 452}
        md = instance.get_latest_materialization_event(AssetKey("flow_predictions"))
        assert md.asset_materialization.metadata["model_version"].value == v2
    finally:
        registry.promote(v1)


def test_missing_champion_fails_with_a_clear_message(broker, topic, tmp_path, mlflow_server):
    nobody = ModelRegistry(mlflow_server.url, f"empty-{uuid.uuid4().hex[:6]}")
    resources = make_resources(
        broker,
        topic,
        tmp_path,
        tracking_uri=mlflow_server.url,
        model_name=nobody.model_name,
        serving={"model_cache_dir": str(tmp_path / "cache")},
    )
    result = materialize(
        [flow_predictions],
        resources={
            k: resources[k] for k in ("hot_store", "model_registry", "serving", "plausible_time")
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0]
    error = failure.step_failure_data.error
    message = error.cause.message if error.cause else error.message
    assert message.startswith("nids_core.registry.versions.NoChampion: registered model")
    assert "has no `champion` alias" in message and "No predictions are written" in message
    assert not (tmp_path / "hot.duckdb").exists()  # failed before touching the hot store


def test_lifecycle_never_deletes_flows_missing_from_cold(broker, topic, tmp_path, instance):
    """Expire everything older than 'now + 1 day': the day whose cold files were deleted is
    rebuilt from landing first; the day whose landing files are gone too is kept."""
    replay(
        broker,
        topic,
        [iot23("CTU-Malware-Capture-21-1-labeled.csv.gz")],  # spans two UTC days
        shift_to_now=True,
    )
    defs = build_definitions(make_resources(broker, topic, tmp_path))
    assert drain(defs, instance, {}).failed_runs == 0
    store = defs.resources["cold_store"].store()
    days = store.cold_days()
    assert len(days) == 2
    kept_day, rebuilt_day = days
    per_day = dict(
        _hot(
            tmp_path,
            "SELECT CAST(timezone('UTC', ts) AS DATE)::VARCHAR, count(*) FROM flows GROUP BY 1",
        )
    )
    # rebuilt_day: only its cold file is gone; kept_day: its landing files are gone too.
    shutil.rmtree(tmp_path / "cold" / "flows" / f"date={rebuilt_day}")
    shutil.rmtree(tmp_path / "cold" / "flows" / f"date={kept_day}")
    shutil.rmtree(tmp_path / "cold" / "landing" / f"date={kept_day}")

    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    try:
        results = {r.day: r for r in expire_hot_data(con, store, datetime.now(UTC) + timedelta(1))}
        left = dict(
            con.execute(
                "SELECT CAST(timezone('UTC', ts) AS DATE)::VARCHAR, count(*) FROM flows GROUP BY 1"
            ).fetchall()
        )
    finally:
        con.close()
    assert results[rebuilt_day].rebuilt_cold and results[rebuilt_day].skipped_reason is None
    assert results[rebuilt_day].deleted_flows == per_day[rebuilt_day]
    assert store.read_cold_day(rebuilt_day).height == per_day[rebuilt_day]
    assert "not in cold partition" in results[kept_day].skipped_reason
    assert left == {kept_day: per_day[kept_day]}


def test_lag_after_produce_partial_and_full_consume(broker, topic, tmp_path, instance):
    produce(broker, topic, [b"{}"] * 120)
    settings = KafkaSettings(broker.bootstrap_servers, f"nids-etl-{topic}")
    defs = build_definitions(make_resources(broker, topic, tmp_path))

    def lag_via_sensor():
        sensor = defs.resolve_sensor_def("kafka_lag_sensor")
        with build_sensor_context(
            instance=instance, resources=defs.resources, definitions=defs
        ) as ctx:
            result = sensor(ctx)
        assert isinstance(result, SensorResult)
        observation, check, scoring = result.asset_events
        assert scoring.check_name == "scoring_keeps_up" and scoring.passed
        return observation.metadata["lag_partition_0"].value, check.passed

    with open_client("kafka-python", settings) as client:
        assert [x.lag for x in measure_lag(client, topic)] == [120]
        assert lag_via_sensor() == (120, True)
        client.commit(topic, 0, 45)
        assert [x.lag for x in measure_lag(client, topic)] == [75]
        assert lag_via_sensor() == (75, True)
        client.commit(topic, 0, 120)
        assert [x.lag for x in measure_lag(client, topic)] == [0]
        assert lag_via_sensor() == (0, True)
    strict = build_definitions(
        make_resources(
            broker, topic, tmp_path, serving={"lag_warn_records": 0, "lag_fail_records": 0}
        )
    )
    produce(broker, topic, [b"{}"] * 5)
    with build_sensor_context(
        instance=instance, resources=strict.resources, definitions=strict
    ) as ctx:
        result = strict.resolve_sensor_def("kafka_lag_sensor")(ctx)
    check = result.asset_events[1]
    assert not check.passed and check.severity.value == "ERROR"
    assert check.metadata["max_partition_lag"].value == 5


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/nids", _Hook.received
    server.shutdown()


def test_webhook_receives_an_alert_for_a_failed_check(broker, topic, tmp_path, instance, webhook):
    url, received = webhook
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    from nids_core.stores.hot_schema import ensure_schema

    ensure_schema(con)
    con.execute("ALTER TABLE flows ADD COLUMN drifted INTEGER")
    con.close()
    replay(broker, topic, [iot23("CTU-Honeypot-Capture-7-1-labeled.csv.gz")])
    defs = build_definitions(
        make_resources(broker, topic, tmp_path, serving={"alert_webhook_url": url})
    )
    assert drain(defs, instance, {}, cold=False).failed_runs == 1
    # The check sensor stores the alert in the outbox; the delivery sensor posts it.
    with build_sensor_context(instance=instance, resources=defs.resources, definitions=defs) as ctx:
        defs.resolve_sensor_def("check_failure_alert_sensor")(ctx)
        cursor = ctx.cursor
    outbox = defs.resources["serving"].outbox()
    assert [a.kind for a in outbox.pending()] == ["check_failed"]
    # A webhook that is down: the delivery fails naming only the webhook's host, and the
    # alert stays in the outbox for a later tick instead of being lost.
    dead_url = f"http://127.0.0.1:{free_port()}/hooks/nids"
    dead = build_definitions(
        make_resources(broker, topic, tmp_path, serving={"alert_webhook_url": dead_url})
    )
    with build_sensor_context(instance=instance, resources=dead.resources, definitions=dead) as ctx:
        skipped = dead.resolve_sensor_def("alert_delivery_sensor")(ctx)
    assert "0 delivered, 1 failed, 1 waiting" in skipped.skip_message
    (pending,) = outbox.pending()
    assert pending.attempts == 1
    assert "alert webhook at host 127.0.0.1 failed" in pending.last_error
    # The URL's path and query carry the webhook's token (Slack style): never in errors.
    assert "/hooks/nids" not in pending.last_error
    assert received == []
    # Once the backoff has passed, the live webhook gets it, once.
    assert outbox.deliver_due(lambda b: None, now=0).delivered == 0  # not due yet
    delivered = outbox.deliver_due(
        lambda body: post_alert(url, body), now=time.time() + retry_after_s(1)
    )
    assert (delivered.delivered, delivered.pending) == (1, 0)
    alerts = [body for ctype, body in received if ctype == "application/json"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["kind"] == "check_failed"
    assert alert["alert_id"].startswith("check_failed:hot_flows:hot_flows_schema:")
    assert (alert["asset"], alert["check"], alert["severity"]) == (
        "hot_flows",
        "hot_flows_schema",
        "ERROR",
    )
    assert "drifted" in alert["metadata"]["differences"]
    assert alert["run_id"] and alert["text"].startswith(":warning:")
    # The next ticks store nothing new and send nothing twice.
    with build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs, cursor=cursor
    ) as ctx:
        defs.resolve_sensor_def("check_failure_alert_sensor")(ctx)
    with build_sensor_context(instance=instance, resources=defs.resources, definitions=defs) as ctx:
        defs.resolve_sensor_def("check_failure_alert_sensor")(ctx)  # from scratch: same ids
        defs.resolve_sensor_def("alert_delivery_sensor")(ctx)
    assert len(received) == 1 and outbox.counts() == {"total": 1, "delivered": 1}


def test_cold_predictions_rescore_a_day_with_a_chosen_version(
    broker, topic, tmp_path, instance, champion
):
    """The documented backfill: re-scoring a cold day with model version N writes
    rescored/version=N/ for every flow of the day, the same file on every re-run, and
    leaves the served predictions alone."""
    registry, v1, _ = champion
    defs = _defs(broker, topic, tmp_path, registry)
    replay(broker, topic, [iot23("CTU-Honeypot-Capture-7-1-labeled.csv.gz")], shift_to_now=True)
    assert drain(defs, instance, {}).failed_runs == 0
    store = defs.resources["cold_store"].store()
    day = store.cold_days()[-1]
    job = defs.get_implicit_global_asset_job_def()
    config = {"ops": {"cold_predictions": {"config": {"model_version": v1}}}}
    files = []
    for _ in range(2):
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[AssetKey("cold_predictions")],
            partition_key=day,
            run_config=config,
        )
        assert result.success
        frame = store.read_predictions(day, v1)
        files.append(frame.drop("predicted_at"))
    cold = store.read_cold_day(day)
    assert sorted(files[0]["uid"].to_list()) == sorted(cold["uid"].to_list())
    assert set(files[0]["model_version"]) == {v1}
    assert files[0].equals(files[1])
    assert store.read_predictions(day) is None  # nothing was served for this topic yet


def test_a_far_future_flow_stored_earlier_neither_pins_the_newest_window_nor_stays_hot(
    broker, topic, tmp_path, instance
):
    """Rows stored before the plausible window was narrowed: one flow in 2286 must
    not stand for "the newest window" of the attack-rate check, and the lifecycle moves it to
    quarantine (it would never expire and has no cold partition)."""
    from nids_core.serving.alerts import latest_attack_rate
    from nids_core.stores.lifecycle import IMPLAUSIBLE_REASON

    now = datetime.now(UTC).replace(microsecond=0)
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    flows = _stored_flows(con, pl.Series("ts", [now, now, now, datetime(2286, 11, 20, tzinfo=UTC)]))
    for uid, ts, score in zip(flows["uid"], flows["ts"], [0.1, 0.2, 0.95, 1.0], strict=True):
        label = "malicious" if score >= 0.9 else "benign"
        con.execute(
            "INSERT INTO predictions VALUES (?, ?, ?, '1', now(), ?)", [uid, score, label, ts]
        )
    window, scored, attacks = latest_attack_rate(con, 0.9, 15)
    assert (scored, attacks) == (3, 1) and window.startswith(str(now.year))
    con.close()
    defs = build_definitions(make_resources(broker, topic, tmp_path))
    assert defs.resolve_job_def("hot_lifecycle_job").execute_in_process(instance=instance).success
    assert _hot(tmp_path, "SELECT count(*) FROM flows") == [(3,)]
    assert _hot(tmp_path, "SELECT count(*) FROM predictions") == [(3,)]
    quarantined = _hot(tmp_path, "SELECT error, CAST(raw AS VARCHAR) FROM quarantine")
    assert len(quarantined) == 1 and quarantined[0][0] == IMPLAUSIBLE_REASON
    assert flows["uid"][3] in quarantined[0][1] and "2286" in quarantined[0][1]


def test_scoring_some_flows_of_a_window_gives_them_their_scores_among_all(champion, tmp_path):
    """Flows scored with the rest of their windows as context (only they go through the
    graph model's head and the trees) get, bit for bit, the scores they get when every
    flow of those windows is scored."""
    from nids_core.serving.model_cache import load_version
    from tests.support.deployment import iot23

    registry, v1, _ = champion
    scorer = load_version(registry, v1, tmp_path / "cache")
    flows = pl.concat(
        read_zeek_file(iot23(name)).flows
        for name in (
            "CTU-Honeypot-Capture-4-1-labeled.csv.gz",
            "CTU-Malware-Capture-8-1-labeled.csv.gz",
        )
    )
    rows = np.flatnonzero(np.random.default_rng(0).random(flows.height) < 0.05)
    every = scorer.score(flows)
    some = scorer.score(flows, targets=rows)
    assert len(some) == len(rows) and np.array_equal(some, every[rows])
    assert np.array_equal(scorer.gnn_score(flows, targets=rows), scorer.gnn_score(flows)[rows])
    assert 0 < (some >= scorer.threshold).sum() < len(rows)


def test_a_score_that_is_not_a_number_is_never_a_verdict(champion, tmp_path):
    """A flow stored with a NaN duration by an earlier version (ingest now quarantines it)
    is neither scored nor used as context; a NaN from the model is never a verdict."""
    import numpy as np

    from nids_core.serving.model_cache import load_served
    from nids_core.serving.scoring import predictions_frame, score_unscored

    registry, v1, _ = champion
    model = load_served(registry, v1, tmp_path / "cache")
    frame = predictions_frame(pl.Series(["a", "b", "c"]), np.array([0.95, np.nan, 0.1]), 0.5, v1)
    assert frame["uid"].to_list() == ["a", "c"]
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    flows = _stored_flows(
        con,
        pl.lit(datetime.now(UTC)).alias("ts"),
        pl.Series("duration", [1.0, float("nan"), 2.0, None, 0.5]),
    )
    counts = score_unscored(con, model)
    predicted = {u for (u,) in con.execute("SELECT uid FROM predictions").fetchall()}
    con.close()
    assert counts.inserted == 4 and counts.unscorable == 1
    assert flows["uid"][1] not in predicted and len(predicted) == 4


def _stored_flows(con, ts: pl.Expr | pl.Series, *columns) -> pl.DataFrame:
    """Real flows (the zat sample), one per `ts` value (five for a literal), with the given
    columns replaced, written straight into the hot table, as an earlier version could have
    stored them."""
    from nids_core.stores.hot import upsert_flows
    from nids_core.stores.hot_schema import ensure_schema
    from tests.support.deployment import FIXTURES

    rows = ts.len() if isinstance(ts, pl.Series) else 5
    flows = (
        read_zeek_file(FIXTURES / "conn.log")
        .flows.head(rows)
        .with_columns(
            ts,
            *columns,
            pl.lit("zeek.conn").alias("topic"),
            pl.lit(0, dtype=pl.Int32).alias("partition"),
            pl.int_range(pl.len(), dtype=pl.Int64).alias("offset"),
        )
    )
    ensure_schema(con)
    upsert_flows(con, flows)
    return flows


def _batch(flows: pl.DataFrame, first_offset: int) -> pl.DataFrame:
    return flows.with_columns(
        pl.lit("zeek.conn").alias("topic"),
        pl.lit(0, dtype=pl.Int32).alias("partition"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_offset).alias("offset"),
    )


def _alert_rows(con) -> list[tuple]:
    return con.execute(
        "SELECT * EXCLUDE (refreshed_at) FROM alerts ORDER BY window_start, orig_h"
    ).fetchall()


def test_scoring_and_alerts_read_only_what_arrived_and_agree_with_a_full_rebuild(
    champion, tmp_path, monkeypatch
):
    """Each flow is scored once however the work is cut (a run cut short by max_flows
    leaves the rest to the next); each refresh rebuilds only the windows with new
    predictions, and the alerts it leaves equal a rebuild of every window from scratch."""
    from nids_core.serving import alerts
    from nids_core.serving.alerts import latest_attack_rate, refresh_alerts
    from nids_core.serving.model_cache import load_served
    from nids_core.serving.scoring import score_unscored
    from nids_core.stores.hot import upsert_flows
    from nids_core.stores.hot_schema import ensure_schema
    from tests.support.deployment import iot23

    # Here everything happens within a second: the minute of predictions each refresh
    # reads again (against clock steps) would be all of them.
    monkeypatch.setattr(alerts, "ALERTS_LOOKBACK", timedelta(0))
    registry, v1, _ = champion
    model = load_served(registry, v1, tmp_path / "cache")
    flows = read_zeek_file(iot23("CTU-Honeypot-Capture-4-1-labeled.csv.gz")).flows.sort("ts")
    first, second = flows.head(200), flows.slice(200, 200)
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    ensure_schema(con)
    upsert_flows(con, _batch(first, 0))
    cut = score_unscored(con, model, max_flows=150)
    assert (cut.inserted, cut.remaining) == (150, 50)
    rest = score_unscored(con, model, max_flows=150)
    assert (rest.inserted, rest.remaining) == (50, 0)
    assert score_unscored(con, model).inserted == 0
    full_first = refresh_alerts(con, 0.0, 15)
    assert full_first.refreshed_windows == full_first.windows > 0

    upsert_flows(con, _batch(second, 200))
    assert score_unscored(con, model).inserted == second.height
    assert con.execute("SELECT count(*), count(DISTINCT uid) FROM predictions").fetchone() == (
        400,
        400,
    )
    late_windows = con.execute(
        "SELECT count(DISTINCT time_bucket(INTERVAL 15 MINUTE, ts)) FROM predictions "
        'WHERE uid IN (SELECT uid FROM flows WHERE "offset" >= 200)'
    ).fetchone()[0]
    incremental = refresh_alerts(con, 0.0, 15)
    assert incremental.refreshed_windows == late_windows < incremental.windows
    rows = _alert_rows(con)
    newest = latest_attack_rate(con, 0.0, 15, min_flows=1)  # the newest window alone

    con.execute("DELETE FROM alerts_progress")
    con.execute("DELETE FROM alerts")
    rebuilt = refresh_alerts(con, 0.0, 15)
    assert rebuilt.refreshed_windows == rebuilt.windows == incremental.windows
    assert _alert_rows(con) == rows
    assert latest_attack_rate(con, 0.0, 15, min_flows=1) == newest
    assert (
        newest[1]
        == con.execute(
            "SELECT count(*) FROM flows WHERE time_bucket(INTERVAL 15 MINUTE, ts) = "
            "(SELECT max(time_bucket(INTERVAL 15 MINUTE, ts)) FROM flows)"
        ).fetchone()[0]
    )
    con.close()


def test_a_scoring_mark_ahead_of_the_clock_does_not_hide_new_flows(champion, tmp_path):
    """The clock stepped back after a scoring run (an NTP correction of a fast clock): its
    mark lies in the future, and flows ingested after the step must still be scored."""
    from nids_core.serving import scoring
    from nids_core.serving.model_cache import load_served
    from nids_core.serving.scoring import score_unscored
    from nids_core.stores.hot import upsert_flows
    from nids_core.stores.hot_schema import ensure_schema
    from tests.support.deployment import iot23

    registry, v1, _ = champion
    model = load_served(registry, v1, tmp_path / "cache")
    flows = read_zeek_file(iot23("CTU-Honeypot-Capture-4-1-labeled.csv.gz")).flows.sort("ts")
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    ensure_schema(con)
    upsert_flows(con, _batch(flows.head(100), 0))
    assert score_unscored(con, model).inserted == 100
    scoring._set_scoring_mark(con, datetime.now(UTC) + timedelta(hours=6))
    upsert_flows(con, _batch(flows.slice(100, 100), 100))
    assert score_unscored(con, model).inserted == 100
    assert con.execute("SELECT count(DISTINCT uid) FROM predictions").fetchone() == (200,)
    con.close()


_LAND_LATER = """
import json, sys, time
import duckdb, polars as pl
from nids_core.stores.hot import read_only_query, upsert_flows
hot, second, out = sys.argv[1:]
count = lambda: read_only_query(hot, "SELECT count(*) FROM predictions")[0][0]
while count() < 100:
    time.sleep(0.2)
while True:
    try:
        con = duckdb.connect(hot)
    except duckdb.IOException:
        time.sleep(0.05)
        continue
    with con:
        upsert_flows(con, pl.read_parquet(second))
    break
landed = time.time()
while count() < 200:
    time.sleep(0.1)
open(out, "w").write(json.dumps([landed, time.time()]))
"""


def test_a_scoring_run_follows_the_stream_and_scores_what_lands_while_it_runs(
    broker, topic, tmp_path, instance, champion
):
    """A scoring run stays up for NIDS_SCORE_FOLLOW_S (as under the daemon): flows that
    land while it runs are scored by it seconds later, each such pass reported as an
    observation, and it stops once no new flows have come for FOLLOW_IDLE_EXIT_S."""
    import subprocess
    import sys
    import time

    from nids_assets.scoring import FOLLOW_IDLE_EXIT_S
    from nids_core.stores.hot import upsert_flows
    from nids_core.stores.hot_schema import ensure_schema
    from tests.support.deployment import iot23

    registry, _, _ = champion
    defs = _defs(broker, topic, tmp_path, registry)
    flows = read_zeek_file(iot23("CTU-Honeypot-Capture-4-1-labeled.csv.gz")).flows.sort("ts")
    hot = tmp_path / "hot.duckdb"
    with duckdb.connect(str(hot)) as con:
        ensure_schema(con)
        upsert_flows(con, _batch(flows.head(100), 0))

    # Another process lands the second batch once the run's first pass is in, as an ingest
    # run would (the scoring run holds DuckDB's file lock only while it scores), and notes
    # when it landed and when it was scored.
    second = tmp_path / "second.parquet"
    _batch(flows.slice(100, 100), 100).write_parquet(second)
    timings = tmp_path / "timings.json"
    lander = subprocess.Popen(
        [sys.executable, "-c", _LAND_LATER, str(hot), str(second), str(timings)],
        start_new_session=True,
    )
    started = time.time()
    result = defs.resolve_job_def("scoring_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"flow_predictions": {"config": {"follow_seconds": 120}}}},
    )
    ended = time.time()
    assert lander.wait(30) == 0
    landed, scored = json.loads(timings.read_text())
    assert result.success
    assert scored - landed < 5  # by the same run, within seconds
    assert ended - scored < FOLLOW_IDLE_EXIT_S + 5 and ended - started < FOLLOW_IDLE_EXIT_S + 40
    md = {
        k: v.value
        for k, v in instance.get_latest_materialization_event(
            AssetKey("flow_predictions")
        ).asset_materialization.metadata.items()
    }
    assert md["scored"] == 200 and md["passes"] >= 2 and md["stopped"].startswith("no new flows")
    observed = instance.fetch_observations(AssetKey("flow_predictions"), limit=10).records
    assert [r.asset_event.metadata["scored"].value for r in observed] == [100]
    assert _hot(tmp_path, "SELECT count(DISTINCT uid) FROM predictions") == [(200,)]


def test_the_scoring_sensor_starts_scoring_while_an_ingest_run_lands_a_batch(
    broker, topic, tmp_path, champion
):
    """Nothing new to score: the sensor waits, unless an ingest run is in flight. Then it
    starts the scoring run at once, so its launch and model load overlap the ingest run
    and, following the stream, it scores the batch as soon as it lands."""
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    registry, _, _ = champion
    defs = _defs(broker, topic, tmp_path, registry)
    with DagsterInstance.ephemeral() as instance:

        def tick() -> SensorResult:
            with build_sensor_context(
                instance=instance, resources=defs.resources, definitions=defs
            ) as ctx:
                return defs.resolve_sensor_def("scoring_sensor")(ctx)

        idle = tick()
        assert not idle.run_requests
        assert idle.skip_reason.skip_message == "no new hot flows since the last scoring run"
        instance.add_run(DagsterRun(job_name="ingest_job", status=DagsterRunStatus.STARTED))
        (request,) = tick().run_requests
        assert request.run_key.startswith("score:0:v") and ":ahead-" in request.run_key


def test_an_attack_rate_onset_seen_by_a_following_run_runs_the_alerts_step_at_once(
    broker, topic, tmp_path
):
    """A following scoring run marks the pass where the newest window's attack rate starts
    failing; attack_rate_sensor then runs the alerts step alone (once per onset), so the
    check does not wait for the scoring run to end."""
    from dagster import AssetObservation, DagsterInstance

    from nids_assets.scoring import ATTACK_RATE_ONSET
    from nids_jobs.definitions import build_definitions

    defs = build_definitions(make_resources(broker, topic, tmp_path))
    cursors: dict = {}
    with DagsterInstance.ephemeral() as instance:

        def tick():
            requests, skip, cursors["attack_rate_sensor"] = tick_sensor(
                defs, instance, "attack_rate_sensor", cursors
            )
            return requests, skip

        assert tick() == ([], "no alerts observed since the last look")
        for onset in (False, True, False):
            instance.report_runless_asset_event(
                AssetObservation("alerts", metadata={ATTACK_RATE_ONSET: onset})
            )
        (request,), _ = tick()
        assert request.run_key.startswith("attack-rate-onset:")
        assert tick() == ([], "no alerts observed since the last look")
        assert execute_request(defs, instance, "alerts_job", request)
        assert instance.get_latest_materialization_event(AssetKey("alerts")) is not None


def test_text_from_kafka_and_analysts_is_shown_as_text_in_markdown_and_chat():
    """Issue 25: a reason like `![t](http://x/track.png)` or `[x](javascript:…)` in a
    label was rendered by the UI as an image fetched from elsewhere, or a link; in a
    webhook's `text` a `<!channel>` would page everyone."""
    from markdown_it import MarkdownIt

    from nids_assets.reference import _newest_md
    from nids_core.escaping import escape_chat, escape_markdown

    now = datetime.now(UTC)
    entries = pl.DataFrame(
        {
            "uid": ["C1", None],
            "host": [None, "10.0.0.1"],
            "start": [None, now],
            "end": [None, now],
            "labelled_at": [now, now],
            "verdict": ["malicious", "benign"],
            "labelled_by": ["<img src=x onerror=alert(1)>", "eve | x"],
            "why": ["![t](http://tracker.example/track.png)", "[x](javascript:alert(1))\nnext"],
        }
    )
    html = MarkdownIt("commonmark").enable("table").render(_newest_md(entries))
    assert "<img" not in html and "<a " not in html and "href=" not in html
    assert "track.png" in html  # the text itself is shown
    assert html.count("<tr>") == 3  # a `|` in a name does not add a column or a row
    assert "\n" not in escape_markdown("a\nb") and escape_markdown("x" * 900).endswith("…")
    chat = escape_chat("<!channel> <http://evil|click> `code` \u202e")
    assert "<" not in chat and ">" not in chat and "`" not in chat and "\u202e" not in chat


def test_a_sparse_newest_window_does_not_decide_the_attack_rate_alone(tmp_path):
    """Issue 25: 17 flows scoring about 0.5 made up the newest window, so the attack-rate
    check passed although 79% of the hour's flows were predicted attacks. A newest window
    with fewer than NIDS_ALERT_RATE_MIN_FLOWS flows is judged with the windows before it."""
    from nids_core.serving.alerts import latest_attack_rate
    from nids_core.stores.hot import upsert_flows
    from nids_core.stores.hot_schema import ensure_schema

    flows = read_zeek_file(iot23("CTU-Honeypot-Capture-4-1-labeled.csv.gz")).flows.head(317)
    newest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    ts = [newest - timedelta(minutes=14, seconds=-i) for i in range(300)]  # the busy window
    ts += [newest + timedelta(seconds=i) for i in range(17)]  # the sparse newest one
    flows = flows.with_columns(
        pl.Series("ts", ts, dtype=pl.Datetime("us", "UTC")),
        pl.lit("zeek.conn").alias("topic"),
        pl.lit(0, dtype=pl.Int32).alias("partition"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("offset"),
    )
    scores = [0.95] * 240 + [0.1] * 60 + [0.5] * 17
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    ensure_schema(con)
    upsert_flows(con, flows)
    for uid, t, score in zip(flows["uid"], flows["ts"], scores, strict=True):
        label = "malicious" if score >= 0.9 else "benign"
        con.execute(
            "INSERT INTO predictions VALUES (?, ?, ?, '1', now(), ?)", [uid, score, label, t]
        )
    alone = latest_attack_rate(con, 0.9, 15, min_flows=1)
    assert alone[1:] == (17, 0)  # the old verdict: 0% attacks
    start, scored, attacks = latest_attack_rate(con, 0.9, 15, min_flows=200)
    assert (scored, attacks) == (317, 240) and attacks / scored > 0.75
    assert start == str(newest - timedelta(minutes=45))  # widened to 4 windows
    con.close()


def test_records_waiting_with_no_batch_committed_fail_consumer_lag_whatever_the_lag(
    broker, topic, tmp_path, instance
):
    """Issue 25: ingestion stopped (a sensor failing every tick) while the lag stayed under
    its warning level, and nothing said so. consumer_lag fails once records have waited
    NIDS_HEALTH_STALL_MINUTES with no batch committed, however small the lag, and passes
    again when a batch is committed; an idle partition is never stalled."""
    produce(broker, topic, [b"{}"] * 5)
    defs = build_definitions(make_resources(broker, topic, tmp_path))
    sensor = defs.resolve_sensor_def("kafka_lag_sensor")

    def tick(cursor=None):
        with build_sensor_context(
            instance=instance, resources=defs.resources, definitions=defs, cursor=cursor
        ) as ctx:
            result = sensor(ctx)
        return result.asset_events[1], result.cursor

    check, cursor = tick()
    assert check.passed  # 5 records waiting, just now
    waiting_since = json.loads(cursor)["progress"]["0"]
    assert waiting_since[0] is None
    eleven_minutes_ago = json.dumps({"progress": {"0": [None, time.time() - 660]}})
    check, cursor = tick(eleven_minutes_ago)
    assert not check.passed and check.severity.value == "ERROR"
    stopped = check.metadata["stopped"].value
    assert "partition 0: 5 records waiting, no batch committed for 11 min" in stopped
    assert check.metadata["max_partition_lag"].value == 5  # far under the warning level
    with open_client(
        "kafka-python", KafkaSettings(broker.bootstrap_servers, f"nids-etl-{topic}")
    ) as c:
        c.commit(topic, 0, 5)
    check, cursor = tick(cursor)
    assert check.passed and check.metadata["stopped"].value == "no"


def test_kafka_gone_for_the_stall_time_fails_consumer_lag(broker, topic, tmp_path, instance):
    from types import SimpleNamespace

    gone = SimpleNamespace(bootstrap_servers=f"127.0.0.1:{free_port()}")
    defs = build_definitions(make_resources(gone, topic, tmp_path))
    cursor = json.dumps({"progress": {}, "unreachable_since": time.time() - 650})
    with build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs, cursor=cursor
    ) as ctx:
        result = defs.resolve_sensor_def("kafka_lag_sensor")(ctx)
    lag = next(e for e in result.asset_events if getattr(e, "check_name", "") == "consumer_lag")
    assert not lag.passed and "Kafka unreachable for 11 min" in lag.metadata["stopped"].value


def test_a_sensor_failing_tick_after_tick_is_one_alert_per_streak(tmp_path):
    """The streak logic on the daemon's own tick records (no platform sensor fails on an
    external fault any more: each skips and says why, so a failing one is a bug)."""
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import InstigatorTick, TickData, TickStatus
    from dagster_shared.error import SerializableErrorInfo

    from nids_assets.pipeline_health import failure_streak

    def ticks(*statuses):  # oldest first, as they happened
        out = []
        for i, status in enumerate(statuses):
            error = SerializableErrorInfo(f"ValueError: boom {i}", [], "ValueError")
            data = TickData(
                "origin",
                "kafka_ingest_sensor",
                InstigatorType.SENSOR,
                status,
                1000.0 + i,
                error=error if status is TickStatus.FAILURE else None,
            )
            out.append(InstigatorTick(i + 1, data))
        return out[::-1]  # newest first, as the instance returns them

    fail, ok = TickStatus.FAILURE, TickStatus.SKIPPED
    assert failure_streak("s", ticks(ok, fail, fail), 3) is None
    streak = failure_streak("s", ticks(ok, fail, fail, fail), 3)
    assert (streak.streak_start_tick, streak.failed_ticks) == (2, 3)
    assert streak.error == "ValueError: boom 3"
    longer = failure_streak("s", ticks(ok, fail, fail, fail, fail), 3)
    assert longer.streak_start_tick == 2  # the same streak: the same alert id
    assert failure_streak("s", ticks(fail, fail, fail, ok), 3) is None  # recovered


def test_scoring_that_stops_while_batches_land_fails_scoring_keeps_up():
    from dagster import AssetMaterialization, AssetObservation, DagsterInstance

    from nids_assets.pipeline_health import scoring_progress

    with DagsterInstance.ephemeral() as instance:
        assert scoring_progress(instance, time.time(), 600).passed  # no scoring pass yet
        instance.report_runless_asset_event(AssetMaterialization("flow_predictions"))
        instance.report_runless_asset_event(AssetMaterialization("hot_flows"))
        assert scoring_progress(instance, time.time(), 600).passed  # just landed
        later = scoring_progress(instance, time.time() + 700, 600)
        assert not later.passed and "no scoring pass has run since" in later.metadata["reason"]
        # A following scoring run reports its pass as an observation: caught up.
        instance.report_runless_asset_event(AssetObservation("flow_predictions"))
        assert scoring_progress(instance, time.time() + 700, 600).passed


def test_a_check_that_keeps_failing_is_one_alert_until_it_passes_again(
    broker, topic, tmp_path, instance
):
    """consumer_lag is evaluated every minute: a stop that lasts an hour is one alert, not
    sixty; once the check passed, the next failure is a new alert."""
    produce(broker, topic, [b"{}"] * 5)
    defs = build_definitions(make_resources(broker, topic, tmp_path))
    stalled = json.dumps({"progress": {"0": [None, time.time() - 660]}})

    def evaluate_lag(cursor):  # as the daemon does: the sensor's check evaluation is stored
        with build_sensor_context(
            instance=instance, resources=defs.resources, definitions=defs, cursor=cursor
        ) as ctx:
            check = defs.resolve_sensor_def("kafka_lag_sensor")(ctx).asset_events[1]
        instance.report_runless_asset_event(check)
        return check.passed

    def alerts():
        with build_sensor_context(
            instance=instance, resources=defs.resources, definitions=defs
        ) as ctx:
            defs.resolve_sensor_def("check_failure_alert_sensor")(ctx)
        outbox = defs.resources["serving"].outbox()
        return [a.payload["check"] for a in outbox.pending()]

    assert [evaluate_lag(stalled) for _ in range(3)] == [False, False, False]
    assert alerts() == ["consumer_lag"]
    assert evaluate_lag(None)  # just seen: not stalled yet
    assert not evaluate_lag(stalled)
    assert alerts() == ["consumer_lag", "consumer_lag"]
