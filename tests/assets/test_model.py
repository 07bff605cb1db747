"""The GNN on real IoT-23 flows: features, split, training, MLflow registry and the gate."""

import shutil
from types import SimpleNamespace

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from dagster import AssetCheckKey, AssetKey

from nids_core.evaluation.lono import leave_one_network_out
from nids_core.model.features import FORBIDDEN_COLUMNS, fit_feature_spec, raw_features, transform
from nids_core.model.flow_graph import build_flow_graph
from nids_core.model.splits import time_split
from nids_core.model.training import TrainConfig, train_gnn
from nids_core.registry.runs import train_evaluate_log
from nids_core.registry.versions import GateNotPassed, ModelRegistry
from nids_core.serving.model_cache import load_version, record_artifact_checksum
from nids_core.training_data.training_set import TRAINING_SET_PATH
from nids_core.zeek.files import read_zeek_file
from nids_jobs.definitions import build_definitions
from tests.support.deployment import iot23, make_resources
from tests.support.model import capture_flows, read_reference_corpus

CAPTURES = (
    "CTU-Malware-Capture-8-1-labeled.csv.gz",  # 10,403 flows, 8,222 attacks
    "CTU-Honeypot-Capture-5-1-labeled.csv.gz",  # 1,374 benign
    "CTU-Honeypot-Capture-7-1-labeled.csv.gz",  # 130 benign
)
FAST = TrainConfig(max_epochs=40, patience=8, hidden=32)


@pytest.fixture(scope="module")
def subset() -> pl.DataFrame:
    return pl.concat([read_zeek_file(iot23(name)).flows for name in CAPTURES])


@pytest.fixture(scope="module")
def split(subset) -> dict[str, pl.DataFrame]:
    flows = time_split(subset)
    return {s: flows.filter(pl.col("split") == s) for s in ("train", "validation", "test")}


# ----------------------------------------------------------------------------- plain Python


def test_features_never_include_addresses_ports_or_timestamps(split):
    spec = fit_feature_spec(split["train"])
    assert not FORBIDDEN_COLUMNS & set(spec.names)
    assert not any(n.split("=")[0] in FORBIDDEN_COLUMNS for n in spec.names)
    test = split["test"]
    moved = test.with_columns(
        pl.lit("10.9.9.9").alias("orig_h"),
        pl.lit("10.8.8.8").alias("resp_h"),
        (pl.col("orig_p") + 1).alias("orig_p"),
        pl.lit(4444, dtype=pl.Int32).alias("resp_p"),
        (pl.col("ts") + pl.duration(days=400)).alias("ts"),
        (pl.col("uid") + "x").alias("uid"),
    )
    assert np.array_equal(transform(test, spec), transform(moved, spec))


def test_split_is_time_ordered_within_each_capture(split):
    both = pl.concat(list(split.values()))
    for (capture,), frame in both.group_by("capture"):
        spans = {
            s: (g["ts"].min(), g["ts"].max()) for (s,), g in frame.group_by("split") if g.height
        }
        assert spans["train"][1] <= spans["validation"][0], capture
        assert spans["validation"][1] <= spans["test"][0], capture
        shares = frame["split"].value_counts(normalize=True)
        test_share = shares.filter(pl.col("split") == "test")["proportion"][0]
        assert abs(test_share - 0.3) < 0.01


def test_scaler_is_fitted_on_training_rows_only(split):
    spec = fit_feature_spec(split["train"])
    raw_train = raw_features(split["train"], spec.services).to_numpy().astype(np.float64)
    assert np.allclose(spec.mean, raw_train.mean(axis=0))
    everything = pl.concat(list(split.values()))
    raw_all = raw_features(everything, spec.services).to_numpy().astype(np.float64)
    assert not np.allclose(spec.mean, raw_all.mean(axis=0))
    # Scaled training rows are centred; scaled test rows are not forced to be.
    assert np.allclose(transform(split["train"], spec).mean(axis=0), 0, atol=1e-3)


def test_graph_has_hosts_as_nodes_and_flows_as_edges(split):
    test = split["test"]
    spec = fit_feature_spec(split["train"])
    one_graph = build_flow_graph(test, transform(test, spec), window=None)
    hosts = pl.concat([test.select("capture", h=c) for c in ("orig_h", "resp_h")]).unique()
    assert one_graph.edge_index.shape == (2, test.height)
    assert one_graph.num_nodes == hosts.height
    windowed = build_flow_graph(test, transform(test, spec))
    assert windowed.num_nodes >= one_graph.num_nodes and windowed.windows > 1


def test_the_network_computes_its_definition_on_a_real_graph(split):
    """The layers and head, computed per node and per flow without concatenated inputs,
    give what their definition says: each flow's messages both ways, W_m on
    [h_u || e || direction], their mean per node, W_u on [h_v || mean], and the head on
    [h_src || h_dst || e]."""
    import torch

    from nids_core.model.gnn import EGraphSAGE

    test = split["test"]
    spec = fit_feature_spec(split["train"])
    graph = build_flow_graph(test, transform(test, spec))
    torch.manual_seed(0)
    network = EGraphSAGE(spec.width, hidden=16).eval()
    src, dst = graph.edge_index
    e, n = graph.edge_attr, int(graph.num_nodes)

    def layer(lin, x):
        ones = torch.ones(len(src), 1)
        senders, receivers = torch.cat([src, dst]), torch.cat([dst, src])
        inputs = torch.cat([x[senders], torch.cat([e, e]), torch.cat([ones, -ones])], 1)
        messages = torch.relu(lin.message_lin(inputs))
        total = torch.zeros(n, messages.shape[1]).index_add(0, receivers, messages)
        count = torch.bincount(receivers, minlength=n).clamp_min(1).unsqueeze(1)
        return torch.relu(lin.update_lin(torch.cat([x, total / count], 1)))

    with torch.no_grad():
        h = layer(network.layer2, layer(network.layer1, torch.ones(n, 1)))
        expected = network.head(torch.cat([h[src], h[dst], e], 1))
        assert torch.allclose(network(graph), expected, atol=1e-5)


def test_the_forest_scores_are_predict_probas_and_do_not_depend_on_the_threads(split):
    from nids_core.model import served

    spec = fit_feature_spec(split["train"])
    forest = served.fit_forest(split["train"], spec, None, seed=0, trees=20)
    matrix = served.served_matrix(split["test"], spec, None)
    scores = served.attack_probability(forest, matrix)
    np.testing.assert_allclose(scores, forest.predict_proba(matrix)[:, 1], rtol=0, atol=1e-12)
    assert 0 < (scores >= 0.5).sum() < len(scores)
    for _ in range(3):
        assert np.array_equal(served.attack_probability(forest, matrix), scores)


def test_early_stopping_restores_the_best_epoch(split):
    # Labels shuffled in training: validation loss soon rises while training loss falls.
    rng = np.random.default_rng(1)
    noisy = split["train"].with_columns(
        pl.Series("label", rng.permutation(split["train"]["label"].to_numpy()))
    )
    config = TrainConfig(max_epochs=200, patience=5, hidden=16, learning_rate=0.02)
    result = train_gnn(noisy, split["validation"], config)
    losses = [row["val_loss"] for row in result.history]
    assert result.epochs_run == len(losses) < 200  # stopped early
    assert result.epochs_run - result.best_epoch == 5
    assert result.best_val_loss == pytest.approx(min(losses), rel=1e-4, abs=1e-6)
    assert result.best_val_loss == losses[result.best_epoch - 1]
    assert losses[-1] > result.best_val_loss  # the last epoch was worse than the kept one
    # The scorer holds the best epoch's weights: its validation loss is the best one.
    import torch

    scorer = result.scorer
    from nids_core.model.features import attack_labels
    from nids_core.model.training import class_weights

    y_train = attack_labels(noisy)
    graph = scorer.graph(split["validation"], attack_labels(split["validation"]))
    with torch.no_grad():
        loss = torch.nn.CrossEntropyLoss(weight=class_weights(y_train))(scorer(graph), graph.y)
    assert float(loss) == pytest.approx(result.best_val_loss, rel=1e-4, abs=1e-7)
    assert float(loss) < losses[-1]


def test_training_is_seeded(split):
    # One thread for training and scoring: alone on the machine two runs are bit-identical,
    # but beside a busy xdist worker multi-threaded sums put a few flows' scores ~4e-6 apart.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = train_gnn(split["train"], split["validation"], FAST)
        b = train_gnn(split["train"], split["validation"], FAST)
        other = train_gnn(
            split["train"], split["validation"], TrainConfig(**{**FAST.__dict__, "seed": 1})
        )
        scores, again, others = (m.scorer.score(split["test"]) for m in (a, b, other))
    finally:
        torch.set_num_threads(threads)
    assert a.best_epoch == b.best_epoch
    # The same seed trains the same model (equal to 1e-6), another seed another model.
    np.testing.assert_allclose(again, scores, rtol=0, atol=1e-6)
    assert np.abs(others - scores).max() > 1e-3


# ----------------------------------------------------------------------------- with MLflow


def test_logged_model_loads_back_with_identical_predictions(split, mlflow_server, tmp_path):
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_experiment("roundtrip")
    training = pl.concat(list(split.values()))
    with mlflow.start_run() as run:
        result = train_evaluate_log(training, FAST, registered_model_name="roundtrip-gnn")
    registry = ModelRegistry(mlflow_server.url, "roundtrip-gnn")
    record_artifact_checksum(registry, result.model_version)
    registry.mark_gate(result.model_version, True)
    registry.promote(result.model_version)
    champion = registry.version_by_alias("champion").version
    loaded = load_version(registry, champion, tmp_path / "cache")
    expected = result.result.scorer.score(split["test"])
    assert np.array_equal(loaded.score(split["test"]), expected)
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluation")
    }
    assert {
        "evaluation/report.json",
        "evaluation/confusion_matrix.png",
        "evaluation/pr_curve.png",
    } <= artifacts
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_loss")
    assert len(history) == result.result.epochs_run
    assert "baseline_test_macro_f1" in mlflow.get_run(run.info.run_id).data.metrics


@pytest.mark.slow
def test_training_job_gate_promotion_and_rollback(broker, topic, tmp_path, instance, mlflow_server):
    """Real captures as the reference corpus, then the training job: the first model
    promotes on absolute thresholds; a model trained on shuffled labels fails the gate and
    the champion stays; a good retrain promotes; rollback restores."""
    reference = tmp_path / "reference"
    reference.mkdir()
    for n in CAPTURES:
        shutil.copy(iot23(n), reference / n)
    name = f"gnn-{topic.rsplit('.', 1)[-1]}"
    defs = build_definitions(
        make_resources(
            broker,
            topic,
            tmp_path,
            tracking_uri=mlflow_server.url,
            model_name=name,
            model_settings={"max_epochs": 40, "patience": 8, "hidden": 32},
            reference=[reference],
        )
    )
    read_reference_corpus(defs, instance)
    registry = ModelRegistry(mlflow_server.url, name)
    job = defs.resolve_job_def("training_job")

    first = job.execute_in_process(instance=instance, raise_on_error=False)
    assert first.success
    assert registry.version_by_alias("champion").version == "1"
    md = instance.get_latest_materialization_event(AssetKey("gnn_model")).asset_materialization
    meta = {k: v.value for k, v in md.metadata.items()}
    assert meta["gate"] == "passed" and meta["test_macro_f1"] >= 0.95
    assert "/#/experiments/" in meta["mlflow_run"]
    not_worse = instance.get_latest_asset_check_evaluation_record(
        AssetCheckKey(AssetKey("gnn_model"), "gate_not_worse_than_champion")
    )
    assert not_worse.status.value == "SUCCEEDED"
    lono = instance.get_latest_asset_check_evaluation_record(
        AssetCheckKey(AssetKey("gnn_model"), "gate_lono_vs_baseline")
    )
    lono_md = lono.event.dagster_event.event_specific_data.metadata
    assert lono.status.value == "SUCCEEDED"  # only 8-1 of the three has attacks
    assert "not measurable" in lono_md["detail"].value
    ts_meta = instance.get_latest_materialization_event(AssetKey("training_set"))
    assert ts_meta.asset_materialization.metadata["test_rows"].value > 0

    # The champion, loaded from the registry, reproduces the logged test metric.
    store = defs.resources["cold_store"].store()
    frame = store.read_frame(TRAINING_SET_PATH)
    test = frame.filter(pl.col("split") == "test")
    from nids_core.model.features import attack_labels
    from nids_core.model.metrics import evaluate

    champion = load_version(registry, "1", tmp_path / "cache")
    recomputed = evaluate(attack_labels(test), champion.score(test), champion.threshold)
    assert recomputed["macro_f1"] == pytest.approx(meta["test_macro_f1"], abs=1e-5)

    # A deliberately bad model: the same rows with shuffled labels.
    rng = np.random.default_rng(0)
    shuffled = frame.with_columns(pl.Series("label", rng.permutation(frame["label"].to_numpy())))
    store.write_frame(TRAINING_SET_PATH, shuffled)
    bad = job.execute_in_process(
        instance=instance,
        asset_selection=[AssetKey("gnn_model"), AssetKey("champion_model")],
        raise_on_error=False,
    )
    assert not bad.success
    assert registry.version_by_alias("challenger").version == "2"
    assert registry.version_by_alias("champion").version == "1"
    gate = instance.get_latest_asset_check_evaluation_record(
        AssetCheckKey(AssetKey("gnn_model"), "gate_macro_f1")
    )
    assert gate.status.value == "FAILED"
    with pytest.raises(GateNotPassed):
        registry.promote("2")
    with pytest.raises(GateNotPassed, match="has not passed the promotion gate"):
        registry.rollback("2")

    # A good retrain promotes over the champion; rollback moves the alias back.
    assert job.execute_in_process(instance=instance, raise_on_error=False).success
    assert registry.version_by_alias("champion").version == "3"
    back = registry.rollback()
    assert (back.version, back.previous) == ("1", "3")
    assert registry.version_by_alias("champion").version == "1"


def test_leave_one_network_out_holds_out_each_network_with_attacks_for_every_seed():
    flows = pl.concat(
        [
            read_zeek_file(iot23(n)).flows
            for n in (
                "CTU-Malware-Capture-20-1-labeled.csv.gz",
                "CTU-Malware-Capture-21-1-labeled.csv.gz",
                "CTU-Honeypot-Capture-7-1-labeled.csv.gz",
            )
        ]
    )
    seen: list[tuple[str, int]] = []
    result = leave_one_network_out(
        flows, FAST, seeds=(0, 1), on_run=lambda name, seed, *_: seen.append((name, seed))
    )
    assert seen == [
        ("CTU-Malware-Capture-20-1", 0),
        ("CTU-Malware-Capture-20-1", 1),
        ("CTU-Malware-Capture-21-1", 0),
        ("CTU-Malware-Capture-21-1", 1),
    ]
    for name, by_seed in result.runs.items():
        held_out = flows.filter(pl.col("capture") == name)
        for metrics in by_seed.values():
            assert {m["flows"] for m in metrics.values()} == {held_out.height}
            assert metrics["served"]["attacks"] == (held_out["label"] == "malicious").sum()
    per = result.per_network("served")
    summary = result.summary("served")
    assert summary["mean"] == pytest.approx(np.mean(list(per.values())))
    assert summary["worst"] == min(per.values())
    per_seed = [np.mean([result.runs[n][s]["served"]["macro_f1"] for n in per]) for s in (0, 1)]
    assert summary["seed_sd"] == pytest.approx(np.std(per_seed))
    single = flows.filter(pl.col("capture") == "CTU-Malware-Capture-20-1")
    assert leave_one_network_out(single, FAST).runs == {}


def test_registry_on_a_local_sqlite_store(split, tmp_path):
    """The embedded default (no server) returns versions as int: promotion, loading by
    alias, the champion cache and rollback must all work there too."""
    from nids_core.serving.model_cache import served_champion

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("sqlite-store", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_experiment("sqlite-store")
    training = pl.concat(list(split.values()))
    registry = ModelRegistry(uri, "local-gnn")
    versions = []
    for seed in (0, 1):
        with mlflow.start_run():
            run = train_evaluate_log(
                training,
                TrainConfig(**{**FAST.__dict__, "seed": seed}),
                registered_model_name="local-gnn",
            )
        record_artifact_checksum(registry, run.model_version)
        registry.mark_gate(run.model_version, True)
        versions.append(run.model_version)
        registry.promote(run.model_version)
    assert versions == ["1", "2"]
    served = served_champion(registry, tmp_path / "cache")
    assert (served.version, served.gate) == ("2", "passed")
    scorer = served.scorer
    fresh = load_version(registry, "2", tmp_path / "other-cache")
    assert np.array_equal(scorer.score(split["test"]), fresh.score(split["test"]))
    assert registry.rollback().version == "1"
    assert str(registry.version_by_alias("champion").version) == "1"


@pytest.mark.slow
def test_the_lono_gate_blocks_a_graph_only_model_and_passes_the_served_one(tmp_path):
    """Four real networks, three with attacks. A deliberately graph-only model (its head
    sees only the hosts' embeddings, no flow features; served alone) does worse than the
    flow-only baseline on the held-out networks: the blocking gate check fails and nothing
    is promoted. The served model, on the same rows, passes it."""
    from dagster import DagsterInstance, materialize

    from nids_assets.model import champion_model, gnn_model

    flows = capture_flows(
        "CTU-Malware-Capture-8-1-labeled.csv.gz",
        "CTU-Malware-Capture-20-1-labeled.csv.gz",
        "CTU-Malware-Capture-21-1-labeled.csv.gz",
        "CTU-Honeypot-Capture-5-1-labeled.csv.gz",
    )
    fast = {"max_epochs": 40, "patience": 8, "hidden": 32, "lono_seeds": 1}
    for settings, passes in (
        ({**fast, "serve": "gnn", "head_flow_features": False}, False),
        (fast, True),
    ):
        root = tmp_path / settings.get("serve", "hybrid")
        no_broker = SimpleNamespace(bootstrap_servers="127.0.0.1:9")  # no Kafka here
        resources = make_resources(
            no_broker,
            "t",
            root,
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            model_settings=settings,
        )
        resources["cold_store"].store().write_frame(TRAINING_SET_PATH, flows)
        with DagsterInstance.ephemeral() as instance:
            result = materialize(
                [gnn_model, champion_model],
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )
            check = instance.get_latest_asset_check_evaluation_record(
                AssetCheckKey(AssetKey("gnn_model"), "gate_lono_vs_baseline")
            )
        md = check.event.dagster_event.event_specific_data.metadata
        print(settings, md["detail"].value)  # the figures, for the log (pytest -s)
        assert "3 networks" in md["detail"].value, md["detail"].value
        assert (check.status.value == "SUCCEEDED") is passes, md["detail"].value
        assert (md["value"].value >= md["threshold"].value) is passes
        champion = resources["model_registry"].registry().version_by_alias("champion")
        assert (champion is not None) is passes
        assert result.success is passes


def test_host_context_is_shares_of_the_window_and_ignores_who_the_hosts_are():
    from nids_core.model.host_context import CONTEXT_NAMES, context_features

    flows = read_zeek_file(iot23("CTU-Malware-Capture-8-1-labeled.csv.gz")).flows
    window = FAST.window
    features = context_features(flows, window)
    assert features.shape == (flows.height, len(CONTEXT_NAMES))
    assert features.min() >= 0 and features.max() <= 1
    # Renaming every host (another network's addresses) changes nothing: context is about
    # behaviour, not identity.
    renamed = flows.with_columns(
        ("10.9." + pl.col("orig_h")).alias("orig_h"), ("10.9." + pl.col("resp_h")).alias("resp_h")
    )
    assert np.array_equal(context_features(renamed, window), features)
    # Row order is the flows' order.
    reversed_rows = context_features(flows.reverse(), window)
    assert np.array_equal(reversed_rows[::-1], features)
