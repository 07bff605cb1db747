"""Evidence, alerts, delivery and triage: the detectors on real captures of the data
directory, the hot-store refresh with a real champion, delivery to a real Kafka broker
and to files, OCSF checked against py-ocsf-models, and the `nids alerts` / `nids allow`
commands."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner
from py_ocsf_models.events.findings.detection_finding import DetectionFinding

from nids_cli.main import main
from nids_core.detection.allow_list import AllowEntry, AllowListError, read_allow_file
from nids_core.detection.beacons import beacons
from nids_core.detection.delivery import FileSink, KafkaSink, queue_deliveries, read_alerts
from nids_core.detection.formats import to_ecs, to_ocsf
from nids_core.detection.long_connections import long_connections
from nids_core.detection.refresh import refresh_detections
from nids_core.detection.scans import horizontal_scans, vertical_scans
from nids_core.detection.sensitivity import Thresholds
from nids_core.detection.triage import FINDING_KIND, TriageStore
from nids_core.kafka.log import KafkaSettings, open_client, open_producer
from nids_core.model.training import TrainConfig
from nids_core.registry.versions import ModelRegistry
from nids_core.schema import FLOW_COLUMNS
from nids_core.serving.model_cache import load_served
from nids_core.serving.outbox import AlertOutbox
from nids_core.serving.scoring import score_unscored
from nids_core.stores.cold import ColdStore
from nids_core.stores.hot import upsert_flows
from nids_core.stores.hot_schema import ensure_schema
from nids_core.training_data.analyst_labels import read_labels, resolve_labels
from nids_core.training_data.training_set import combine_sources
from nids_core.zeek.files import read_zeek_file
from nids_resources.serving import ServingSettingsResource
from tests.support.deployment import data_file, iot23
from tests.support.model import capture_flows, register_trained

MEDIUM = Thresholds.for_sensitivity("medium")
UWF_DISCOVERY = "uwf-zeekdata22/uwf-zeekdata22-discovery.csv.gz"
TORII = "CTU-Malware-Capture-20-1-labeled.csv.gz"
HAKAI = "CTU-Malware-Capture-8-1-labeled.csv.gz"


def _flows(path) -> pl.DataFrame:
    return read_zeek_file(path).flows


def _malicious_share(evidence_row: dict, flows: pl.DataFrame) -> float:
    labels = flows.filter(pl.col("uid").is_in(evidence_row["uids"]))["label"]
    return float((labels == "malicious").mean())


# ----------------------------------------------------------------- detectors, real flows


def test_the_red_teams_port_scan_of_the_cyber_range_is_vertical_scan_evidence():
    flows = _flows(data_file(UWF_DISCOVERY))
    found = vertical_scans(flows, MEDIUM).sort("flows", descending=True)
    assert found.height >= 1
    top = found.row(0, named=True)
    why = json.loads(top["why"])
    assert why["distinct"] >= MEDIUM.vertical_scan_ports and len(top["ports"]) == 20
    assert top["uids"] and _malicious_share(top, flows) > 0.9
    assert top["window_end"] - top["window_start"] == timedelta(minutes=5)
    # Failed attempts only: the benign IoT homes scan nothing.
    for name in ("CTU-Honeypot-Capture-4-1-labeled.csv.gz", TORII):
        benign = _flows(iot23(name))
        assert horizontal_scans(benign, MEDIUM).is_empty()
        assert vertical_scans(benign, MEDIUM).is_empty()


def test_hakais_cnc_calls_are_a_beacon_and_ntp_is_not():
    flows = _flows(iot23(HAKAI))
    found = beacons(flows, MEDIUM)
    peers = {(r["peers"][0], r["ports"][0]) for r in found.iter_rows(named=True)}
    assert ("128.185.250.50", 50) in peers
    assert all(port != 123 for _, port in peers)  # NTP every 65 s: infrastructure
    for row in found.iter_rows(named=True):
        assert _malicious_share(row, flows) == 1.0
        assert json.loads(row["why"])["score"] >= MEDIUM.beacon_min_score


def test_torii_holding_its_cnc_open_for_hours_is_a_long_connection():
    flows = _flows(iot23(TORII))
    found = long_connections(flows, MEDIUM)
    assert found["peers"].to_list() == [["66.85.157.90"]]
    assert _malicious_share(found.row(0, named=True), flows) == 1.0


def test_sensitivity_moves_every_threshold_together_and_a_bad_one_fails_at_start(tmp_path):
    low, high = Thresholds.for_sensitivity("low"), Thresholds.for_sensitivity("high")
    for name in ("horizontal_scan_hosts", "vertical_scan_ports", "long_connection_seconds"):
        assert getattr(low, name) > getattr(MEDIUM, name) > getattr(high, name)
    assert low.beacon_min_score > MEDIUM.beacon_min_score > high.beacon_min_score
    assert low.alert_min_score > MEDIUM.alert_min_score > high.alert_min_score
    flows = _flows(data_file(UWF_DISCOVERY))
    counts = [vertical_scans(flows, t).height for t in (low, MEDIUM, high)]
    assert counts[0] <= counts[1] < counts[2]
    with pytest.raises(ValueError, match="NIDS_ALERT_SENSITIVITY='extreme'"):
        ServingSettingsResource(alert_sensitivity="extreme")
    bad = tmp_path / "allow.toml"
    bad.write_text('[[allow]]\nhost = "10.0.0.300"\nby = "ana"\nwhy = "printer"\n')
    with pytest.raises(ValueError, match=r"allow.toml entry 1: host .10\.0\.0\.300."):
        ServingSettingsResource(allow_list_file=str(bad))


def test_allow_list_entries_are_checked_and_match_every_field_they_name(tmp_path):
    with pytest.raises(AllowListError, match="at least one of"):
        AllowEntry(by="ana", why="x")
    with pytest.raises(AllowListError, match="not an IP address or CIDR"):
        AllowEntry(by="ana", why="x", peer="10.0.0.0/33")
    with pytest.raises(AllowListError, match="detector 'dns'"):
        AllowEntry(by="ana", why="x", detector="dns")
    entry = AllowEntry(by="ana", why="backup", host="10.0.0.0/8", port=443)
    assert entry.matches("beacon", "10.1.2.3", ["8.8.8.8"], [443])
    assert not entry.matches("beacon", "10.1.2.3", ["8.8.8.8"], [80])
    assert not entry.matches("beacon", "192.168.1.1", ["8.8.8.8"], [443])
    past = AllowEntry(by="ana", why="x", host="10.0.0.1", expires=datetime(2020, 1, 1))
    assert not past.active(datetime.now(UTC))
    good = tmp_path / "allow.toml"
    good.write_text('[[allow]]\npeer = "66.85.157.90"\ndetector = "long_connection"\nwhy = "lab"\n')
    (entry_from_file,) = read_allow_file(good)
    assert entry_from_file.peer == "66.85.157.90" and entry_from_file.by == "file allow.toml"


# ------------------------------------------------------------- the hot store, a champion


@pytest.fixture(scope="module")
def scorer(mlflow_server):
    name = f"detection-{uuid.uuid4().hex[:6]}"
    config = TrainConfig(max_epochs=40, patience=8, hidden=32)
    version = register_trained(
        mlflow_server.url,
        name,
        capture_flows(HAKAI, "CTU-Honeypot-Capture-7-1-labeled.csv.gz"),
        config,
    )
    return ModelRegistry(mlflow_server.url, name), version


def _batch(flows: pl.DataFrame, first_offset: int) -> pl.DataFrame:
    return flows.with_columns(
        pl.lit("zeek.conn").alias("topic"),
        pl.lit(0, dtype=pl.Int32).alias("partition"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_offset).alias("offset"),
    )


def _scored_store(tmp_path, scorer, flows: pl.DataFrame):
    registry, version = scorer
    model = load_served(registry, version, tmp_path / "cache")
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    ensure_schema(con)
    upsert_flows(con, _batch(flows, 0))
    score_unscored(con, model)
    return con, model


def _tables(con) -> tuple[list, list]:
    evidence = con.execute(
        "SELECT * EXCLUDE (refreshed_at) FROM evidence ORDER BY evidence_id"
    ).fetchall()
    alerts = con.execute(
        "SELECT * EXCLUDE (refreshed_at) FROM analyst_alerts ORDER BY alert_id"
    ).fetchall()
    return evidence, alerts


def test_evidence_and_alerts_from_the_model_and_the_detectors_are_rebuilt_the_same(
    scorer, tmp_path, monkeypatch
):
    """Torii's home (a long connection, the model's flags) and the cyber range's scans in
    one hot store: every detector writes evidence, alerts sum it per host and window, and
    a second refresh, or one after a crash, leaves the same rows."""
    flows = pl.concat([_flows(iot23(TORII)), _flows(data_file(UWF_DISCOVERY))])
    con, *_ = _scored_store(tmp_path, scorer, flows)
    first = refresh_detections(con, None, 15, MEDIUM, [])
    assert first.evidence.get("vertical_scan", 0) >= 1
    assert first.evidence.get("long_connection", 0) == 1
    flagged_windows = con.execute(
        "SELECT count(DISTINCT (f.orig_h, time_bucket(INTERVAL 15 MINUTE, f.ts))) FROM flows f "
        "JOIN predictions p USING (uid) WHERE p.predicted_label = 'malicious'"
    ).fetchone()[0]
    assert first.evidence.get("model", 0) == flagged_windows
    rows = _tables(con)
    assert rows[1], "no alert"
    scan_alerts = con.execute(
        "SELECT count(*) FROM analyst_alerts WHERE list_contains(detectors, 'vertical_scan')"
    ).fetchone()[0]
    assert scan_alerts >= 1
    # Every alert's evidence scores what the alert says: noisy-or of threat x confidence.
    for a in read_alerts(con):
        p = 1.0
        for e in a["evidence"]:
            p *= 1 - e["threat_level"] * e["confidence"]
        assert a["severity"] == round(100 * (1 - p))
        assert sorted(a["detectors"]) == sorted({e["detector"] for e in a["evidence"]})
    again = refresh_detections(con, None, 15, MEDIUM, [])
    assert again.evidence == first.evidence and _tables(con) == rows
    # A refresh that fails half-way (after deleting and inserting evidence, while it
    # builds the alerts) leaves the tables as they were.
    from nids_core.detection import refresh

    def broken(*args, **kwargs):
        raise RuntimeError("killed while building alerts")

    monkeypatch.setattr(refresh, "alert_rows", broken)
    con.execute("DELETE FROM alerts_progress")  # unrelated table, so the store is in use
    with pytest.raises(RuntimeError, match="killed"):
        refresh_detections(con, None, 15, Thresholds.for_sensitivity("high"), [])
    assert _tables(con) == rows
    con.close()


def test_new_evidence_updates_an_alert_under_its_id_and_it_is_delivered_again(
    scorer, tmp_path, broker, topic
):
    """The cyber range's scanner: the first half of one window makes an alert, delivered
    to files and Kafka as OCSF `Create`; the rest of the window adds evidence, the alert
    keeps its id and is delivered again as `Update`. A file sink that is down loses
    nothing; once it is back it gets both, in order."""
    flows = _flows(data_file(UWF_DISCOVERY)).sort("ts")
    scanner = vertical_scans(flows, MEDIUM).sort("flows", descending=True).row(0, named=True)
    window = scanner["window_start"].replace(minute=scanner["window_start"].minute // 15 * 15)
    in_window = flows.filter(
        pl.col("ts").is_between(window, window + timedelta(minutes=15), closed="left")
        & (pl.col("orig_h") == scanner["host"])
    )
    half = in_window.height // 2
    con, model = _scored_store(tmp_path, scorer, in_window.head(half))
    refresh_detections(con, [window], 15, MEDIUM, [])
    (first,) = read_alerts(con, "a.host = $h", {"h": scanner["host"]})
    triage = TriageStore(tmp_path / "outbox.sqlite")
    assert queue_deliveries(con, triage, ["file", "kafka"]) >= 1
    assert queue_deliveries(con, triage, ["file", "kafka"]) == 0  # queued once

    upsert_flows(con, _batch(in_window.slice(half), half))
    score_unscored(con, model)
    refresh_detections(con, [window], 15, MEDIUM, [])
    (second,) = read_alerts(con, "a.host = $h", {"h": scanner["host"]})
    assert second["alert_id"] == first["alert_id"] and second["digest"] != first["digest"]
    assert second["flows"] > first["flows"]
    assert queue_deliveries(con, triage, ["file", "kafka"]) == 1

    outbox = AlertOutbox(tmp_path / "outbox.sqlite")
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the alert folder should be")
    down = outbox.deliver_due(FileSink(blocked).send, kinds=[FINDING_KIND + "file"])
    assert down.delivered == 0 and down.failed == 1 and down.pending >= 2
    later = datetime.now(UTC).timestamp() + 3600  # past the backoff
    sink_dir = tmp_path / "alerts"
    up = outbox.deliver_due(FileSink(sink_dir).send, now=later, kinds=[FINDING_KIND + "file"])
    assert up.failed == 0 and up.delivered >= 2
    (ocsf_file,) = sink_dir.glob("ocsf-*.ndjson")
    ours = [
        json.loads(line)
        for line in ocsf_file.read_text().splitlines()
        if json.loads(line)["finding_info"]["uid"] == first["alert_id"]
    ]
    assert [f["activity_id"] for f in ours] == [1, 2]
    assert [f["type_uid"] for f in ours] == [200401, 200402]
    for finding in ours:
        DetectionFinding.model_validate(finding)
    (ecs_file,) = sink_dir.glob("ecs-*.ndjson")
    ecs = [json.loads(line) for line in ecs_file.read_text().splitlines()]
    assert {d["event"]["action"] for d in ecs if d["event"]["id"] == first["alert_id"]} == {
        "created",
        "updated",
    }

    settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, group_id="alerts-test")
    producer = open_producer("kafka-python", settings)
    try:
        sent = outbox.deliver_due(
            KafkaSink(producer, topic).send, now=later, kinds=[FINDING_KIND + "kafka"]
        )
    finally:
        producer.close()
    assert sent.failed == 0 and sent.delivered == up.delivered
    with open_client("kafka-python", settings) as client:
        from nids_core.kafka.offsets import OffsetRange

        end = client.watermarks(topic, [0])[0].high
        values = client.read_range(OffsetRange(topic, 0, 0, end)).values
    findings = [json.loads(v) for v in values]
    assert [
        f["activity_id"] for f in findings if f["finding_info"]["uid"] == first["alert_id"]
    ] == [
        1,
        2,
    ]
    con.close()


def test_an_allow_listed_host_has_evidence_but_no_alert_and_no_delivery(scorer, tmp_path):
    flows = _flows(data_file(UWF_DISCOVERY))
    scanner = vertical_scans(flows, MEDIUM).sort("flows", descending=True)["host"][0]
    con, *_ = _scored_store(tmp_path, scorer, flows)
    allow = [AllowEntry(by="ana", why="the red team's own scanner", host=scanner)]
    refreshed = refresh_detections(con, None, 15, MEDIUM, allow)
    assert refreshed.suppressed >= 1
    kept = con.execute(
        "SELECT count(*) FROM evidence WHERE host = ? AND suppressed_by = ?",
        [scanner, allow[0].entry_id],
    ).fetchone()[0]
    assert kept == refreshed.suppressed
    assert con.execute(
        "SELECT count(*) FROM analyst_alerts WHERE host = ?", [scanner]
    ).fetchone() == (0,)
    triage = TriageStore(tmp_path / "outbox.sqlite")
    queue_deliveries(con, triage, ["file"])
    payloads = [p.payload for p in AlertOutbox(tmp_path / "outbox.sqlite").pending()]
    assert all(p["ecs"]["source"]["ip"] != scanner for p in payloads)
    con.close()


# ------------------------------------------------------------------- nids alerts / allow


def _cli(args, tmp_path):
    env = {
        "NIDS_COLD_URL": str(tmp_path / "cold"),
        "NIDS_DUCKDB_PATH": str(tmp_path / "hot.duckdb"),
        "NIDS_ALERT_OUTBOX_PATH": str(tmp_path / "outbox.sqlite"),
    }
    return CliRunner().invoke(main, args, env=env)


def test_analysts_list_show_export_ack_and_close_alerts_and_a_verdict_becomes_labels(
    scorer, tmp_path
):
    flows = _flows(data_file(UWF_DISCOVERY))
    con, *_ = _scored_store(tmp_path, scorer, flows)
    refresh_detections(con, None, 15, MEDIUM, [])
    top = read_alerts(con, "a.severity >= 40")[0]
    alerts_total = con.execute("SELECT count(*) FROM analyst_alerts").fetchone()[0]
    con.close()

    listed = _cli(["alerts", "list", "--min-severity", "0"], tmp_path)
    assert listed.exit_code == 0, listed.output
    assert f"{alerts_total} alert(s)" in listed.output and top["alert_id"] in listed.output
    only = _cli(["alerts", "list", "--host", top["host"]], tmp_path)
    assert all(top["host"] in line for line in only.stdout.splitlines())
    shown = _cli(["alerts", "show", top["alert_id"]], tmp_path)
    assert shown.exit_code == 0, shown.output
    assert "why:" in shown.output and top["evidence"][0]["description"] in shown.output
    assert "still hot" in shown.output

    for fmt in ("ocsf", "ecs"):
        out = _cli(["alerts", "export", "--format", fmt], tmp_path)
        assert out.exit_code == 0, out.output
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(lines) == alerts_total
        for doc in lines:
            if fmt == "ocsf":
                DetectionFinding.model_validate(doc)
                assert (doc["class_uid"], doc["category_uid"]) == (2004, 2)
                assert doc["type_uid"] == 200400 + doc["activity_id"]
                assert doc["metadata"]["product"]["name"] == "nids-platform"
                assert doc["metadata"]["version"] and doc["time"] > 0
                assert 1 <= doc["severity_id"] <= 5 and doc["finding_info"]["types"]
                related = doc["finding_info"]["related_events"]
                assert related and all(r["uid"] for r in related)
            else:
                assert doc["event"]["kind"] == "alert" and doc["ecs"]["version"]
                assert 0 <= doc["event"]["severity"] <= 100 and doc["@timestamp"]
                assert doc["source"]["ip"] and doc["rule"]["name"] and doc["nids"]["flow_uids"]

    # Bad input: a clear error, nothing written.
    triage = TriageStore(tmp_path / "outbox.sqlite")
    for args, message in [
        (["alerts", "show", "nope"], "no alert 'nope'"),
        (["alerts", "ack", "nope"], "no alert 'nope'"),
        (["alerts", "list", "--since", "2024-02-01", "--until", "2024-01-01"], "is after"),
        (["alerts", "list", "--since", "yesterday"], "is not a time"),
        (["allow", "add", "--host", "10.0.0.0/40", "--by", "a", "--why", "b"], "not an IP"),
        (["allow", "remove", "nope"], "no allow-list entry"),
        (
            ["alerts", "close", top["alert_id"], "--verdict", "maybe", "--by", "a", "--why", "b"],
            "Invalid value for '--verdict'",
        ),
    ]:
        out = _cli(args, tmp_path)
        assert out.exit_code != 0 and message in out.output, (args, out.output)
    assert triage.statuses() == {} and triage.allow_entries() == []
    store = ColdStore(str(tmp_path / "cold"))
    assert read_labels(store).height == 0

    assert _cli(["alerts", "ack", top["alert_id"], "--by", "ana"], tmp_path).exit_code == 0
    assert triage.statuses()[top["alert_id"]].status == "acknowledged"
    closed = _cli(
        [
            "alerts",
            "close",
            top["alert_id"],
            "--verdict",
            "false-positive",
            "--by",
            "ana",
            "--why",
            "the range's own vulnerability scanner",
        ],
        tmp_path,
    )
    assert closed.exit_code == 0, closed.output
    status = triage.statuses()[top["alert_id"]]
    assert (status.status, status.verdict, status.by) == ("closed", "false-positive", "ana")
    uids = sorted({u for e in top["evidence"] for u in e["uids"]})
    live = flows.select(FLOW_COLUMNS)
    labels = resolve_labels(read_labels(store), live)
    rows, _ = combine_sources(pl.DataFrame(), live, labels)
    analyst = rows.filter(pl.col("source") == "analyst")
    assert sorted(analyst["uid"]) == uids and set(analyst["label"]) == {"benign"}

    added = _cli(
        [
            "allow",
            "add",
            "--host",
            top["host"],
            "--detector",
            "vertical_scan",
            "--by",
            "ana",
            "--why",
            "scanner",
            "--expires",
            "2099-01-01",
        ],
        tmp_path,
    )
    assert added.exit_code == 0, added.output
    entry_id = added.output.split()[-1]
    assert entry_id in _cli(["allow", "list"], tmp_path).output
    assert _cli(["allow", "remove", entry_id], tmp_path).exit_code == 0
    assert triage.allow_entries() == []


def test_ocsf_and_ecs_say_what_an_alert_says():
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    evidence = {
        "evidence_id": "e1",
        "detector": "beacon",
        "description": "calls home",
        "threat_level": 0.5,
        "confidence": 0.8,
        "peers": ["1.2.3.4"],
        "ports": [443],
        "flows": 30,
        "uids": ["C1", "C2"],
        "why": json.dumps({"score": 0.9}),
    }
    alert = {
        "alert_id": "a1",
        "host": "10.0.0.5",
        "window_start": t,
        "window_end": t,
        "score": 0.4,
        "severity": 40,
        "detectors": ["beacon"],
        "evidence": [evidence],
        "suppressed_evidence": 0,
        "flows": 30,
        "first_seen": t,
        "last_seen": t,
        "title": "Medium: 10.0.0.5 (beacon): calls home",
        "revision": 3,
        "status": "new",
    }
    ocsf = DetectionFinding.model_validate(to_ocsf(alert))
    assert (
        ocsf.activity_id == 2 and ocsf.severity_id == 3 and ocsf.time == int(t.timestamp() * 1000)
    )
    assert [e.uid for e in ocsf.finding_info.related_events] == ["C1", "C2"]
    ecs = to_ecs(alert)
    assert ecs["destination"] == {"ip": "1.2.3.4"} and ecs["nids"]["flow_uids"] == ["C1", "C2"]
    assert ecs["event"]["action"] == "updated" and ecs["rule"]["name"] == "beacon"
    closed = to_ocsf({**alert, "status": "closed"})
    assert (closed["activity_id"], closed["status_id"]) == (3, 4)


def test_a_days_evidence_is_kept_in_the_cold_store_and_a_refreshed_row_replaces_its_copy(
    tmp_path,
):
    flows = _flows(data_file(UWF_DISCOVERY))
    found = vertical_scans(flows, MEDIUM).with_columns(
        suppressed_by=pl.lit(None, dtype=pl.String), refreshed_at=pl.lit(datetime.now(UTC))
    )
    day = found["window_start"][0].date().isoformat()
    store = ColdStore(str(tmp_path / "cold"))
    assert store.merge_evidence(day, found) == found.height
    assert store.merge_evidence(day, found) == found.height  # idempotent
    grown = found.head(1).with_columns(pl.col("flows") + 7)
    assert store.merge_evidence(day, grown) == found.height
    kept = pl.read_parquet(store.evidence_file(day))
    row = kept.filter(pl.col("evidence_id") == grown["evidence_id"][0])
    assert row["flows"].to_list() == grown["flows"].to_list()


def test_a_new_high_severity_alert_fails_the_alerts_check_until_an_analyst_acks_it(
    scorer, tmp_path, broker, topic
):
    from dagster import materialize

    from nids_assets.scoring import HIGH_SEVERITY_CHECK, alerts
    from tests.support.deployment import make_resources

    flows = _flows(data_file(UWF_DISCOVERY))
    con, *_ = _scored_store(tmp_path, scorer, flows)
    con.close()
    resources = make_resources(broker, topic, tmp_path, serving={"alerts_topic": "none"})
    wanted = {k: resources[k] for k in ("hot_store", "serving", "plausible_time", "kafka")}

    def check():
        result = materialize([alerts], resources=wanted)
        (evaluation,) = [
            e for e in result.get_asset_check_evaluations() if e.check_name == HIGH_SEVERITY_CHECK
        ]
        md = result.asset_materializations_for_node("alerts")[0].metadata
        return evaluation, md

    failing, md = check()
    assert not failing.passed
    assert "| severity | host | detectors | status | why | id |" in md["newest_alerts"].value
    high = failing.metadata["alert_ids"].value.split(", ")
    assert high and high[0] in md["newest_alerts"].value
    triage = resources["serving"].triage()
    for alert_id in high:
        triage.set_status(alert_id, "acknowledged", by="ana")
    passing, _ = check()
    assert passing.passed
    assert list((tmp_path / "alerts").glob("ocsf-*.ndjson"))  # delivered by the step
