"""The demo: real IoT-23 and Zeek sample flows, through Kafka, into the hot and cold stores."""

import os
import time
from pathlib import Path

import click

from nids_core.model.progress import TRAINING_PROGRESS_LOGGER


def _data_files() -> tuple[Path, list[Path]]:
    """The data directory's captures; downloaded into ./data when there are none."""
    from nids_core.training_data.data_dir import (
        IOT23_FILES,
        SAMPLES_SUBDIR,
        ChecksumMismatch,
        DataDirNotFound,
        download,
        find_data_dir,
        iot23_files,
    )

    try:
        data = find_data_dir()
    except DataDirNotFound:
        data = None
    if data is None or not iot23_files(data):
        target = Path(os.environ.get("NIDS_DATA_DIR") or "data")
        click.echo(f"no IoT-23 captures found; downloading them into {target} (checksummed)")
        try:
            download(IOT23_FILES, target)
        except (OSError, ChecksumMismatch) as exc:
            raise click.ClickException(
                f"could not download the IoT-23 captures ({exc}); put them in "
                "$NIDS_DATA_DIR/iot23 (see README.md: Data and attribution)"
            ) from exc
        data = target
    return data, iot23_files(data) + sorted((data / SAMPLES_SUBDIR).glob("conn*.log"))


def _quiet_libraries() -> None:
    """The report shows the demo's own lines and training progress: MLflow's INFO lines
    stay out of it (its download bars are off for every `nids` command)."""
    import logging

    # MLflow sets its loggers' level from this when it is imported, after this point.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Its notice that pickled models must be trusted: served models are checked against
    # their recorded SHA-256 before they are unpickled (nids.artifact_sha256).
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    progress = logging.getLogger(TRAINING_PROGRESS_LOGGER)
    if not progress.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("  %(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False


# The demo's training is the real gate on a smaller budget, so it ends in minutes on a
# laptop: leave one network out with one seed (a deployment's default is three) and at most
# DEMO_MAX_EPOCHS epochs (default 300). Each is only a default: the environment overrides.
DEMO_TRAINING = {
    "NIDS_TRAIN_LONO_SEEDS": "1",
    "NIDS_TRAIN_MAX_EPOCHS": "30",
    "NIDS_TRAIN_PATIENCE": "8",
}


def _demo_training_defaults() -> str:
    """Set the demo's training budget where the environment does not, and say it."""
    for name, value in DEMO_TRAINING.items():
        os.environ.setdefault(name, value)
    return (
        f"the demo's gate: leave one network out with {os.environ['NIDS_TRAIN_LONO_SEEDS']} "
        f"seed(s), at most {os.environ['NIDS_TRAIN_MAX_EPOCHS']} epochs (patience "
        f"{os.environ['NIDS_TRAIN_PATIENCE']}); a deployment's default is 3 seeds, 300 epochs "
        "(NIDS_TRAIN_LONO_SEEDS, NIDS_TRAIN_MAX_EPOCHS, NIDS_TRAIN_PATIENCE)"
    )


def run_demo(home: Path, partitions: int, ui: bool = False) -> None:
    """Replay the data directory's captures into a local broker as a live sensor would, ingest
    them, train the champion on the reference corpus through the real gate, score the live
    flows and report what an analyst would see."""
    from dagster import DagsterInstance

    from nids_devkit.broker import start_broker

    _prepare_home(home)
    data, files = _data_files()
    click.echo(f"data directory: {data} ({len(files)} files)")
    _quiet_libraries()
    budget = _demo_training_defaults()
    t0 = time.monotonic()
    with start_broker(log_path=home / "broker.log") as broker:
        _demo_environment(home, broker.bootstrap_servers)
        from nids_jobs.definitions import build_definitions

        _replay(broker.bootstrap_servers, files, partitions)
        defs, instance, cursors = build_definitions(), DagsterInstance.get(), {}
        _ingest(defs, instance, cursors, t0)
    click.echo(
        "no flow is labelled, so the champion comes from the reference corpus: "
        "reading its captures, then training (training_set -> gnn_model -> gate -> champion) ..."
    )
    click.echo(f"  {budget}")
    _train(defs, instance, cursors)
    _score(defs, instance, cursors)
    click.echo(f"demo finished in {time.monotonic() - t0:.0f} s")
    if ui:
        _serve_ui(home)


def _prepare_home(home: Path) -> None:
    """The demo's folder, with a Dagster home configured as the embedded default."""
    from nids_cli.instance import EMBEDDED_DAGSTER_YAML

    home.mkdir(parents=True, exist_ok=True)
    dagster_home = home / "dagster"
    dagster_home.mkdir(exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(EMBEDDED_DAGSTER_YAML)


def _demo_environment(home: Path, bootstrap: str) -> None:
    """Every store of the embedded default under `home`, where the environment does not
    name another, and the broker just started."""
    from nids_cli.instance import embedded_signing_key

    os.environ.update(
        NIDS_KAFKA_BOOTSTRAP=bootstrap,
        NIDS_DUCKDB_PATH=os.environ.get("NIDS_DUCKDB_PATH", str(home / "nids.duckdb")),
        NIDS_COLD_URL=os.environ.get("NIDS_COLD_URL", str(home / "cold")),
        NIDS_ALERT_OUTBOX_PATH=os.environ.get(
            "NIDS_ALERT_OUTBOX_PATH", str(home / "alert-outbox.sqlite")
        ),
        NIDS_ALERTS_DIR=os.environ.get("NIDS_ALERTS_DIR", str(home / "alerts")),
        # The demo's broker stops once the stream is ingested, before scoring: its
        # alerts go to the NDJSON files (set NIDS_ALERTS_TOPIC to a live Kafka's topic).
        NIDS_ALERTS_TOPIC=os.environ.get("NIDS_ALERTS_TOPIC", "none"),
        NIDS_MODEL_SIGNING_KEY=embedded_signing_key(home),
        DAGSTER_HOME=str(home / "dagster"),
        MLFLOW_TRACKING_URI=os.environ.get(
            "MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
        ),
        NIDS_MLFLOW_ARTIFACTS=os.environ.get(
            "NIDS_MLFLOW_ARTIFACTS", str(home / "mlflow" / "artifacts")
        ),
    )


def _replay(bootstrap: str, files: list[Path], partitions: int) -> None:
    """The captures into the topic, labels removed, times shifted to now."""
    from tqdm import tqdm

    from nids_core.kafka.log import KafkaSettings, open_producer
    from nids_devkit.broker import create_topic
    from nids_devkit.replay import replay_files
    from nids_resources.from_env import kafka_from_env

    topic = kafka_from_env().topic
    create_topic(bootstrap, topic, partitions)
    click.echo(f"broker on {bootstrap}; replaying into {topic} ({partitions} partitions)")
    with (
        open_producer("confluent", KafkaSettings(bootstrap, "nids-demo")) as p,
        tqdm(unit=" flows", desc="replay") as bar,
    ):
        stats = replay_files(
            files, p, topic, shift_to_now=True, on_progress=bar.update, strip_labels=True
        )
    click.echo(
        f"replayed {stats.sent} flows with their labels removed, as a live sensor sends "
        f"them ({stats.rejected} unreadable rows skipped)"
    )


def _progress(req, ok) -> None:
    click.echo(f"  {req.job_name or 'ingest_job'} run {req.run_key}: {'ok' if ok else 'FAILED'}")


def _ingest(defs, instance, cursors: dict, t0: float) -> None:
    """Every sensor tick's runs until the topic is drained, as the daemon would."""
    from nids_cli.driver import drain

    result = drain(defs, instance, cursors, on_run=_progress, log_level="WARNING")
    if result.failed_runs:
        raise click.ClickException(
            f"{result.failed_runs} runs failed; see `dagster dev` for their logs"
        )
    _report(defs, result, time.monotonic() - t0)


def _train(defs, instance, cursors: dict) -> None:
    from nids_cli.driver import drive_reference

    _, failed, skip = drive_reference(
        defs, instance, cursors, log_level="WARNING", on_run=_progress
    )
    _model_report(instance, defs, failed == 0, skip)


def _score(defs, instance, cursors: dict) -> None:
    from nids_cli.driver import run_scoring

    click.echo("scoring the live flows with the champion and refreshing alerts ...")
    runs, failed = run_scoring(defs, instance, cursors, log_level="WARNING")
    _serving_report(defs, runs, failed)
    _withheld_report(defs)


def _serve_ui(home: Path) -> None:
    """Keep `dagster dev` (workspace.yaml) and the MLflow UI running until Ctrl-C."""
    import signal
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    dagster_port, mlflow_port = 3000, 5000
    env = {**os.environ, "NIDS_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}"}
    procs = [
        subprocess.Popen(
            [
                str(bin_dir / "mlflow"),
                "ui",
                "--backend-store-uri",
                os.environ["MLFLOW_TRACKING_URI"],
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                str(bin_dir / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(dagster_port),
            ],
            env=env,
            start_new_session=True,
        ),
    ]
    click.echo(
        f"Dagster UI: http://127.0.0.1:{dagster_port}   MLflow UI: http://127.0.0.1:{mlflow_port}"
        "   (Ctrl-C stops both; Kafka is not running, so the ingest sensor skips)"
    )
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(30)


DEMO_ALERTS_SHOWN = 5


def _serving_report(defs, runs: int, failed: int) -> None:
    import duckdb

    from nids_core.detection.delivery import read_alerts
    from nids_core.serving.alerts import top_alert_hosts

    con = duckdb.connect(defs.resources["hot_store"].database, read_only=True)
    try:
        scored, attacks, versions = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE predicted_label = 'malicious'), "
            "string_agg(DISTINCT model_version, ',') FROM predictions"
        ).fetchone()
        top = top_alert_hosts(con)
        per_detector = con.execute(
            "SELECT detector, count(*) FILTER (WHERE suppressed_by IS NULL), "
            "count(*) FILTER (WHERE suppressed_by IS NOT NULL) FROM evidence GROUP BY 1 ORDER BY 1"
        ).fetchall()
        by_detector = con.execute(
            "SELECT d, count(*) FROM (SELECT unnest(detectors) AS d FROM analyst_alerts) "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
        newest = read_alerts(con, "a.severity >= 40", limit=DEMO_ALERTS_SHOWN)
        total = con.execute("SELECT count(*) FROM analyst_alerts").fetchone()[0]
    finally:
        con.close()
    click.echo(
        f"scoring runs: {runs} ({failed} failed); predictions: {scored:,} "
        f"({attacks:,} attacks) by model version {versions or '-'}"
    )
    click.echo("top hosts by flows the model flagged (attack flows, windows, max score):")
    for host, n, windows, score in top:
        click.echo(f"  {host:>16s}  {n:6,}  {windows:4}  {score:.3f}")
    click.echo(
        "evidence per detector (kept, suppressed): "
        + (", ".join(f"{d} {n} ({s})" for d, n, s in per_detector) or "none")
    )
    click.echo(
        f"alerts: {total} ("
        + (", ".join(f"{d} in {n}" for d, n in by_detector) or "none")
        + f"); the {len(newest)} newest of severity 40 or more, with their evidence:"
    )
    for a in newest:
        click.echo(f"  {a['alert_id']}  severity {a['severity']:>3}  {a['title'][:110]}")
        for e in a["evidence"]:
            click.echo(f"      [{e['detector']}] {e['description'][:120]}")
    click.echo(
        f"  delivered as OCSF and ECS lines to {os.environ.get('NIDS_ALERTS_DIR', 'var/alerts')}/; "
        "nids alerts show ID: flows and why; nids alerts export --format ocsf|ecs"
    )


def _model_report(instance, defs, success: bool, skip: str | None) -> None:
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey("gnn_model"))
    if event is None:
        raise click.ClickException(
            f"no model was trained ({skip or 'a run failed'}); see the runs in the Dagster UI"
        )
    ts = instance.get_latest_materialization_event(AssetKey("training_set"))
    ts_md = {k: v.value for k, v in ts.asset_materialization.metadata.items()}
    click.echo(
        f"training set: {ts_md['reference_rows']:,} reference rows from {ts_md['networks']} "
        f"networks ({ts_md['kinds_of_network']}), {ts_md['analyst_labelled_rows']:,} "
        "analyst-labelled live rows"
    )
    md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    keys = ("macro_f1", "attack_recall", "benign_fpr", "pr_auc", "accuracy")
    click.echo(f"model {md['model_uri']} (MLflow run {md['mlflow_run_id']}); gate: {md['gate']}")
    click.echo(
        f"  serves {md['served_candidate']} at cut {md['served_threshold']:.2f}, chosen "
        f"{md['served_chosen']}"
    )
    click.echo("  time split (later 30% of each capture):")
    for label, prefix in (
        ("served", "test_"),
        ("graph model alone", "gnn_test_"),
        ("flow-only baseline", "baseline_test_"),
    ):
        cells = ", ".join(f"{k} {md[prefix + k]:.4f}" for k in keys if prefix + k in md)
        click.echo(f"    {label}: {cells}")
    if "lono_served_mean" in md:
        click.echo("  leave one network out (mean over networks and seeds / worst network):")
        for label, c in (
            ("served", "served"),
            ("flow trees", "flow_trees"),
            ("context trees", "context_trees"),
            ("graph model alone", "gnn"),
            ("baseline (flow trees at 0.5)", "baseline"),
        ):
            click.echo(
                f"    {label}: {md[f'lono_{c}_mean']:.4f} / {md[f'lono_{c}_worst']:.4f} "
                f"(seed sd {md[f'lono_{c}_seed_sd']:.4f}, highest benign FPR "
                f"{md[f'lono_{c}_max_benign_fpr']:.4f})"
            )
    champion = defs.resources["model_registry"].registry().version_by_alias("champion")
    click.echo(f"champion: version {champion.version if champion else 'none'}")
    if not success:
        click.echo("the training run did not promote (a gate check failed or a step failed)")


def _withheld_report(defs) -> None:
    """The live flows' predictions against the labels the replay withheld from them."""
    import duckdb
    import numpy as np
    import polars as pl

    from nids_core.model.metrics import evaluate
    from nids_core.training_data.reference_corpus import load_reference_corpus
    from nids_core.training_data.training_set import TRAINING_SET_PATH

    store = defs.resources["cold_store"].store()
    withheld = (
        load_reference_corpus(
            store,
            defs.resources["reference_corpus"].versions(),
            defs.resources["reference_corpus"].networks(),
        )
        .filter(pl.col("label").is_not_null())
        .select("uid", "capture", pl.col("label").alias("withheld"))
    )
    split = store.read_frame(TRAINING_SET_PATH).select("uid", "split")
    con = duckdb.connect(defs.resources["hot_store"].database, read_only=True)
    try:
        live = con.execute(
            "SELECT f.uid, p.predicted_label FROM flows f LEFT JOIN predictions p USING (uid)"
        ).pl()
    finally:
        con.close()
    joined = live.join(withheld, on="uid", how="inner").join(split, on="uid", how="left")
    scored = live["predicted_label"].is_not_null().sum()
    click.echo(
        f"live flows scored: {scored:,} of {live.height:,}; {joined.height:,} have a withheld label"
    )

    def row(name: str, frame: pl.DataFrame) -> str:
        y = (frame["withheld"] == "malicious").cast(pl.Int64).to_numpy()
        pred = (frame["predicted_label"] == "malicious").cast(pl.Float64).to_numpy()
        m = evaluate(y, pred, 0.5)
        cells = "  ".join(
            "      -" if np.isnan(m[k]) else f"{m[k]:7.4f}"
            for k in ("accuracy", "macro_f1", "attack_recall", "benign_fpr")
        )
        return f"  {name:34s} {frame.height:7,} {m['attacks']:7,}  {cells}"

    click.echo("agreement with the withheld labels (predicted_label vs label):")
    click.echo(
        f"  {'flows':34s} {'count':>7s} {'attacks':>7s}  {'agree':>7s}  {'macro F1':>7s}  "
        f"{'recall':>7s}  {'ben. FPR':>7s}"
    )
    joined = joined.filter(pl.col("predicted_label").is_not_null())
    click.echo(row("all", joined))
    click.echo(row("not trained on (test split)", joined.filter(pl.col("split") == "test")))
    for capture in sorted(joined["capture"].unique().to_list()):
        click.echo(row(capture, joined.filter(pl.col("capture") == capture)))


def _report(defs, result, seconds: float) -> None:
    import duckdb

    hot = defs.resources["hot_store"]
    con = duckdb.connect(hot.database, read_only=True)
    try:
        flows, hosts = con.execute("SELECT count(*), count(DISTINCT orig_h) FROM flows").fetchone()
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        labels = con.execute(
            "SELECT coalesce(label, 'unlabelled'), count(*) FROM flows GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    store = defs.resources["cold_store"].store()
    days = [d for d in store.landing_days() if store.cold_day_exists(d)]
    click.echo("")
    click.echo(f"ingest runs: {result.ingest_runs}; cold partition runs: {result.cold_runs}")
    click.echo(
        f"flows in hot table: {flows:,} from {hosts} source hosts; quarantined: {quarantined}"
    )
    click.echo("labels: " + ", ".join(f"{k} {v:,}" for k, v in labels))
    click.echo(f"cold partitions: {', '.join(days)}")
    click.echo(
        f"done in {seconds:.1f} s; open the UI with: DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev -w workspace.yaml"
    )
