"""Bad configuration fails at start naming the setting; settings are read where they are
declared."""

import pytest

from nids_resources.from_env import (
    cold_store_from_env,
    kafka_from_env,
    model_registry_from_env,
    model_settings_from_env,
)
from nids_resources.settings import SettingError
from tests.support.deployment import ROOT


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "NIDS_KAFKA_CLIENT",
            "rdkafka",
            "NIDS_KAFKA_CLIENT='rdkafka' is not one of: kafka-python, confluent",
        ),
        (
            "NIDS_KAFKA_BOOTSTRAP",
            "localhost",
            "NIDS_KAFKA_BOOTSTRAP='localhost': 'localhost' is not host:port",
        ),
        (
            "NIDS_KAFKA_MAX_BATCH_RECORDS",
            "lots",
            "NIDS_KAFKA_MAX_BATCH_RECORDS='lots' is not an integer",
        ),
        ("NIDS_KAFKA_MAX_BATCH_RECORDS", "0", "NIDS_KAFKA_MAX_BATCH_RECORDS=0 must be at least 1"),
        ("NIDS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "needs NIDS_KAFKA_SASL_MECHANISM"),
    ],
)
def test_bad_kafka_setting_names_the_variable(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingError) as err:
        kafka_from_env()
    assert message in str(err.value)


def test_bad_cold_url_names_the_variable(monkeypatch):
    monkeypatch.setenv("NIDS_COLD_URL", "gs://bucket/x")
    with pytest.raises(SettingError, match="NIDS_COLD_URL='gs://bucket/x'"):
        cold_store_from_env()


def test_bad_compaction_memory_names_the_variable(monkeypatch):
    monkeypatch.setenv("NIDS_COLD_COMPACTION_MEMORY", "2 gigs")
    with pytest.raises(SettingError, match="NIDS_COLD_COMPACTION_MEMORY='2 gigs' is not an amount"):
        cold_store_from_env()
    monkeypatch.setenv("NIDS_COLD_COMPACTION_MEMORY", "512MB")
    assert cold_store_from_env().store().compaction_memory == "512MB"


def test_secrets_come_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("NIDS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("NIDS_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("NIDS_KAFKA_SASL_PASSWORD", "s3cret")
    kafka = kafka_from_env()
    assert kafka.sasl_password == "NIDS_KAFKA_SASL_PASSWORD"  # an EnvVar: the name, not the value
    resolved = kafka.process_config_and_initialize()
    assert resolved.settings().sasl_password == "s3cret"
    assert "s3cret" not in repr(resolved.settings())


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("NIDS_GATE_MIN_MACRO_F1", "high", "NIDS_GATE_MIN_MACRO_F1='high' is not a number"),
        ("NIDS_GATE_MAX_BENIGN_FPR", "1.5", "NIDS_GATE_MAX_BENIGN_FPR=1.5 must be in [0.0, 1.0]"),
        ("NIDS_TRAIN_PATIENCE", "0", "NIDS_TRAIN_PATIENCE=0 must be at least 1"),
        ("NIDS_TRAINING_DAYS", "three", "NIDS_TRAINING_DAYS='three' is not an integer"),
    ],
)
def test_bad_model_setting_names_the_variable(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingError) as err:
        model_settings_from_env()
    assert message in str(err.value)


def test_model_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("NIDS_GATE_MIN_MACRO_F1", "0.97")
    monkeypatch.setenv("NIDS_TRAIN_PATIENCE", "7")
    settings = model_settings_from_env()
    assert settings.thresholds().min_macro_f1 == 0.97
    assert settings.train_config().patience == 7


def test_bad_tracking_uri_names_the_variable(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mlruns")
    with pytest.raises(SettingError, match="MLFLOW_TRACKING_URI='mlruns'"):
        model_registry_from_env()


def test_readme_configuration_table_is_the_generated_one():

    from nids_resources.from_env import all_settings
    from nids_resources.settings import settings_table

    readme = (ROOT / "docs" / "configuration.md").read_text()
    block = readme.split("keeps it in sync -->\n", 1)[1].split("\n<!-- end of settings table -->")[
        0
    ]
    assert block == settings_table(all_settings()), "run `nids settings` and paste its table"


def test_settings_outside_resources_are_read_when_the_location_loads(monkeypatch, tmp_path):
    from nids_jobs.definitions import build_definitions
    from nids_resources.stores import ColdStoreResource

    resources = {"cold_store": ColdStoreResource(url=str(tmp_path / "cold"))}
    monkeypatch.setenv("NIDS_KAFKA_SENSOR_INTERVAL_S", "0")
    with pytest.raises(SettingError, match="NIDS_KAFKA_SENSOR_INTERVAL_S=0 must be at least 1"):
        build_definitions(resources)
    monkeypatch.setenv("NIDS_KAFKA_SENSOR_INTERVAL_S", "7")
    monkeypatch.setenv("NIDS_TRAINING_CRON", "daily")
    with pytest.raises(SettingError, match="NIDS_TRAINING_CRON='daily' is not a cron expression"):
        build_definitions(resources)
    monkeypatch.setenv("NIDS_TRAINING_CRON", "0 4 * * *")
    defs = build_definitions(resources | _other_resources(tmp_path))
    assert defs.resolve_sensor_def("kafka_ingest_sensor").minimum_interval_seconds == 7
    assert defs.resolve_schedule_def("daily_training_schedule").cron_schedule == "0 4 * * *"


def test_daily_partitions_start_at_the_first_landed_day_unless_set(monkeypatch, tmp_path):
    from datetime import date

    from nids_jobs.definitions import first_partition_day
    from nids_resources.settings import load_deployment_settings
    from nids_resources.stores import ColdStoreResource

    cold = ColdStoreResource(url=str(tmp_path / "cold"))
    resources = {"cold_store": cold}
    assert first_partition_day(load_deployment_settings(), resources) == date(2013, 1, 1)
    for day in ("2019-03-02", "2018-12-31"):
        (tmp_path / "cold" / "landing" / f"date={day}").mkdir(parents=True)
        (tmp_path / "cold" / "landing" / f"date={day}" / "b.parquet").write_bytes(b"")
    assert first_partition_day(load_deployment_settings(), resources) == date(2018, 12, 31)
    monkeypatch.setenv("NIDS_COLD_START_DATE", "2018-06-01")
    assert first_partition_day(load_deployment_settings(), resources) == date(2018, 6, 1)
    monkeypatch.setenv("NIDS_COLD_START_DATE", "June")
    with pytest.raises(SettingError, match="NIDS_COLD_START_DATE='June' is not a date"):
        load_deployment_settings()


def _other_resources(tmp_path) -> dict:
    from tests.support.deployment import make_resources

    class _Broker:
        bootstrap_servers = "127.0.0.1:9"

    everything = make_resources(_Broker(), "t", tmp_path)
    return {k: v for k, v in everything.items() if k != "cold_store"}
