"""Resources built from the environment when the code location loads.

Each setting is declared once, on its resource field (`setting(env=...)`) or on
`DeploymentSettings`; this module only says which resources there are. A bad value fails
the load with a message naming the variable and the reason, instead of failing later
inside a run.
"""

from nids_resources.kafka import KafkaResource
from nids_resources.mlflow import (
    MlflowTrackingResource,
    ModelRegistryResource,
    ModelSettingsResource,
)
from nids_resources.plausibility import PlausibleTimeResource
from nids_resources.reference import ReferenceCorpusResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.settings import (
    DeploymentSettings,
    SettingError,
    SettingRow,
    from_env,
    setting_rows,
)
from nids_resources.stores import ColdStoreResource, HotStoreResource

# Every class whose fields are settings, in the order docs/configuration.md lists them.
SETTING_MODELS = [
    KafkaResource,
    PlausibleTimeResource,
    HotStoreResource,
    ColdStoreResource,
    MlflowTrackingResource,
    ModelRegistryResource,
    ReferenceCorpusResource,
    ModelSettingsResource,
    ServingSettingsResource,
    DeploymentSettings,
]


def all_settings() -> list[SettingRow]:
    """Every environment variable the platform reads: name, default, meaning."""
    return setting_rows(SETTING_MODELS)


def kafka_from_env() -> KafkaResource:
    return from_env(KafkaResource)


def hot_store_from_env() -> HotStoreResource:
    return from_env(HotStoreResource)


def cold_store_from_env() -> ColdStoreResource:
    return from_env(ColdStoreResource)


def mlflow_tracking_from_env() -> MlflowTrackingResource:
    return from_env(MlflowTrackingResource)


def model_registry_from_env() -> ModelRegistryResource:
    """The registry resource; fails (naming the variable) without a usable signing key:
    nothing could be trained, promoted or served without one."""
    from nids_core.registry.signing import SigningKeyMissing, signing_key

    try:
        signing_key()
    except SigningKeyMissing as exc:
        raise SettingError(str(exc)) from None
    return from_env(ModelRegistryResource)


def model_settings_from_env() -> ModelSettingsResource:
    return from_env(ModelSettingsResource)


def serving_from_env() -> ServingSettingsResource:
    return from_env(ServingSettingsResource)


def plausible_time_from_env() -> PlausibleTimeResource:
    return from_env(PlausibleTimeResource)


def resources_from_env() -> dict:
    """All resources, keyed as the assets name them."""
    cold_store = cold_store_from_env()
    return {
        "kafka": kafka_from_env(),
        "hot_store": hot_store_from_env(),
        "cold_store": cold_store,
        "reference_corpus": from_env(ReferenceCorpusResource, cold_store=cold_store),
        "mlflow_tracking": mlflow_tracking_from_env(),
        "model_registry": model_registry_from_env(),
        "model_settings": model_settings_from_env(),
        "serving": serving_from_env(),
        "plausible_time": plausible_time_from_env(),
    }
