"""Fixtures for the Spark tests: the lab needs root, `ip netns` and sshd; without them the lab tests skip, saying why,
or fail where NEMOTRON_REQUIRE_LAB=1 (CI) says the lab must run (sparklab.skip_or_fail)."""

from __future__ import annotations

import shutil

import pytest

# make_lab: the lab fixture (it skips, or fails where NEMOTRON_REQUIRE_LAB=1)
from tests.spark.sparklab import make_lab, skip_or_fail  # noqa: F401


@pytest.fixture
def netplan() -> None:
    """`netplan generate` for the tests that validate the rendered file with it (a lab dependency: skips, or fails
    where the lab is required)."""
    if shutil.which("netplan") is None:
        skip_or_fail("netplan not installed: run scripts/install_lab_deps.sh")
