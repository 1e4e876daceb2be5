"""A real moto server on 127.0.0.1 for the module (each test stages into a bucket of its own), fake credentials,
and no AWS files: nothing here can reach a real endpoint."""

from __future__ import annotations

import itertools

import boto3
import pytest

from tests.moto_server import running_moto_server
from tests.weights.staging import REGION, fake_aws_env

_buckets = itertools.count(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "multi_gb: stages and fetches gigabytes through a local moto server (slow)")


@pytest.fixture(scope="module")
def moto_server():
    """A moto server on 127.0.0.1, port chosen by the system; reset and stopped when the module is done."""
    with running_moto_server() as url:
        yield url


@pytest.fixture
def aws_env(moto_server, tmp_path, monkeypatch):
    """The environment the CLI runs in; the test process gets the same (for in-process calls)."""
    env = fake_aws_env(tmp_path / "home", moto_server)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3(aws_env, moto_server):
    return boto3.client("s3", region_name=REGION, endpoint_url=moto_server, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


@pytest.fixture
def bucket(s3):
    name = f"weights-{next(_buckets)}"
    s3.create_bucket(Bucket=name)
    return name
