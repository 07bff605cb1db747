"""Serving side: score new hot flows with the champion, and group attacks into alerts."""

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetObservation,
    Config,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from nids_assets.ingestion import hot_flows
from nids_assets.model import champion_model
from nids_core.detection.delivery import queue_deliveries, read_alerts
from nids_core.detection.refresh import DetectionRefresh, refresh_detections
from nids_core.serving.alerts import (
    AlertRefresh,
    latest_attack_rate,
    refresh_alerts,
    top_alert_hosts,
)
from nids_resources.alert_delivery import deliver_alerts
from nids_resources.kafka import KafkaResource
from nids_resources.mlflow import ModelRegistryResource
from nids_resources.plausibility import PlausibleTimeResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.stores import HotStoreResource

if TYPE_CHECKING:  # torch loads in the scoring run only
    from nids_core.serving.model_cache import ServedModel

SERVING_GROUP = "serving"
ATTACK_RATE_CHECK = "attack_rate_in_newest_window"
HIGH_SEVERITY_CHECK = "new_high_severity_alert"
NEWEST_ALERTS_SHOWN = 10
ATTACK_RATE_ONSET = "attack_rate_onset"  # metadata of an `alerts` observation


# A following scoring run looks for new flows this often, stops after this long without
# any, and asks the registry whether the champion changed every this many passes.
FOLLOW_POLL_S = 1.0
FOLLOW_IDLE_EXIT_S = 30.0  # longer than an ingest run takes on a busy machine
CHAMPION_CHECK_PASSES = 10


class FlowPredictionsConfig(Config):
    follow_seconds: int | None = Field(
        default=None,
        description="Seconds this run keeps scoring flows as they land after its first pass "
        "(empty: NIDS_SCORE_FOLLOW_S; 0: one pass, as the in-process driver runs it).",
    )


@dataclass
class _Totals:
    scored: int = 0
    attacks: int = 0
    windows: int = 0
    context_flows: int = 0
    seconds: float = 0.0
    unscorable: int = 0
    passes: int = 0
    alerts_seconds: float = 0.0

    def add(self, counts) -> None:
        self.scored += counts.inserted
        self.attacks += counts.predicted_attacks
        self.windows += counts.windows
        self.context_flows += counts.context_flows
        self.seconds += counts.seconds
        self.unscorable += counts.unscorable
        self.passes += 1


@asset(
    deps=[hot_flows, champion_model],
    group_name=SERVING_GROUP,
    kinds={"duckdb", "pytorch"},
    # No `duckdb` pool: the run's seconds of loading torch and the model would hold back
    # every ingest run. It takes DuckDB's file lock (waiting with backoff) only to read
    # the flows it scores and insert their predictions.
    # Requested by scoring_sensor while ingest runs go on (one scoring run at a time).
    freshness_policy=FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=15), warn_window=timedelta(minutes=10)
    ),
)
def flow_predictions(
    context: AssetExecutionContext,
    config: FlowPredictionsConfig,
    hot_store: HotStoreResource,
    model_registry: ModelRegistryResource,
    serving: ServingSettingsResource,
    plausible_time: PlausibleTimeResource,
):
    """Table `predictions` (uid, score, predicted_label, model_version, predicted_at, ts):
    every hot flow without a prediction is scored by the model with alias `champion`, its
    graph built over its time window of the hot table so it has its recent neighbours as
    context. Inserted once, never overwritten: a new champion scores only flows that arrive
    after it. The champion is read from the MLflow registry and served only if its gate
    passed (or an operator overrode the gate); its files are checked against the checksum
    recorded at registration before loading, and cached per version. Without a servable
    champion the run fails; it never writes default predictions, and a score that is not a
    number is never a verdict.

    A run then follows the stream for NIDS_SCORE_FOLLOW_S seconds: each second it scores
    the flows that landed and refreshes `alerts` (an observation of each asset per pass),
    so a flow is scored seconds after it lands instead of waiting for a new run to load
    torch and the model. When the attack rate of the newest window starts to fail its check,
    the observation says so and `attack_rate_sensor` runs the `alerts` step at once. It
    stops early after 30 s without new flows, or when the champion changes."""
    # torch and MLflow load in the scoring run only, not in every process that loads the
    # code location (sensors, ingest runs).
    from nids_core.serving.model_cache import served_champion

    registry = model_registry.registry()
    started = time.monotonic()
    model = served_champion(registry, serving.model_cache_dir)
    context.log.info(
        f"champion v{model.version} (gate {model.gate}) loaded in "
        f"{time.monotonic() - started:.1f} s"
    )
    follow = (
        serving.score_follow_seconds if config.follow_seconds is None else config.follow_seconds
    )
    run = _FollowingRun(context, hot_store, serving, plausible_time, model)
    stopped = yield from run.follow(
        follow, lambda: registry.servable_champion().version != model.version
    )
    yield run.result(stopped)


class _FollowingRun:
    """One scoring run: a first pass, then a pass each FOLLOW_POLL_S while flows land,
    each pass with new predictions reported as observations of `flow_predictions` and
    `alerts`."""

    def __init__(self, context, hot_store, serving, plausible_time, model: "ServedModel"):
        self.context, self.hot_store, self.serving = context, hot_store, serving
        self.plausible_time, self.model = plausible_time, model
        self.totals = _Totals()
        self.counts = None
        self.total = 0
        self.failing = False

    def score_pass(self, first: bool = False):
        """Score what landed; with new predictions (or on the first pass), refresh the
        alerts and read the attack rate and the prediction count. A pass that finds
        nothing new reads nothing more. Returns the alerts' state, or None."""
        from nids_core.serving.scoring import score_unscored

        t0 = time.monotonic()
        state = None
        with self.hot_store.connect() as con:
            t_open = time.monotonic()
            # On a DuckLake a pass whose commit lost to the lifecycle job's deletes of
            # `predictions` is scored again from the start (one transaction, nothing kept).
            self.counts = self.hot_store.backend().retrying(
                lambda: score_unscored(
                    con,
                    self.model,
                    self.serving.max_flows_per_scoring_run,
                    self.plausible_time.window().latest(),
                )
            )
            t_scored = time.monotonic()
            if self.counts.inserted or first:
                state = _alerts_state(
                    con, self.serving, self.plausible_time, self.counts.inserted > 0
                )
                self.total = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
            t_alerts = time.monotonic()
        self.totals.add(self.counts)
        self.totals.alerts_seconds += t_alerts - t_scored
        if self.counts.inserted:
            self.context.log.debug(
                f"pass: waited {t_open - t0:.2f} s for the hot store, scored "
                f"{self.counts.inserted} in {t_scored - t_open:.2f} s, alerts and evidence "
                f"{t_alerts - t_scored:.2f} s"
            )
        return state

    def observations(self, state: "_AlertsState") -> list[AssetObservation]:
        """A pass's new predictions, and the newest window's attack rate. An onset
        (passing -> failing) makes attack_rate_sensor run the alerts step now, so the
        check and its webhook do not wait for this run to end."""
        now_failing = state.rate >= self.serving.max_attack_rate
        onset = now_failing and not self.failing
        self.failing = now_failing
        return [
            AssetObservation(
                asset_key="flow_predictions",
                metadata={"scored": self.counts.inserted, "predictions_total": int(self.total)},
            ),
            AssetObservation(
                asset_key="alerts",
                metadata={
                    "attack_rate_newest_window": round(state.rate, 4),
                    ATTACK_RATE_ONSET: onset,
                },
            ),
        ]

    def follow(self, seconds: float, champion_changed):
        """Pass after pass for `seconds`; stops early after FOLLOW_IDLE_EXIT_S without new
        flows, or when the champion changes. Yields observations; returns why it stopped."""
        # The first pass sets where the run starts (its predictions are in the
        # materialization); the passes after it report what landed while it ran.
        self.failing = self.score_pass(first=True).rate >= self.serving.max_attack_rate
        deadline = time.monotonic() + seconds
        last_new = time.monotonic()
        stopped = "one pass" if not seconds else "followed for NIDS_SCORE_FOLLOW_S"
        while time.monotonic() < deadline:
            if self.counts.remaining == 0:  # else a backlog beyond NIDS_SCORE_MAX_FLOWS
                time.sleep(FOLLOW_POLL_S)
            state = self.score_pass()
            if self.counts.inserted:
                last_new = time.monotonic()
                yield from self.observations(state)
            elif time.monotonic() - last_new >= FOLLOW_IDLE_EXIT_S:
                stopped = f"no new flows for {FOLLOW_IDLE_EXIT_S:.0f} s"
                break
            if self.totals.passes % CHAMPION_CHECK_PASSES == 0 and champion_changed():
                stopped = "the champion changed"
                break
        return stopped

    def result(self, stopped: str) -> MaterializeResult:
        totals = self.totals
        if totals.unscorable:
            self.context.log.warning(
                f"{totals.unscorable} flows got no finite score: left unscored"
            )
        self.context.log.info(
            f"champion v{self.model.version}: scored {totals.scored} flows ({totals.attacks} "
            f"attacks) in {totals.passes} passes; stopped: {stopped}"
        )
        return MaterializeResult(
            metadata={
                "model_version": self.model.version,
                "scored": totals.scored,
                "predicted_attacks": totals.attacks,
                "graph_windows": totals.windows,
                "context_flows": totals.context_flows,
                "seconds": round(totals.seconds, 3),
                "alerts_refresh_seconds": round(totals.alerts_seconds, 3),
                "flows_per_second": round(totals.scored / totals.seconds, 1)
                if totals.seconds > 0 and totals.scored
                else 0.0,
                "unscorable": totals.unscorable,
                "predictions_total": int(self.total),
                "unscored_remaining": self.counts.remaining,
                "passes": totals.passes,
                "stopped": stopped,
            }
        )


@dataclass(frozen=True)
class _AlertsState:
    refreshed: AlertRefresh | None  # None: not refreshed (no new predictions)
    detections: DetectionRefresh | None
    window: str | None  # the newest window's start
    scored: int
    attacks: int

    @property
    def rate(self) -> float:
        """The share of the newest window's scored flows that are attacks."""
        return self.attacks / self.scored if self.scored else 0.0


def _alerts_state(
    con, serving: ServingSettingsResource, plausible_time: PlausibleTimeResource, refresh: bool
) -> _AlertsState:
    """Refresh the alerts of the windows with new predictions (if `refresh`): the model's
    counts per host and window, then the evidence of every detector and the analysts'
    alerts of those windows, queued for delivery when new or changed; and read the newest
    window's attack rate: what a following scoring pass and the `alerts` step share."""
    latest = plausible_time.window().latest()
    args = (serving.alert_min_score, serving.alert_window_minutes, latest)
    refreshed = refresh_alerts(con, *args) if refresh else None
    detections = None
    if refreshed is not None and refreshed.window_starts != []:
        detections = refresh_detections(
            con,
            refreshed.window_starts,
            serving.alert_window_minutes,
            serving.thresholds(),
            serving.allow_entries(),
        )
        queue_deliveries(con, serving.triage(), serving.alert_sinks())
    window, scored, attacks = latest_attack_rate(con, *args, serving.attack_rate_min_flows)
    return _AlertsState(refreshed, detections, window, scored, attacks)


@asset(
    deps=[flow_predictions],
    group_name=SERVING_GROUP,
    kinds={"duckdb"},
    check_specs=[
        AssetCheckSpec(
            ATTACK_RATE_CHECK,
            asset="alerts",
            description="Fails when the share of flows scored as attacks in the newest window "
            "reaches NIDS_ALERT_MAX_ATTACK_RATE (the alert webhook then fires). A newest window "
            "with fewer than NIDS_ALERT_RATE_MIN_FLOWS scored flows is judged together with "
            "the windows before it, until the span holds that many (at most 24 h).",
        ),
        AssetCheckSpec(
            HIGH_SEVERITY_CHECK,
            asset="alerts",
            description="Fails while an alert of severity NIDS_ALERT_HIGH_SEVERITY or more is "
            "new (neither acknowledged nor closed with `nids alerts`), so Dagster's own "
            "alerting sees it.",
        ),
    ],
)
def alerts(
    context: AssetExecutionContext,
    hot_store: HotStoreResource,
    serving: ServingSettingsResource,
    plausible_time: PlausibleTimeResource,
    kafka: KafkaResource,
) -> MaterializeResult:
    """Tables `alerts`, `evidence` and `analyst_alerts`. `alerts`: per source host and
    NIDS_ALERT_WINDOW_MINUTES window, the flows scored at or above NIDS_ALERT_MIN_SCORE.
    `evidence`: one row per detection of the model and of the label-free detectors
    (horizontal and vertical scans, beacons, long connections), with the Zeek uids it rests
    on and why. `analyst_alerts`: per host and window, the evidence summed into a score and
    a 0-100 severity under a stable id, queued once per change for the Kafka topic, NDJSON
    files and the webhook (OCSF Detection Finding and ECS). Rebuilt for the windows that got
    predictions since the last refresh (every window still in the hot table, the first
    time); the outbox is then delivered."""
    with hot_store.connect() as con:
        state = _alerts_state(con, serving, plausible_time, refresh=True)
        shown = _AlertsShown.read(con, serving.alert_high_severity)
    statuses = serving.triage().statuses([*shown.high, *(a["alert_id"] for a in shown.newest)])
    new_high = [a for a in shown.high if statuses.get(a) is None or statuses[a].status == "new"]
    delivery = deliver_alerts(serving, kafka)
    for error in delivery.errors:
        context.log.warning(f"alert delivery failed, retried later: {error}")
    refreshed = state.refreshed
    context.log.info(
        f"{refreshed.alerts} model alert rows from {refreshed.hosts} hosts; "
        f"{shown.total} analyst alerts; delivery: {delivery.summary()}"
    )
    return MaterializeResult(
        metadata={
            "alerts": refreshed.alerts,
            "alerting_hosts": refreshed.hosts,
            "windows": refreshed.windows,
            "windows_refreshed": refreshed.refreshed_windows,
            "top_hosts": ", ".join(f"{h} ({a})" for h, a, *_ in shown.top) or "none",
            "analyst_alerts": shown.total,
            "evidence_per_detector": ", ".join(
                f"{d}: {n}" for d, n in sorted(shown.per_detector.items())
            )
            or "none",
            "suppressed_evidence": shown.suppressed,
            "newest_alerts": MetadataValue.md(newest_alerts_table(shown.newest, statuses)),
            "delivery": delivery.summary(),
        },
        check_results=[
            _attack_rate_check(state, serving.max_attack_rate),
            _high_severity_check(new_high, serving.alert_high_severity),
        ],
    )


@dataclass(frozen=True)
class _AlertsShown:
    """What the alerts asset shows of the hot store after a refresh."""

    top: list
    newest: list[dict]
    high: list[str]  # ids of alerts at or above the high severity
    per_detector: dict[str, int]
    suppressed: int
    total: int

    @classmethod
    def read(cls, con, high_severity: int) -> "_AlertsShown":
        high = con.execute(
            "SELECT alert_id FROM analyst_alerts WHERE severity >= ?", [high_severity]
        ).fetchall()
        per_detector = con.execute(
            "SELECT detector, count(*) FROM evidence WHERE suppressed_by IS NULL GROUP BY 1"
        ).fetchall()
        suppressed = con.execute(
            "SELECT count(*) FROM evidence WHERE suppressed_by IS NOT NULL"
        ).fetchone()[0]
        total = con.execute("SELECT count(*) FROM analyst_alerts").fetchone()[0]
        return cls(
            top_alert_hosts(con),
            read_alerts(con, limit=NEWEST_ALERTS_SHOWN),
            [a for (a,) in high],
            dict(per_detector),
            int(suppressed),
            int(total),
        )


def _attack_rate_check(state: "_AlertsState", max_attack_rate: float) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=ATTACK_RATE_CHECK,
        passed=state.rate < max_attack_rate,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "span_start": state.window or "none",
            "scored_flows": state.scored,
            "attack_flows": state.attacks,
            "attack_rate": round(state.rate, 4),
            "threshold": max_attack_rate,
        },
    )


def _high_severity_check(new_high: list[str], high_severity: int) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=HIGH_SEVERITY_CHECK,
        passed=not new_high,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "new_high_severity_alerts": len(new_high),
            "alert_ids": ", ".join(new_high[:10]) or "none",
            "threshold": high_severity,
        },
    )


def newest_alerts_table(alerts: list[dict], statuses: dict) -> str:
    """The newest alerts as a Markdown table: severity, host, detectors, status, why."""
    if not alerts:
        return "No alerts."
    lines = ["| severity | host | detectors | status | why | id |", "|---|---|---|---|---|---|"]
    for a in alerts:
        status = statuses.get(a["alert_id"])
        why = max(a["evidence"], key=lambda e: e["threat_level"] * e["confidence"])["description"]
        lines.append(
            f"| {a['severity']} | {a['host']} | {', '.join(a['detectors'])} | "
            f"{status.status if status else 'new'} | {why.replace('|', '/')} | {a['alert_id']} |"
        )
    return "\n".join(lines)
