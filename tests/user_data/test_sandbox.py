"""The sandbox the boot scripts run in (as root): the host's system directories are read-only there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.user_data.bootlab import sandbox


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root (mount namespaces)")
def test_a_write_to_a_host_directory_fails_inside_the_sandbox_and_the_pid_namespace_is_its_own(tmp_path):
    probe = Path("/etc/nemotron-sandbox-probe")
    done = subprocess.run([*sandbox(), "sh", "-c", f"echo $$; touch {probe}"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    assert not probe.exists()
    assert done.stdout.split() == ["1"]  # the script is pid 1 of a new pid namespace
    allowed = tmp_path / "written"
    assert subprocess.run([*sandbox(), "sh", "-c", f"touch {allowed}"], timeout=30).returncode == 0
    assert allowed.exists()  # the test's own directories stay writable
