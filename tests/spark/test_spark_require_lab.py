"""The switch CI sets: with NEMOTRON_REQUIRE_LAB=1 a lab that cannot run fails the lab tests, naming why; without it
they skip, saying why (a plain `make test` on a laptop). Runs anywhere: the lab's reason is forced, nothing is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.spark import sparklab

REPO = Path(__file__).resolve().parents[2]
FORCED = "forced for this test: no network namespaces here"

# A test module of its own, outside the suite: the lab fixture as the Spark tests use it, on a machine where the lab
# cannot run (the reason forced), so that only the switch decides between skip and failure.
CONFTEST = f"""
import sys
sys.path.insert(0, {str(REPO)!r})  # the tests package, as pytest puts it there for the suite
from tests.spark import sparklab
sparklab.lab_unavailable = lambda: {FORCED!r}
from tests.spark.sparklab import make_lab  # noqa: F401
"""
TEST = """
def test_needs_the_lab(make_lab):
    make_lab("never", 2, 0)
    raise AssertionError("the lab fixture let a test run where the lab cannot")
"""


def run_pytest(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_uses_the_lab.py").write_text(TEST)
    env = {k: v for k, v in os.environ.items() if k != sparklab.REQUIRE_LAB}
    if require is not None:
        env[sparklab.REQUIRE_LAB] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_without_the_switch_the_lab_tests_skip_saying_why(tmp_path):
    result = run_pytest(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and FORCED in result.stdout


@pytest.mark.parametrize("value", ["", "0"])
def test_an_empty_or_zero_switch_is_off(tmp_path, value):
    result = run_pytest(tmp_path, value)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout


def test_with_the_switch_the_lab_tests_fail_naming_the_reason(tmp_path):
    result = run_pytest(tmp_path, "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "skipped" not in result.stdout
    assert "1 error" in result.stdout  # the fixture fails, so the test errors: never green
    assert f"NEMOTRON_REQUIRE_LAB=1 and the Spark lab cannot run here: {FORCED}" in result.stdout
    assert "the lab fixture let a test run" not in result.stdout


def test_skip_or_fail_follows_the_switch(monkeypatch):
    monkeypatch.delenv(sparklab.REQUIRE_LAB, raising=False)
    with pytest.raises(pytest.skip.Exception, match="netplan not installed"):
        sparklab.skip_or_fail("netplan not installed")
    monkeypatch.setenv(sparklab.REQUIRE_LAB, "1")
    with pytest.raises(pytest.fail.Exception, match="NEMOTRON_REQUIRE_LAB=1 .*: netplan not installed"):
        sparklab.skip_or_fail("netplan not installed")
