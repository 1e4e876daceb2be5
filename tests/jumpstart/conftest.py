"""Shared fixtures of the JumpStart tests."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tests.library_internals import allow_every_sagemaker_instance_type


@pytest.fixture
def moto_session(monkeypatch):
    """A boto3 session on in-process moto in us-east-1, with no real profile or endpoint in reach. moto refuses ml.p5*
    endpoint configs it does not list; the check is switched off (moto's gap, not our input)."""
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    allow_every_sagemaker_instance_type(monkeypatch)
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")
