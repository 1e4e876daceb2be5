"""A fresh moto account per test, with fake credentials and no way out to a real endpoint."""

from __future__ import annotations

import pytest
from moto import mock_aws

from scripts.teardown import RetryPolicy
from tests.library_internals import allow_every_sagemaker_instance_type


@pytest.fixture
def aws_env(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    # moto 5.2 refuses ml.p5* endpoint configs; the reaper must see the instance types the toolkit uses
    allow_every_sagemaker_instance_type(monkeypatch)


@pytest.fixture
def aws(aws_env):
    with mock_aws():
        yield


class Sleeps(list):
    """Records each sleep instead of sleeping, and moves a fake clock on by it."""

    def __init__(self):
        super().__init__()
        self.now = 0.0

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.now += max(seconds, 0.001)

    def clock(self) -> float:
        return self.now


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def policy(sleeps):
    return RetryPolicy(sleep=sleeps, clock=sleeps.clock, wait_timeout_s=60, poll_interval_s=5)
