"""Training the GNN: seeded, class-weighted, early stopping that keeps the best weights."""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
from torch import nn

from nids_core.model.baseline import baseline_scores, train_baseline
from nids_core.model.candidates import candidate_name, combine
from nids_core.model.features import FeatureSpec, attack_labels, fit_feature_spec
from nids_core.model.gnn import EGraphSAGE, FlowScorer, HybridScorer
from nids_core.model.graph_window import DEFAULT_WINDOW, GraphWindow
from nids_core.model.metrics import evaluate
from nids_core.model.served import (
    VALIDATION_TREES,
    fit_forest,
    forest_scores,
    validation_threshold,
)


@dataclass(frozen=True)
class TrainConfig:
    hidden: int = 64
    dropout: float = 0.2
    learning_rate: float = 0.002
    weight_decay: float = 1e-4
    max_epochs: int = 300
    patience: int = 30
    seed: int = 0
    window: GraphWindow = DEFAULT_WINDOW
    threshold: float = 0.5
    flow_head: bool = True
    # What is served (nids_core.model.candidates): "auto" (the candidate that does best on
    # held-out networks), or a candidate's name ("hybrid" = max_fusion).
    serve: str = "auto"
    # False makes the graph head see only the endpoints' embeddings (a graph-only model).
    head_flow_features: bool = True
    # Seeds per held-out network in leave-one-network-out evaluation.
    lono_seeds: int = 3


@dataclass
class TrainResult:
    scorer: FlowScorer
    best_epoch: int
    epochs_run: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(1, self.epochs_run)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(y: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights (balanced), 1.0 for a class that is absent."""
    counts = np.bincount(y, minlength=2).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (2 * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def train_gnn(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    config: TrainConfig = TrainConfig(),
    spec: FeatureSpec | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Fit the feature spec on `train` (unless given), then train full-batch on the train
    graph, stopping when validation loss has not improved for `patience` epochs and
    restoring the weights of the best epoch."""
    if train.height == 0 or validation.height == 0:
        raise ValueError(
            f"need training and validation flows (got {train.height} and {validation.height})"
        )
    seed_everything(config.seed)
    spec = spec or fit_feature_spec(train)
    scorer = FlowScorer(
        EGraphSAGE(
            spec.width,
            config.hidden,
            config.dropout,
            config.flow_head,
            config.head_flow_features,
        ),
        spec,
        config.window,
        config.threshold,
    )
    y_train, y_val = attack_labels(train), attack_labels(validation)
    g_train, g_val = scorer.graph(train, y_train), scorer.graph(validation, y_val)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y_train))
    optimizer = torch.optim.Adam(
        scorer.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    best_state, best_loss, best_epoch = None, float("inf"), 0
    history: list[dict] = []
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        scorer.train()
        optimizer.zero_grad()
        flow_logits, fused_logits = scorer.network.parts(g_train)
        loss = loss_fn(fused_logits, g_train.y)
        if flow_logits is not None:  # the flow path learns to stand on its own
            loss = loss + loss_fn(flow_logits, g_train.y)
        loss.backward()
        optimizer.step()
        scorer.eval()
        with torch.no_grad():
            val_logits = scorer(g_val)
            val_loss = float(
                nn.functional.nll_loss(
                    torch.log_softmax(val_logits, -1), g_val.y, weight=loss_fn.weight
                )
            )
            val_score = torch.softmax(val_logits, -1)[:, 1].numpy()
        row = {
            "epoch": epoch,
            "train_loss": loss.item(),
            "val_loss": val_loss,
            "val_macro_f1": evaluate(y_val, val_score, config.threshold)["macro_f1"],
        }
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(scorer.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    seconds = time.perf_counter() - started
    scorer.load_state_dict(best_state)
    scorer.eval()
    return TrainResult(scorer, best_epoch, epoch, best_loss, history, seconds)


def train_served(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    config: TrainConfig = TrainConfig(),
    on_epoch: Callable[[dict], None] | None = None,
    choice: tuple[str, float] | None = None,
) -> TrainResult:
    """Train the graph model, then the served trees on train and validation rows. `choice`
    (candidate, cut) comes from leave-one-network-out (nids_core.evaluation.lono); without
    it the candidate is `config.serve` ("auto" then meaning max_fusion, what was served
    before selection) at the cut that is best on the validation rows. The result's scorer
    is what gets logged and served; a graph-model-only choice is a plain FlowScorer."""

    wanted = candidate_name(config.serve)
    if choice is None:
        candidate, cut = ("max_fusion" if wanted == "auto" else wanted), None
    else:
        candidate, cut = choice
    result = train_gnn(train, validation, config, on_epoch=on_epoch)
    gnn = result.scorer
    if candidate == "gnn":
        gnn.threshold = gnn.threshold if cut is None else cut
        return result

    started = time.perf_counter()
    forest, flow_forest, threshold = fit_served_trees(
        train, validation, gnn, config, candidate, with_cut=cut is None
    )
    result.scorer = HybridScorer(
        gnn.network,
        gnn.spec,
        gnn.window,
        gnn.threshold,
        forest,
        threshold if cut is None else cut,
        candidate,
        flow_forest,
    )
    result.scorer.eval()
    result.seconds += time.perf_counter() - started
    return result


def fit_served_trees(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    gnn: FlowScorer,
    config: TrainConfig,
    candidate: str = "max_fusion",
    with_cut: bool = True,
):
    """The served context trees and flow-only trees (on train and validation rows), and
    the cut that is best on the validation rows for `candidate`, its trees refitted on the
    training rows only (the served trees have seen the validation rows): used only when no
    cut was chosen over held-out networks."""

    rows = pl.concat([train, validation], how="vertical_relaxed")
    forest = fit_forest(rows, gnn.spec, config.window, config.seed)
    flow_forest = train_baseline(rows, gnn.spec, config.seed)
    flow_forest.set_params(n_jobs=1)
    if not with_cut:
        return forest, flow_forest, None
    early = fit_forest(train, gnn.spec, config.window, config.seed, VALIDATION_TREES)
    early_flow = train_baseline(train, gnn.spec, config.seed)

    scores = combine(
        candidate,
        gnn.score(validation),
        forest_scores(early, validation, gnn.spec, config.window),
        baseline_scores(early_flow, validation, gnn.spec),
    )
    return forest, flow_forest, validation_threshold(attack_labels(validation), scores)
