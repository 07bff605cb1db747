"""The model lifecycle under faults, on real MLflow stores (SQLite, as the embedded default
uses) and real model files: the gate holds on every path that moves `champion`, the model
cache is keyed and verified before anything is unpickled, downloads never fall back to a
process-default registry, and a broken champion does not block its replacement."""

import json
import pickle
import shutil
import stat
from pathlib import Path

import mlflow
import polars as pl
import pytest
from click.testing import CliRunner
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    SensorResult,
    build_sensor_context,
    materialize,
)

from nids_assets.model import gnn_model
from nids_cli.main import main as cli
from nids_core.model.training import TrainConfig
from nids_core.registry.versions import GATE_OVERRIDE_TAG, GateNotPassed, ModelRegistry
from nids_core.serving import model_cache
from nids_core.serving.model_cache import (
    ArtifactMismatch,
    load_version,
    served_champion,
)
from nids_core.training_data.training_set import TRAINING_SET_PATH
from nids_jobs.definitions import build_definitions
from tests.support.deployment import make_resources
from tests.support.model import capture_flows, register_trained, sqlite_store

TINY = TrainConfig(max_epochs=15, patience=5, hidden=16)
CAPTURES = ("CTU-Malware-Capture-20-1-labeled.csv.gz", "CTU-Honeypot-Capture-7-1-labeled.csv.gz")


@pytest.fixture(scope="module")
def flows():
    return capture_flows(*CAPTURES)


def _store(root: Path, name: str) -> str:
    return sqlite_store(root, name)


def _train(uri: str, name: str, flows: pl.DataFrame, seed: int, passed: bool) -> str:
    return register_trained(
        uri, name, flows, TrainConfig(**{**TINY.__dict__, "seed": seed}), passed
    )


@pytest.fixture(scope="module")
def registries(tmp_path_factory, flows):
    """Registry A: version 1 passed the gate and is champion, version 2 failed it.
    Registry B (another MLflow store): its own version 1 of a model with the same name."""
    root = tmp_path_factory.mktemp("registries")
    a = _store(root / "a", "nids-gnn")
    assert _train(a, "nids-gnn", flows, seed=0, passed=True) == "1"
    assert _train(a, "nids-gnn", flows, seed=1, passed=False) == "2"
    ModelRegistry(a, "nids-gnn").promote("1")
    b = _store(root / "b", "nids-gnn")
    assert _train(b, "nids-gnn", flows, seed=7, passed=True) == "1"
    return ModelRegistry(a, "nids-gnn"), ModelRegistry(b, "nids-gnn")


def _local(uri: str) -> Path:
    from urllib.parse import urlparse

    return Path(urlparse(uri).path)


def _weights(scorer) -> list:
    return [p.detach().numpy().round(6).tolist() for p in scorer.network.parameters()][:1]


def test_rollback_to_a_gate_failed_version_is_refused_unless_explicitly_overridden(
    registries, monkeypatch, tmp_path
):
    a, _ = registries
    monkeypatch.setenv("MLFLOW_TRACKING_URI", a.tracking_uri)
    monkeypatch.setenv("NIDS_MODEL_NAME", a.model_name)
    runner = CliRunner()
    refused = runner.invoke(cli, ["model", "rollback", "--to", "2"])
    assert refused.exit_code == 1
    assert "version 2 has not passed the promotion gate" in refused.output
    assert str(a.version_by_alias("champion").version) == "1"
    unexplained = runner.invoke(cli, ["model", "rollback", "--to", "2", "--force"])
    assert (
        unexplained.exit_code == 2 and "needs who (--by) and why (--reason)" in unexplained.output
    )
    assert str(a.version_by_alias("champion").version) == "1"
    try:
        forced = runner.invoke(
            cli,
            ["model", "rollback", "--to", "2", "--force", "--by", "alice", "--reason", "INC-42"],
        )
        assert forced.exit_code == 0, forced.output
        assert "gate overridden by alice: INC-42" in forced.output
        override = json.loads(a.get_version("2").tags[GATE_OVERRIDE_TAG])
        assert (override["by"], override["reason"]) == ("alice", "INC-42")
        status = runner.invoke(cli, ["model", "status"])
        assert (
            "champion: nids-gnn version 2" in status.output and "gate overridden" in status.output
        )
        version = served_champion(a, tmp_path / "cache").version  # served, under the override
    finally:
        a.client.set_registered_model_alias(a.model_name, "champion", "1")
        a.client.delete_model_version_tag(a.model_name, "2", GATE_OVERRIDE_TAG)
    assert version == "2"


def test_a_champion_moved_by_hand_to_a_failed_version_is_not_served(
    registries, broker, topic, tmp_path
):
    a, _ = registries
    a.client.set_registered_model_alias(a.model_name, "champion", "2")  # e.g. in the MLflow UI
    try:
        with pytest.raises(GateNotPassed, match="points at version 2, whose promotion gate is"):
            served_champion(a, tmp_path / "cache")
        defs = build_definitions(
            make_resources(
                broker, topic, tmp_path, tracking_uri=a.tracking_uri, model_name=a.model_name
            )
        )
        result = _scoring_tick_after_a_batch(defs)
        assert isinstance(result, SensorResult) and not result.run_requests
        assert "whose promotion gate is 'failed'" in result.skip_reason.skip_message
    finally:
        a.client.set_registered_model_alias(a.model_name, "champion", "1")


def test_the_cache_never_serves_another_registrys_version_under_the_same_label(
    registries, tmp_path
):
    a, b = registries
    cache = tmp_path / "cache"
    model_cache._MEMORY.clear()
    from_a, from_b = load_version(a, "1", cache), load_version(b, "1", cache)
    assert _weights(from_a) != _weights(from_b)
    model_cache._MEMORY.clear()  # a new process: only the disk cache is left
    assert _weights(load_version(b, "1", cache)) == _weights(from_b)
    assert _weights(load_version(a, "1", cache)) == _weights(from_a)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


class _Planted:
    """A pickle that, if ever loaded, leaves a file behind."""

    marker: Path

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the planted pickle ran"))


def _plant(path: Path, marker: Path) -> None:
    planted = _Planted()
    planted.marker = marker
    path.write_bytes(pickle.dumps(planted))


def test_a_pickle_planted_in_the_cache_is_never_unpickled(registries, tmp_path):
    a, _ = registries
    cache = tmp_path / "cache"
    model_cache._MEMORY.clear()
    genuine = _weights(load_version(a, "1", cache))
    (model_file,) = cache.rglob("model.pth")
    marker = tmp_path / "pwned"
    _plant(model_file, marker)
    model_cache._MEMORY.clear()
    reloaded = load_version(a, "1", cache)  # the checksum fails: downloaded again instead
    assert not marker.exists()
    assert _weights(reloaded) == genuine


def test_a_tampered_artifact_in_the_registry_is_refused_before_loading(registries, tmp_path):
    a, _ = registries
    source = _local(a.client.get_model_version_download_uri(a.model_name, "1"))
    (model_file,) = source.rglob("model.pth")
    original = model_file.read_bytes()
    marker = tmp_path / "pwned"
    _plant(model_file, marker)
    model_cache._MEMORY.clear()
    try:
        with pytest.raises(ArtifactMismatch, match="do not match the checksum recorded"):
            load_version(a, "1", tmp_path / "fresh-cache")
        assert not marker.exists()
    finally:
        model_file.write_bytes(original)


def test_mlflow_write_access_alone_cannot_get_a_pickle_loaded(registries, tmp_path, monkeypatch):
    """Issue 25: whoever can write to MLflow registers a pickle, records its checksum,
    tags it `passed` and moves `champion`. Without the platform's signing key the verdict
    does not verify: the version is neither served nor loaded (not even downloaded), and
    the planted pickle never runs. With the platform's key, a copy of a genuine version
    re-signed by someone else's key is refused the same way."""
    from nids_core.model.artifacts import artifact_digest
    from nids_core.registry.versions import CHECKSUM_TAG, GATE_TAG, UnsignedModel

    a, _ = registries
    genuine = _local(a.client.get_model_version_download_uri(a.model_name, "1"))
    forged_dir = tmp_path / "forged"
    shutil.copytree(genuine, forged_dir)
    (model_file,) = forged_dir.rglob("model.pth")
    marker = tmp_path / "pwned"
    _plant(model_file, marker)
    mv = a.client.create_model_version(a.model_name, str(forged_dir), run_id=None)
    forged = str(mv.version)
    a.client.set_model_version_tag(a.model_name, forged, CHECKSUM_TAG, artifact_digest(forged_dir))
    a.client.set_model_version_tag(a.model_name, forged, GATE_TAG, "passed")
    a.client.set_model_version_tag(a.model_name, forged, "nids.gate_signature", "0" * 64)
    a.client.set_registered_model_alias(a.model_name, "champion", forged)
    model_cache._MEMORY.clear()
    try:
        with pytest.raises(GateNotPassed, match="promotion gate is 'unsigned'"):
            served_champion(a, tmp_path / "cache")
        with pytest.raises(UnsignedModel, match="no gate verdict signed with this platform"):
            load_version(a, forged, tmp_path / "cache")
        # A registry holding another key (an attacker's) signs; this platform's refuses it.
        other = ModelRegistry(a.tracking_uri, a.model_name, signing_key="attacker-key-0123456789")
        other.mark_gate(forged, True)
        with pytest.raises(UnsignedModel):
            load_version(a, forged, tmp_path / "cache")
        assert not marker.exists()
        assert not list((tmp_path / "cache").rglob("model.pth"))  # never downloaded
        a.client.set_registered_model_alias(a.model_name, "champion", "1")
        version = served_champion(a, tmp_path / "cache").version  # the genuine one still serves
        assert version == "1"
        # Nor does promoting need only MLflow: without the key nothing is signed.
        monkeypatch.delenv("NIDS_MODEL_SIGNING_KEY")
        from nids_core.registry.signing import SigningKeyMissing

        with pytest.raises(SigningKeyMissing, match="NIDS_MODEL_SIGNING_KEY is not set"):
            ModelRegistry(a.tracking_uri, a.model_name).mark_gate(forged, True)
    finally:
        a.client.set_registered_model_alias(a.model_name, "champion", "1")


def test_downloads_resolve_through_the_explicit_registry_not_the_process_default(
    registries, tmp_path, monkeypatch
):
    a, _ = registries
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    model_cache._MEMORY.clear()
    load_version(a, "1", tmp_path / "cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no ./mlflow.db, ./mlruns


@pytest.mark.slow
def test_a_broken_champion_does_not_block_training_a_challenger(flows, tmp_path, broker, topic):
    uri = _store(tmp_path / "registry", "nids-gnn")
    champion = _train(uri, "nids-gnn", flows, seed=0, passed=True)
    registry = ModelRegistry(uri, "nids-gnn")
    registry.promote(champion)
    shutil.rmtree(_local(registry.client.get_model_version_download_uri("nids-gnn", champion)))
    resources = make_resources(
        broker,
        topic,
        tmp_path,
        tracking_uri=uri,
        model_settings={"max_epochs": 15, "patience": 5, "hidden": 16, "lono_seeds": 1},
        serving={"model_cache_dir": str(tmp_path / "cache")},
    )
    resources["cold_store"].store().write_frame(TRAINING_SET_PATH, flows)
    with DagsterInstance.ephemeral() as instance:
        result = materialize([gnn_model], resources=resources, instance=instance)
        assert result.success
        check = instance.get_latest_asset_check_evaluation_record(
            AssetCheckKey(AssetKey("gnn_model"), "gate_not_worse_than_champion")
        )
    detail = check.event.dagster_event.event_specific_data.metadata["detail"].value
    assert f"champion version {champion} could not be loaded" in detail
    assert str(registry.version_by_alias("challenger").version) == "2"


def test_an_unreachable_registry_makes_the_scoring_sensor_wait_and_say_so(
    broker, topic, tmp_path, monkeypatch
):
    from nids_devkit.broker import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    dead = f"http://127.0.0.1:{free_port()}"
    defs = build_definitions(make_resources(broker, topic, tmp_path, tracking_uri=dead))
    result = _scoring_tick_after_a_batch(defs)
    assert isinstance(result, SensorResult) and not result.run_requests
    assert result.skip_reason.skip_message.startswith("model registry locked or unreachable")
    assert '"covered": 0' in result.cursor  # nothing counted as scored: the batch waits


def test_a_locked_mlflow_store_makes_the_scoring_sensor_wait_and_say_so(
    registries, broker, topic, tmp_path
):
    """Issue 25: another process holding the SQLite store's write lock made every tick
    raise `database is locked`; the tick now skips, saying why, and scores once it is free."""
    import sqlite3

    a, _ = registries
    path = a.tracking_uri.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # as a long migration or a stuck writer would
    defs = build_definitions(
        make_resources(
            broker, topic, tmp_path, tracking_uri=a.tracking_uri, model_name=a.model_name
        )
    )
    try:
        result = _scoring_tick_after_a_batch(defs)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(result, SensorResult) and not result.run_requests
    assert result.skip_reason.skip_message.startswith("model registry locked or unreachable")
    assert "locked" in result.skip_reason.skip_message
    again = _scoring_tick_after_a_batch(defs)
    assert [r.tags["nids/champion"] for r in again.run_requests] == ["1"]


def _scoring_tick_after_a_batch(defs):
    """One scoring-sensor tick on a fresh instance where a batch has just reached the hot
    table, so the sensor has something to score and asks the registry."""
    with DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(AssetMaterialization("hot_flows"))
        with build_sensor_context(
            instance=instance, resources=defs.resources, definitions=defs
        ) as ctx:
            return defs.resolve_sensor_def("scoring_sensor")(ctx)


def test_the_signing_key_must_be_a_real_value_from_the_environment(monkeypatch):
    from nids_core.registry.signing import SigningKeyMissing, signing_key
    from nids_resources.from_env import model_registry_from_env
    from nids_resources.settings import SettingError

    with pytest.raises(SigningKeyMissing, match="passed by name, not by value"):
        signing_key("NIDS_MODEL_SIGNING_KEY")  # an unresolved EnvVar holds the name
    with pytest.raises(SigningKeyMissing, match="shorter than 16 characters"):
        signing_key("short")
    monkeypatch.delenv("NIDS_MODEL_SIGNING_KEY")
    with pytest.raises(SettingError, match="NIDS_MODEL_SIGNING_KEY is not set"):
        model_registry_from_env()  # the code location refuses to load without one
