"""A real moto server on 127.0.0.1 behind AWS_ENDPOINT_URL, and the environment a CLI run against it gets: fake
credentials, a region, no AWS files, no instance metadata. Shared by the tests that run the real CLIs end to end
(teardown, stage_weights); nothing here can reach a real endpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

REGION = "us-east-1"


@contextmanager
def running_moto_server() -> Iterator[str]:
    """A moto server on a port the system chooses; its URL. Reset and stopped on the way out."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()


def fake_aws_env(home: Path, endpoint: str, region: str = REGION) -> dict[str, str]:
    """Only what a command needs: fake credentials, a region, the server, a HOME with no AWS files."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": region, "AWS_ENDPOINT_URL": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials"}
