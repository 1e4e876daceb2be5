"""What the weights tests share (a helper module, not a test module): the CLI in a subprocess, its environment,
and generated shards."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from scripts.stage_weights.bench import write_shard
from tests.moto_server import REGION, fake_aws_env

REPO = Path(__file__).resolve().parents[2]

__all__ = ["MIB", "REGION", "REPO", "cli", "cli_argv", "cli_json", "fake_aws_env", "sha256_of", "write_shard"]
MIB = 2**20


def cli_argv(*argv: str) -> list[str]:
    return [sys.executable, "-m", "scripts.stage_weights", *argv]


def cli(env: dict[str, str], *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli_argv(*argv), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def cli_json(env: dict[str, str], *argv: str, timeout: float = 300) -> dict:
    done = cli(env, *argv, "--json", timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()
