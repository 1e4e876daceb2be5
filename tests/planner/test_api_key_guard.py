"""The API-key guard every target runs before `vllm serve`, executed by real shells (bash for EC2 and EKS, sh for
the Spark launch): no key or a blank one stops the launch at once with one line; a key lets it go on."""

from __future__ import annotations

import os
import subprocess

import pytest

from planner.serving import API_KEY_GUARD

BLANK_OR_MISSING = [None, "", " ", "\n", "\t \n"]


def run(shell: str, key: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
    if key is not None:
        env["VLLM_API_KEY"] = key
    return subprocess.run([shell, "-c", f"set -eu\n{API_KEY_GUARD}\necho launched"], env=env, capture_output=True,
                          text=True, timeout=10)


@pytest.mark.parametrize("shell", ["bash", "sh"])
@pytest.mark.parametrize("key", BLANK_OR_MISSING, ids=repr)
def test_no_key_or_a_blank_one_stops_the_launch_with_one_line(shell, key):
    done = run(shell, key)
    assert done.returncode == 78 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "nemotron: VLLM_API_KEY is unset or empty: refusing to start vLLM without an API key"]


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_a_key_lets_the_launch_go_on(shell):
    done = run(shell, "k3y with spaces")
    assert (done.returncode, done.stdout, done.stderr) == (0, "launched\n", "")
