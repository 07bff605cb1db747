"""MLflow: the tracking run (dagster-mlflow), the model registry, and model settings."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr, field_validator

from nids_core.evaluation.gate import GateThresholds
from nids_core.registry.names import MODEL_NAME
from nids_resources.settings import setting

if TYPE_CHECKING:  # both pull in MLflow or torch; imported where used
    from nids_core.model.training import TrainConfig
    from nids_core.registry.versions import ModelRegistry


TRACKING_URI_SCHEMES = ("http://", "https://", "sqlite:///", "postgresql", "databricks")


def tracking_uri_setting() -> Any:
    return setting(
        "sqlite:///var/mlflow/mlflow.db",
        env="MLFLOW_TRACKING_URI",
        description="MLflow tracking and registry URI (http://host:port for a server)",
    )


def check_tracking_uri(uri: str) -> str:
    if not uri.startswith(TRACKING_URI_SCHEMES):
        raise ValueError("use http(s)://host:port, sqlite:///path or postgresql://")
    return uri


def _ensure_local_sqlite_dir(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


class MlflowTrackingResource(ConfigurableResource):
    """dagster-mlflow's tracking resource, configured the Pythonic way: every step of one
    Dagster run logs into one MLflow run (found again by its `dagster_run_id` tag), in the
    given experiment. The experiment is created with the configured artifact location."""

    experiment_name: str = setting(
        MODEL_NAME,
        env="NIDS_MLFLOW_EXPERIMENT",
        description="MLflow experiment of the training runs",
    )
    mlflow_tracking_uri: str = tracking_uri_setting()
    artifact_location: str | None = setting(
        "var/mlflow/artifacts",
        env="NIDS_MLFLOW_ARTIFACTS",
        description="Artifact root of a new experiment (path or s3://); a server decides its own",
    )

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return check_tracking_uri(value)

    _tracking: Any = PrivateAttr(default=None)  # dagster_mlflow.resources.MlFlow
    _init_context: InitResourceContext | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Sensors and schedules also initialize resources, outside any run: the MLflow run
        # is only started when a step first uses it.
        self._init_context = context

    def _ensure_experiment(self) -> None:
        import mlflow

        _ensure_local_sqlite_dir(self.mlflow_tracking_uri)
        mlflow.set_tracking_uri(self.mlflow_tracking_uri)
        if mlflow.get_experiment_by_name(self.experiment_name) is None:
            location = self.artifact_location
            if location and "://" not in location:
                Path(location).mkdir(parents=True, exist_ok=True)
                location = Path(location).resolve().as_uri()
            mlflow.create_experiment(self.experiment_name, artifact_location=location)

    @property
    def tracking(self) -> Any:
        """dagster-mlflow's handle (MlFlow); its MLflow run is the active run here."""
        if self._tracking is None:
            from dagster_mlflow.resources import MlFlow

            ctx = self._init_context
            if ctx is None or ctx.run is None:
                raise RuntimeError("the MLflow tracking resource is used outside a run")
            self._ensure_experiment()
            self._tracking = MlFlow(ctx)
        return self._tracking

    @contextmanager
    def run(self) -> Iterator[Any]:
        """This Dagster run's MLflow run, active inside the block: dagster-mlflow finds or
        creates it (tag `dagster_run_id`), so a retried step logs into the same run; it is
        ended FINISHED, or FAILED when the block raises. The one place the platform drives
        MLflow's process-wide active run."""
        import mlflow

        tracking = self.tracking  # dagster-mlflow starts or resumes the run here
        active = mlflow.active_run()
        if active is None:  # a retried step, after the block ended the run
            found = mlflow.search_runs(
                experiment_ids=[tracking.experiment.experiment_id],
                filter_string=f"tags.dagster_run_id = '{tracking.dagster_run_id}'",
                output_format="list",
                max_results=1,
            )
            active = mlflow.start_run(
                run_id=found[0].info.run_id if found else None,
                experiment_id=tracking.experiment.experiment_id,
                tags={"dagster_run_id": tracking.dagster_run_id},
            )
        try:
            yield active
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run()


class ModelRegistryResource(ConfigurableResource):
    """The MLflow model registry: versions and the `challenger` / `champion` aliases."""

    tracking_uri: str = tracking_uri_setting()
    model_name: str = setting(
        MODEL_NAME, env="NIDS_MODEL_NAME", description="Registered model name"
    )
    ui_url: str = setting(
        "http://127.0.0.1:5000",
        env="NIDS_MLFLOW_UI_URL",
        description="MLflow UI address used in Dagster links",
    )
    signing_key: str | None = setting(
        None,
        env="NIDS_MODEL_SIGNING_KEY",
        description="Key (16+ characters) that signs gate verdicts; a model version not "
        "signed with it is never loaded (required)",
        secret=True,
    )

    @field_validator("tracking_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return check_tracking_uri(value)

    def registry(self) -> "ModelRegistry":
        from nids_core.registry.versions import ModelRegistry

        _ensure_local_sqlite_dir(self.tracking_uri)
        key = self.signing_key
        if isinstance(key, EnvVar):
            # Outside a Dagster run (the CLI) the field still holds the variable's name.
            key = key.get_value()
        return ModelRegistry(self.tracking_uri, self.model_name, key)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        base = self.tracking_uri if self.tracking_uri.startswith("http") else self.ui_url
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


class ModelSettingsResource(ConfigurableResource):
    """Training window, training hyper-parameters and the promotion gate's thresholds."""

    training_days: int = setting(
        21,
        env="NIDS_TRAINING_DAYS",
        description="Cold days whose analyst-labelled flows are trained on",
        ge=1,
    )
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    test_fraction: float = Field(default=0.3, gt=0, lt=1)
    max_epochs: int = setting(
        300, env="NIDS_TRAIN_MAX_EPOCHS", description="Most training epochs", ge=1
    )
    patience: int = setting(
        30, env="NIDS_TRAIN_PATIENCE", description="Early-stopping patience in epochs", ge=1
    )
    hidden: int = Field(default=64, ge=4)
    learning_rate: float = Field(default=0.002, gt=0)
    graph_window_minutes: float = setting(
        15.0,
        env="NIDS_GRAPH_WINDOW_MINUTES",
        description="Time window of one flow graph, training and scoring (0: one graph)",
        ge=0,
    )
    seed: int = Field(default=0)
    lono_seeds: int = setting(
        3,
        env="NIDS_TRAIN_LONO_SEEDS",
        description="Seeds per held-out network in the leave-one-network-out promotion gate",
        ge=1,
    )
    serve: str = Field(
        default="auto",
        pattern="^(auto|flow_trees|context_trees|gnn|mean_fusion|max_fusion|hybrid)$",
        description="What is served: auto (the candidate that does best on held-out "
        "networks, the simplest unless another is better), or one candidate: flow_trees, "
        "context_trees, gnn, mean_fusion, max_fusion (hybrid = max_fusion).",
    )
    head_flow_features: bool = Field(
        default=True,
        description="False: the graph model's head sees only the hosts' embeddings (a "
        "graph-only model, for experiments).",
    )
    min_accuracy: float = setting(
        0.95,
        env="NIDS_GATE_MIN_ACCURACY",
        description="Promotion gate: least test accuracy",
        ge=0,
        le=1,
    )
    min_macro_f1: float = setting(
        0.95,
        env="NIDS_GATE_MIN_MACRO_F1",
        description="Promotion gate: least test macro F1",
        ge=0,
        le=1,
    )
    max_benign_fpr: float = setting(
        0.01,
        env="NIDS_GATE_MAX_BENIGN_FPR",
        description="Promotion gate: largest benign false-positive rate",
        ge=0,
        le=1,
    )
    max_macro_f1_drop: float = setting(
        0.005,
        env="NIDS_GATE_MAX_F1_DROP",
        description="Promotion gate: largest macro-F1 drop against the champion",
        ge=0,
        le=1,
    )

    def train_config(self) -> "TrainConfig":
        from nids_core.model.training import TrainConfig

        return TrainConfig(
            hidden=self.hidden,
            learning_rate=self.learning_rate,
            max_epochs=self.max_epochs,
            patience=self.patience,
            seed=self.seed,
            # The setting is minutes; from here on the window is one type (graph_window).
            window=timedelta(minutes=self.graph_window_minutes)
            if self.graph_window_minutes > 0
            else None,
            serve=self.serve,
            head_flow_features=self.head_flow_features,
            # A graph-only model has no flow path either.
            flow_head=self.head_flow_features,
            lono_seeds=self.lono_seeds,
        )

    def thresholds(self) -> GateThresholds:
        return GateThresholds(
            self.min_accuracy, self.min_macro_f1, self.max_benign_fpr, self.max_macro_f1_drop
        )
