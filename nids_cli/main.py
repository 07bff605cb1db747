"""The `nids` command: replay Zeek logs into Kafka, run the bundled broker, fetch data, demo."""

import contextlib
import os
import sys
from pathlib import Path

import click

from nids_core.kafka import DEFAULT_TOPIC


@click.group()
def main() -> None:
    """GNN network intrusion detection on Dagster."""
    import warnings

    # dagster-mlflow is marked beta; its warning says nothing a user of `nids` can act on.
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    # Model files are a few MB: MLflow's per-file download progress bars are only noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--bootstrap", envvar="NIDS_KAFKA_BOOTSTRAP", default="127.0.0.1:9092", show_default=True
)
@click.option("--topic", envvar="NIDS_KAFKA_TOPIC", default=DEFAULT_TOPIC, show_default=True)
@click.option(
    "--client",
    envvar="NIDS_KAFKA_CLIENT",
    default="kafka-python",
    show_default=True,
    type=click.Choice(["kafka-python", "confluent"]),
)
@click.option(
    "--rate", type=float, default=None, help="Flows per second (default: as fast as possible)."
)
@click.option("--shift-to-now/--no-shift", default=False, help="Shift each capture so it ends now.")
@click.option(
    "--repeat",
    type=int,
    default=1,
    show_default=True,
    help="Send the files N times, uids made unique.",
)
@click.option("--limit", type=int, default=None, help="Stop after this many flows.")
@click.option(
    "--delivery-timeout",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="Seconds the broker may take to acknowledge a flow before the replay fails.",
)
@click.option(
    "--strip-labels",
    is_flag=True,
    help="Send flows as a live sensor would: without label, detailed-label or capture.",
)
def replay(
    paths,
    bootstrap,
    topic,
    client,
    rate,
    shift_to_now,
    repeat,
    limit,
    delivery_timeout,
    strip_labels,
) -> None:
    """Produce the flows of Zeek conn logs (TSV, JSON or CSV; plain or gzip) to Kafka as Zeek
    JSON. Without PATHS, replays the IoT-23 captures of the data directory."""
    from tqdm import tqdm

    from nids_core.kafka.log import KafkaSettings, KafkaUnavailable, open_producer
    from nids_core.training_data.data_dir import find_data_dir, iot23_files
    from nids_devkit.replay import replay_files

    files = list(paths) or iot23_files(find_data_dir())
    if not files:
        raise click.ClickException("no files given and no IoT-23 captures in the data directory")
    settings = KafkaSettings(bootstrap, "nids-replay", delivery_timeout_s=delivery_timeout)
    producer = open_producer(client, settings)
    sent = 0

    def progress(n: int) -> None:
        nonlocal sent
        sent += n
        bar.update(n)

    try:
        with tqdm(
            unit=" flows",
            desc="replay",
            disable=not sys.stderr.isatty() and not os.environ.get("NIDS_PROGRESS"),
        ) as bar:
            stats = replay_files(
                files,
                producer,
                topic,
                rate=rate,
                shift_to_now=shift_to_now,
                repeat=repeat,
                limit=limit,
                on_progress=progress,
                strip_labels=strip_labels,
            )
    except KafkaUnavailable as exc:
        # The broker went away: say how many flows it acknowledged (those are in the
        # topic), so a rerun with --limit or a fresh topic can take it from there.
        with contextlib.suppress(KafkaUnavailable):
            producer.close()
        raise click.ClickException(
            f"replay to {topic} at {bootstrap} failed: {producer.acknowledged} of {sent} "
            f"flows sent were acknowledged by the broker ({str(exc)[:300]})"
        ) from None
    producer.close()
    click.echo(
        f"replayed {stats.sent} flows from {stats.files} files to {topic} in {stats.seconds:.1f} s "
        f"({stats.rate:,.0f}/s); {stats.rejected} unreadable rows skipped"
    )
    for reason, n in sorted(stats.reject_reasons.items(), key=lambda kv: -kv[1])[:5]:
        click.echo(f"  {n} x {reason}")


@main.command()
@click.option(
    "--until-idle",
    is_flag=True,
    help="Keep going (retrying failed batches after their backoff) until the consumer group "
    "has caught up on every partition; exit 0 then, 1 on --timeout.",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="With --until-idle: give up after this many seconds (default: no limit).",
)
@click.option("--cold/--no-cold", default=True, show_default=True, help="Rebuild cold days.")
@click.option("--score/--no-score", default=False, show_default=True, help="Also score.")
def ingest(until_idle, timeout, cold, score) -> None:
    """Drain the Kafka topic through the same sensor and ingest job the daemon runs, in this
    process, against $DAGSTER_HOME (default: var/dagster, created with the embedded
    default's instance settings). Without --until-idle, one pass; exits non-zero if a
    batch failed."""
    from nids_cli.until_idle import ingest_until_idle

    outcome = ingest_until_idle(
        until_idle=until_idle, timeout_s=timeout, cold=cold, score=score, echo=click.echo
    )
    click.echo(outcome.summary)
    if not outcome.ok:
        raise SystemExit(1)


@main.command()
@click.argument("verdict", required=False)
@click.option("--uid", "uids", multiple=True, help="A flow's Zeek uid (repeatable).")
@click.option("--host", default=None, help="An IP address: its flows, at either end ...")
@click.option("--from", "start", default=None, help="... from this time (ISO 8601 or epoch) ...")
@click.option("--to", "end", default=None, help="... to this time (inclusive).")
@click.option("--by", default=None, help="Who labels (required).")
@click.option("--why", default=None, help="Why: the evidence (required).")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Labels from a CSV file instead: columns verdict, uid, host, from, to, and "
    "optionally by and why (else --by/--why).",
)
def label(verdict, uids, host, start, end, by, why, csv_file) -> None:
    """Label live flows malicious or benign for training: by uid (`--uid U ...`) or by host
    and time range (`--host IP --from T --to T`), or many at once from --csv. Every label
    must name a stored flow; labels are kept with their history (a later label wins) and
    change only the next training set."""
    from nids_cli.labelling import record_labels
    from nids_core.training_data.analyst_labels import (
        LabelEntry,
        LabelError,
        entries_from_csv,
        parse_time,
    )
    from nids_resources.from_env import cold_store_from_env, hot_store_from_env

    try:
        if csv_file is not None:
            if verdict or uids or host or start or end:
                raise click.UsageError("--csv takes the verdicts and flows from the file")
            entries = entries_from_csv(csv_file, by, why)
        else:
            if verdict is None:
                raise click.UsageError("give a VERDICT (malicious or benign) or --csv FILE")
            common = {"verdict": verdict.lower(), "by": by or "", "why": why or ""}
            if uids and (host or start or end):
                raise click.UsageError("name flows by --uid or by --host/--from/--to, not both")
            if uids:
                entries = [LabelEntry(uid=u, **common) for u in uids]
            else:
                entries = [
                    LabelEntry(
                        host=host,
                        start=parse_time(start) if start else None,
                        end=parse_time(end) if end else None,
                        **common,
                    )
                ]
        path, named = record_labels(
            entries, cold_store_from_env().store(), hot_store_from_env().backend()
        )
    except LabelError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"recorded {len(entries)} label(s) naming {named} flow(s) in {path}")
    click.echo("they enter the next training run (training_job); flow_labels shows the counts")


@main.command()
@click.option("--port", type=int, default=9092, show_default=True)
@click.option("--topic", default=DEFAULT_TOPIC, show_default=True)
@click.option("--partitions", type=int, default=1, show_default=True)
def broker(port, topic, partitions) -> None:
    """Run the bundled Kafka-protocol broker (in memory) until interrupted (Ctrl-C or
    SIGTERM); either way the broker process stops with it."""
    import signal

    from nids_devkit.broker import create_topic, start_broker

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with start_broker(port) as b:
        create_topic(b.bootstrap_servers, topic, partitions)
        click.echo(
            f"broker on {b.bootstrap_servers}, topic {topic} ({partitions} partitions); Ctrl-C or SIGTERM stops"
        )
        with contextlib.suppress(KeyboardInterrupt):
            b.process.wait()


@main.group()
def data() -> None:
    """The data directory: $NIDS_DATA_DIR, ./data, ../shared/data."""


@data.command("where")
def data_where() -> None:
    """Print the data directory in use and its IoT-23 captures."""
    from nids_core.training_data.data_dir import find_data_dir, iot23_files

    d = find_data_dir()
    click.echo(str(d))
    for f in iot23_files(d):
        click.echo(f"  {f.name}")


@data.command("download")
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Default: $NIDS_DATA_DIR or ./data.",
)
@click.option("--base-url", default=None, help="A mirror serving the files by name.")
def data_download(dest, base_url) -> None:
    """Download the IoT-23 captures and verify their SHA-256 checksums."""
    from nids_core.training_data.data_dir import IOT23_FILES, download

    dest = dest or Path(os.environ.get("NIDS_DATA_DIR") or "data")
    for path in download(IOT23_FILES, dest, base_url=base_url):
        click.echo(f"ok {path}")


@main.command()
def settings() -> None:
    """Print every setting (environment variable, default, meaning) as the
    markdown table of docs/configuration.md, generated from the resources' declarations."""
    from nids_resources.from_env import all_settings
    from nids_resources.settings import settings_table

    click.echo(settings_table(all_settings()))


@main.group()
def hot() -> None:
    """The hot store (NIDS_HOT_STORE: a DuckDB file, or a DuckLake)."""


@hot.command("init")
def hot_init() -> None:
    """Create the hot store's tables (on a DuckLake: its catalog too) once, before the
    first run; every writer would otherwise create them on first connect (under a lock)."""
    from nids_core.stores.hot_schema import HOT_TABLE_NAMES
    from nids_resources.from_env import hot_store_from_env

    store = hot_store_from_env()
    with store.backend().connect() as con:
        rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in HOT_TABLE_NAMES}
    where = (
        f"DuckLake (catalog {store.ducklake_catalog}, data {store.ducklake_data_path})"
        if store.store_kind == "ducklake"
        else f"DuckDB file {store.database}"
    )
    click.echo(f"hot store ready: {where}")
    for table, n in rows.items():
        click.echo(f"  {table}: {n} rows")


@main.group()
def alerts() -> None:
    """Alerts: per host and window, the evidence of the model and the label-free detectors
    (list, show, ack, close with a verdict, export as OCSF or ECS)."""


def _alert_stores():
    from nids_resources.from_env import hot_store_from_env, serving_from_env

    return hot_store_from_env().backend(), serving_from_env().triage()


@alerts.command("list")
@click.option("--since", default=None, help="Alerts last seen at or after this time.")
@click.option("--until", default=None, help="Alerts first seen at or before this time.")
@click.option("--host", default=None, help="Only this source host.")
@click.option("--min-severity", type=click.IntRange(0, 100), default=None)
def alerts_list(since, until, host, min_severity) -> None:
    """One line per alert, newest first: id, severity, status, host, detectors, title."""
    from nids_cli.alerting import query_alerts, with_status

    database, triage = _alert_stores()
    found = with_status(query_alerts(database, since, until, host, min_severity), triage)
    for a in found:
        click.echo(
            f"{a['alert_id']}  {a['severity']:>3}  {a['status']:<12} {a['host']:<16} "
            f"{'+'.join(a['detectors']):<28} {a['last_seen']}  {a['title']}"
        )
    click.echo(f"{len(found)} alert(s)", err=True)


@alerts.command("show")
@click.argument("alert_id")
def alerts_show(alert_id) -> None:
    """An alert's evidence (detector, why), its flows and its status."""
    from nids_cli.alerting import one_alert, show_text

    database, triage = _alert_stores()
    click.echo(show_text(one_alert(database, triage, alert_id), database))


@alerts.command("ack")
@click.argument("alert_id")
@click.option("--by", default=None, help="Who acknowledges (default: $USER).")
def alerts_ack(alert_id, by) -> None:
    """Acknowledge an alert: someone is on it (it stops failing new_high_severity_alert)."""
    import os

    from nids_cli.alerting import one_alert
    from nids_core.detection.triage import TriageError

    database, triage = _alert_stores()
    alert = one_alert(database, triage, alert_id)
    try:
        triage.set_status(alert["alert_id"], "acknowledged", by=by or os.environ.get("USER", ""))
    except TriageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"acknowledged {alert_id}")


@alerts.command("close")
@click.argument("alert_id")
@click.option("--verdict", type=click.Choice(["true-positive", "false-positive"]), required=True)
@click.option("--by", required=True, help="Who closes it.")
@click.option("--why", required=True, help="Why: what the analyst found.")
def alerts_close(alert_id, verdict, by, why) -> None:
    """Close an alert with a verdict; its flows become analyst labels (true-positive:
    malicious, false-positive: benign) that the next training set uses."""
    from nids_cli.alerting import close_alert, one_alert
    from nids_cli.labelling import record_labels
    from nids_core.detection.triage import TriageError
    from nids_core.training_data.analyst_labels import LabelError
    from nids_resources.from_env import cold_store_from_env

    database, triage = _alert_stores()
    alert = one_alert(database, triage, alert_id)
    store = cold_store_from_env().store()
    try:
        named = close_alert(
            alert, triage, verdict, by, why, lambda e: record_labels(e, store, database)[1]
        )
    except (TriageError, LabelError) as exc:
        raise click.ClickException(f"{exc} (nothing was written)") from exc
    click.echo(f"closed {alert_id} as {verdict}; {named} flow(s) labelled for the next training")


@alerts.command("export")
@click.option("--format", "fmt", type=click.Choice(["ocsf", "ecs"]), required=True)
@click.option("--since", default=None, help="Alerts last seen at or after this time.")
@click.option("--until", default=None, help="Alerts first seen at or before this time.")
def alerts_export(fmt, since, until) -> None:
    """One JSON alert per line: OCSF Detection Findings (class 2004) or ECS documents."""
    from nids_cli.alerting import export_lines, query_alerts, with_status

    database, triage = _alert_stores()
    for line in export_lines(with_status(query_alerts(database, since, until), triage), fmt):
        click.echo(line)


@main.group()
def allow() -> None:
    """The allow-list: evidence that matches an entry is kept and counted, never alerted."""


@allow.command("add")
@click.option("--host", default=None, help="Source host: an address or CIDR.")
@click.option("--peer", default=None, help="Peer: an address or CIDR.")
@click.option("--port", type=int, default=None)
@click.option("--detector", default=None, help="model, horizontal_scan, vertical_scan, ...")
@click.option("--by", required=True, help="Who adds it.")
@click.option("--why", required=True, help="Why this is expected traffic.")
@click.option("--expires", default=None, help="When it stops applying (ISO 8601 or epoch).")
def allow_add(host, peer, port, detector, by, why, expires) -> None:
    """Add an entry; every field it names must match. Applies from the next refresh."""
    from nids_core.detection.allow_list import AllowEntry, AllowListError
    from nids_core.training_data.analyst_labels import LabelError, parse_time

    _, triage = _alert_stores()
    try:
        entry = AllowEntry(
            by=by,
            why=why,
            host=host,
            peer=peer,
            port=port,
            detector=detector,
            expires=parse_time(expires) if expires else None,
        )
        click.echo(f"added {triage.add_allow(entry)}")
    except (AllowListError, LabelError) as exc:
        raise click.ClickException(f"{exc} (nothing was written)") from exc


@allow.command("list")
def allow_list() -> None:
    """Every entry: id, what it matches, who, why, expiry."""
    from nids_resources.from_env import serving_from_env

    for e in serving_from_env().allow_entries():
        match = " ".join(
            f"{k}={v}"
            for k, v in (
                ("host", e.host),
                ("peer", e.peer),
                ("port", e.port),
                ("detector", e.detector),
            )
            if v is not None
        )
        click.echo(f"{e.entry_id}  {match}  by {e.by}: {e.why}  expires {e.expires or 'never'}")


@allow.command("remove")
@click.argument("entry_id")
def allow_remove(entry_id) -> None:
    """Remove an entry added with `nids allow add` (file entries live in their file)."""
    from nids_core.detection.allow_list import AllowListError

    _, triage = _alert_stores()
    try:
        triage.remove_allow(entry_id)
    except AllowListError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"removed {entry_id}")


@main.group()
def model() -> None:
    """The registered model in MLflow (MLFLOW_TRACKING_URI, NIDS_MODEL_NAME)."""


def _registry():
    from nids_resources.from_env import model_registry_from_env

    return model_registry_from_env().registry()


@model.command("status")
def model_status() -> None:
    """Show the champion and challenger versions and their gate results."""
    registry = _registry()
    for alias in ("champion", "challenger"):
        mv = registry.version_by_alias(alias)
        if mv is None:
            click.echo(f"{alias}: none")
            continue
        from nids_core.registry.versions import gate_status

        tags = ", ".join(f"{k}={v}" for k, v in sorted(mv.tags.items()) if k.startswith("nids."))
        click.echo(
            f"{alias}: {registry.model_name} version {mv.version} (run {mv.run_id}) "
            f"gate {gate_status(mv)}; {tags}"
        )


@model.command("rollback")
@click.option(
    "--to",
    "to_version",
    default=None,
    help="Version to serve (default: the one the current champion replaced).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Emergency override: serve a version whose promotion gate did not pass "
    "(needs --by and --reason; recorded on the version and logged).",
)
@click.option("--by", default=None, help="Who overrides the gate (with --force).")
@click.option("--reason", default=None, help="Why the gate is overridden (with --force).")
def model_rollback(to_version, force, by, reason) -> None:
    """Move alias `champion` back to the previous champion (or to --to VERSION). Only a
    version that passed the promotion gate is accepted, unless --force overrides it."""
    from nids_core.registry.versions import GateNotPassed, GateOverride

    override = None
    if force:
        try:
            override = GateOverride(by or "", reason or "")
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    elif by or reason:
        raise click.UsageError("--by and --reason go with --force")
    registry = _registry()
    try:
        done = registry.rollback(to_version, override)
    except (LookupError, GateNotPassed) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"champion of {registry.model_name}: version {done.previous} -> {done.version}")
    if override:
        click.echo(f"gate overridden by {override.by}: {override.reason} (recorded on the version)")


@model.command("evaluate")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--model",
    "which",
    default="champion",
    show_default=True,
    help="`champion`, `challenger` or a version number.",
)
@click.option(
    "--baseline",
    is_flag=True,
    help="Also the flow-only baseline, fitted on the rows that model was trained on.",
)
def model_evaluate(files, which, baseline) -> None:
    """Score your own labelled Zeek conn logs (TSV, JSON or CSV; plain or gzip), one network
    per file, with a registered model: per file flows, labelled flows, attacks, macro F1,
    attack recall and benign FPR; then mean and worst file. Rows without a label are
    skipped; a file that is not a conn log is reported and the others still evaluated
    (exit status 1 then)."""
    from nids_cli.evaluation import evaluate_registered

    registry = _registry()
    try:
        results, summary = evaluate_registered(
            registry, which, list(files), baseline, echo=click.echo
        )
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(summary)
    if any(r.error for r in results):
        raise SystemExit(1)


@main.command()
@click.option("--home", type=click.Path(path_type=Path), default=Path("var"), show_default=True)
@click.option("--partitions", type=int, default=2, show_default=True)
@click.option("--ui", is_flag=True, help="Afterwards keep the Dagster and MLflow UIs running.")
def demo(home, partitions, ui) -> None:
    """Start the bundled broker, replay the data directory's captures (shifted to now),
    materialize the whole asset graph (ingest, cold, training, gate, champion, predictions,
    alerts) and print a report; nothing is left running unless --ui."""
    from nids_cli.demo import run_demo

    run_demo(home.resolve(), partitions, ui)


if __name__ == "__main__":
    main()
