"""Resources built from the environment, validated when the code location loads.

A bad value fails the load with a message naming the variable and the reason, instead of
failing later inside a run.
"""

from nids_core.kafka.log import KAFKA_CLIENTS
from nids_resources.kafka import KafkaResource
from nids_resources.mlflow import (
    MlflowTrackingResource,
    ModelRegistryResource,
    ModelSettingsResource,
)
from nids_resources.plausibility import PlausibleTimeResource
from nids_resources.reference import ReferenceCorpusResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.settings import SettingError, env, env_choice, env_float, env_int, secret
from nids_resources.stores import ColdStoreResource, HotStoreResource

# Variable, default, meaning: the README's configuration table is generated from this list.
SETTINGS: list[tuple[str, str, str]] = [
    (
        "NIDS_KAFKA_BOOTSTRAP",
        "127.0.0.1:9092",
        "Kafka bootstrap servers (host:port, comma-separated)",
    ),
    ("NIDS_KAFKA_TOPIC", "zeek.conn", "Topic with Zeek conn records (JSON)"),
    ("NIDS_KAFKA_GROUP", "nids-etl", "Consumer group whose committed offsets track ingestion"),
    ("NIDS_KAFKA_CLIENT", "kafka-python", "Kafka client: kafka-python or confluent"),
    ("NIDS_KAFKA_MAX_BATCH_RECORDS", "50000", "Most records per ingest run"),
    ("NIDS_KAFKA_MAX_MESSAGE_BYTES", "65536", "Larger messages are quarantined"),
    ("NIDS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    ("NIDS_KAFKA_SASL_MECHANISM", "", "SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"),
    ("NIDS_KAFKA_SASL_USERNAME", "", "SASL user name"),
    ("NIDS_KAFKA_SASL_PASSWORD", "", "SASL password (secret)"),
    ("NIDS_KAFKA_SSL_CAFILE", "", "CA bundle for SSL"),
    ("NIDS_KAFKA_SENSOR_INTERVAL_S", "2", "Seconds between Kafka sensor ticks"),
    ("NIDS_TS_EARLIEST", "1990-01-01", "Flows with an earlier ts are quarantined"),
    (
        "NIDS_TS_MAX_AHEAD_HOURS",
        "24",
        "Flows with a ts more hours than this ahead of the clock are quarantined",
    ),
    ("NIDS_DUCKDB_PATH", "var/nids.duckdb", "Hot DuckDB file"),
    ("NIDS_COLD_URL", "var/cold", "Landing zone and cold store root: a path or s3://bucket/prefix"),
    ("NIDS_COLD_START_DATE", "2013-01-01", "First daily cold partition"),
    ("NIDS_COLD_SENSOR_INTERVAL_S", "60", "Seconds between cold-partition sensor ticks"),
    ("NIDS_S3_ENDPOINT_URL", "", "S3 endpoint for MinIO or another S3-compatible store"),
    ("AWS_ACCESS_KEY_ID", "", "S3 access key (secret)"),
    ("AWS_SECRET_ACCESS_KEY", "", "S3 secret key (secret)"),
    ("AWS_REGION", "", "S3 region"),
    (
        "MLFLOW_TRACKING_URI",
        "sqlite:///var/mlflow/mlflow.db",
        "MLflow tracking and registry URI (http://host:port for a server)",
    ),
    ("NIDS_MLFLOW_EXPERIMENT", "nids-gnn", "MLflow experiment of the training runs"),
    (
        "NIDS_MLFLOW_ARTIFACTS",
        "var/mlflow/artifacts",
        "Artifact root of a new experiment (path or s3://); a server decides its own",
    ),
    ("NIDS_MLFLOW_UI_URL", "http://127.0.0.1:5000", "MLflow UI address used in Dagster links"),
    ("NIDS_MODEL_NAME", "nids-gnn", "Registered model name"),
    (
        "NIDS_REFERENCE_IOT23",
        "true",
        "Reference corpus includes the data directory's IoT-23 captures (true/false)",
    ),
    (
        "NIDS_REFERENCE_URL",
        "",
        "Folder or s3://bucket/prefix of your own labelled Zeek conn logs (reference corpus)",
    ),
    ("NIDS_REFERENCE_SENSOR_INTERVAL_S", "60", "Seconds between reference-corpus checks"),
    ("NIDS_TRAINING_DAYS", "21", "Cold days whose analyst-labelled flows are trained on"),
    ("NIDS_TRAINING_CRON", "0 3 * * *", "Daily training schedule (cron, UTC)"),
    ("NIDS_TRAIN_MAX_EPOCHS", "300", "Most training epochs"),
    ("NIDS_TRAIN_PATIENCE", "30", "Early-stopping patience in epochs"),
    (
        "NIDS_TRAIN_LONO_SEEDS",
        "3",
        "Seeds per held-out network in the leave-one-network-out promotion gate",
    ),
    ("NIDS_GRAPH_WINDOW_MINUTES", "15", "Time window of one flow graph (training and scoring)"),
    ("NIDS_GATE_MIN_ACCURACY", "0.95", "Promotion gate: least test accuracy"),
    ("NIDS_GATE_MIN_MACRO_F1", "0.95", "Promotion gate: least test macro F1"),
    ("NIDS_GATE_MAX_BENIGN_FPR", "0.01", "Promotion gate: largest benign false-positive rate"),
    (
        "NIDS_GATE_MAX_F1_DROP",
        "0.005",
        "Promotion gate: largest macro-F1 drop against the champion",
    ),
    ("NIDS_MODEL_CACHE_DIR", "var/model-cache", "Local cache of downloaded model versions"),
    ("NIDS_SCORE_MAX_FLOWS", "500000", "Most flows scored in one flow_predictions run"),
    ("NIDS_ALERT_MIN_SCORE", "0.9", "Attack score at or above which a flow is an alert"),
    ("NIDS_ALERT_WINDOW_MINUTES", "15", "Alert grouping window per source host"),
    ("NIDS_ALERT_MAX_ATTACK_RATE", "0.2", "Attack share of the newest window that fails a check"),
    ("NIDS_ALERT_WEBHOOK_URL", "", "POST JSON alerts here (secret; unset: alerts only logged)"),
    ("NIDS_HOT_RETENTION_HOURS", "24", "Hot flows older than this move out (when cold)"),
    ("NIDS_LAG_WARN_RECORDS", "100000", "Consumer lag per partition that warns"),
    ("NIDS_LAG_FAIL_RECORDS", "1000000", "Consumer lag per partition that fails"),
    ("NIDS_LAG_SENSOR_INTERVAL_S", "60", "Seconds between consumer-lag observations"),
    ("NIDS_SCORING_SENSOR_INTERVAL_S", "2", "Seconds between scoring sensor ticks"),
    ("NIDS_DEAD_RUN_SENSOR_INTERVAL_S", "15", "Seconds between checks for runs whose process died"),
    (
        "NIDS_DATA_DIR",
        "./data, then ../shared/data",
        "Directory with the IoT-23 and Zeek sample data",
    ),
]
_DEFAULTS = {name: default for name, default, _ in SETTINGS}


def _opt(name: str) -> str | None:
    value = env(name, "")
    return value or None


def kafka_from_env() -> KafkaResource:
    bootstrap = env("NIDS_KAFKA_BOOTSTRAP", _DEFAULTS["NIDS_KAFKA_BOOTSTRAP"])
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise SettingError(f"NIDS_KAFKA_BOOTSTRAP={bootstrap!r}: {server!r} is not host:port")
    protocol = env_choice(
        "NIDS_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    mechanism = _opt("NIDS_KAFKA_SASL_MECHANISM")
    if protocol.startswith("SASL") and not mechanism:
        raise SettingError(
            f"NIDS_KAFKA_SECURITY_PROTOCOL={protocol} needs NIDS_KAFKA_SASL_MECHANISM"
        )
    return KafkaResource(
        bootstrap_servers=bootstrap,
        topic=env("NIDS_KAFKA_TOPIC", "zeek.conn"),
        group_id=env("NIDS_KAFKA_GROUP", "nids-etl"),
        client=env_choice("NIDS_KAFKA_CLIENT", "kafka-python", KAFKA_CLIENTS),
        max_batch_records=env_int("NIDS_KAFKA_MAX_BATCH_RECORDS", 50_000),
        max_message_bytes=env_int("NIDS_KAFKA_MAX_MESSAGE_BYTES", 65_536, minimum=1024),
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=_opt("NIDS_KAFKA_SASL_USERNAME"),
        sasl_password=secret("NIDS_KAFKA_SASL_PASSWORD"),
        ssl_cafile=_opt("NIDS_KAFKA_SSL_CAFILE"),
    )


def hot_store_from_env() -> HotStoreResource:
    return HotStoreResource(database=env("NIDS_DUCKDB_PATH", _DEFAULTS["NIDS_DUCKDB_PATH"]))


def cold_store_from_env() -> ColdStoreResource:
    url = env("NIDS_COLD_URL", _DEFAULTS["NIDS_COLD_URL"])
    if "://" in url and not url.startswith(("s3://", "file://")):
        raise SettingError(f"NIDS_COLD_URL={url!r}: use a local path or s3://bucket/prefix")
    if url.startswith("s3://") and len(url) <= len("s3://"):
        raise SettingError("NIDS_COLD_URL='s3://' names no bucket")
    return ColdStoreResource(
        url=url,
        s3_endpoint_url=_opt("NIDS_S3_ENDPOINT_URL"),
        aws_access_key_id=secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=secret("AWS_SECRET_ACCESS_KEY"),
        aws_region=_opt("AWS_REGION"),
    )


def tracking_uri_from_env() -> str:
    uri = env("MLFLOW_TRACKING_URI", _DEFAULTS["MLFLOW_TRACKING_URI"])
    if not uri.startswith(("http://", "https://", "sqlite:///", "postgresql", "databricks")):
        raise SettingError(
            f"MLFLOW_TRACKING_URI={uri!r}: use http(s)://host:port, sqlite:///path or postgresql://"
        )
    return uri


def mlflow_tracking_from_env() -> MlflowTrackingResource:
    return MlflowTrackingResource(
        experiment_name=env("NIDS_MLFLOW_EXPERIMENT", "nids-gnn"),
        mlflow_tracking_uri=tracking_uri_from_env(),
        artifact_location=env("NIDS_MLFLOW_ARTIFACTS", _DEFAULTS["NIDS_MLFLOW_ARTIFACTS"]),
    )


def model_registry_from_env() -> ModelRegistryResource:
    return ModelRegistryResource(
        tracking_uri=tracking_uri_from_env(),
        model_name=env("NIDS_MODEL_NAME", "nids-gnn"),
        ui_url=env("NIDS_MLFLOW_UI_URL", _DEFAULTS["NIDS_MLFLOW_UI_URL"]),
    )


def model_settings_from_env() -> ModelSettingsResource:
    return ModelSettingsResource(
        training_days=env_int("NIDS_TRAINING_DAYS", 21),
        max_epochs=env_int("NIDS_TRAIN_MAX_EPOCHS", 300),
        patience=env_int("NIDS_TRAIN_PATIENCE", 30),
        lono_seeds=env_int("NIDS_TRAIN_LONO_SEEDS", 3),
        graph_window_minutes=env_float("NIDS_GRAPH_WINDOW_MINUTES", 15.0),
        min_accuracy=env_float("NIDS_GATE_MIN_ACCURACY", 0.95, maximum=1.0),
        min_macro_f1=env_float("NIDS_GATE_MIN_MACRO_F1", 0.95, maximum=1.0),
        max_benign_fpr=env_float("NIDS_GATE_MAX_BENIGN_FPR", 0.01, maximum=1.0),
        max_macro_f1_drop=env_float("NIDS_GATE_MAX_F1_DROP", 0.005, maximum=1.0),
    )


def serving_from_env() -> ServingSettingsResource:
    warn = env_int("NIDS_LAG_WARN_RECORDS", 100_000, minimum=0)
    fail = env_int("NIDS_LAG_FAIL_RECORDS", 1_000_000, minimum=0)
    if fail < warn:
        raise SettingError(f"NIDS_LAG_FAIL_RECORDS={fail} is below NIDS_LAG_WARN_RECORDS={warn}")
    return ServingSettingsResource(
        model_cache_dir=env("NIDS_MODEL_CACHE_DIR", "var/model-cache"),
        max_flows_per_scoring_run=env_int("NIDS_SCORE_MAX_FLOWS", 500_000),
        alert_min_score=env_float("NIDS_ALERT_MIN_SCORE", 0.9, maximum=1.0),
        alert_window_minutes=env_int("NIDS_ALERT_WINDOW_MINUTES", 15),
        max_attack_rate=env_float("NIDS_ALERT_MAX_ATTACK_RATE", 0.2, maximum=1.0),
        hot_retention_hours=env_int("NIDS_HOT_RETENTION_HOURS", 24),
        lag_warn_records=warn,
        lag_fail_records=fail,
        alert_webhook_url=secret("NIDS_ALERT_WEBHOOK_URL"),
    )


def plausible_time_from_env() -> PlausibleTimeResource:
    from datetime import date

    earliest = env("NIDS_TS_EARLIEST", _DEFAULTS["NIDS_TS_EARLIEST"])
    try:
        date.fromisoformat(earliest)
    except ValueError:
        raise SettingError(f"NIDS_TS_EARLIEST={earliest!r} is not a date (YYYY-MM-DD)") from None
    return PlausibleTimeResource(
        earliest=earliest, max_ahead_hours=env_float("NIDS_TS_MAX_AHEAD_HOURS", 24.0)
    )


def reference_corpus_from_env(cold_store: ColdStoreResource) -> ReferenceCorpusResource:
    """The data directory's IoT-23 folder (unless NIDS_REFERENCE_IOT23=false; skipped when
    there is no data directory) and NIDS_REFERENCE_URL, which must exist when it is local."""
    from pathlib import Path

    from nids_core.training_data.data_dir import IOT23_SUBDIR, DataDirNotFound, find_data_dir

    locations = []
    if env_choice("NIDS_REFERENCE_IOT23", "true", ("true", "false")) == "true":
        try:
            iot23 = find_data_dir() / IOT23_SUBDIR
        except DataDirNotFound:
            iot23 = None
        if iot23 is not None and iot23.is_dir():
            locations.append(str(iot23.resolve()))
    url = _opt("NIDS_REFERENCE_URL")
    if url:
        if "://" in url and not url.startswith("s3://"):
            raise SettingError(f"NIDS_REFERENCE_URL={url!r}: use a folder or s3://bucket/prefix")
        if "://" not in url and not Path(url).is_dir():
            raise SettingError(f"NIDS_REFERENCE_URL={url!r} is not a folder")
        locations.append(url if "://" in url else str(Path(url).resolve()))
    return ReferenceCorpusResource(locations=locations, cold_store=cold_store)


def resources_from_env() -> dict:
    """All resources, keyed as the assets name them."""
    cold_store = cold_store_from_env()
    return {
        "kafka": kafka_from_env(),
        "hot_store": hot_store_from_env(),
        "cold_store": cold_store,
        "reference_corpus": reference_corpus_from_env(cold_store),
        "mlflow_tracking": mlflow_tracking_from_env(),
        "model_registry": model_registry_from_env(),
        "model_settings": model_settings_from_env(),
        "serving": serving_from_env(),
        "plausible_time": plausible_time_from_env(),
    }
