"""Fixtures of the asset tests: both Kafka clients, and definitions over the real services."""

import pytest

from nids_jobs.definitions import build_definitions
from tests.support.deployment import make_resources


@pytest.fixture(params=["kafka-python", "confluent"])
def client_name(request):
    return request.param


@pytest.fixture
def make_defs(broker, topic, tmp_path):
    def _make(**kw):
        return build_definitions(make_resources(broker, topic, tmp_path, **kw))

    return _make
