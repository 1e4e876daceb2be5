"""Fixtures for the Spark tests: the lab needs root and `ip netns`; without them the lab tests skip, saying why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers module next to this file

from sparklab import Lab, lab, lab_unavailable  # noqa: E402


@pytest.fixture(scope="module")
def make_lab():
    """Build labs for a test module (tear down leftovers of a crashed run of the same name first); all are
    torn down at the end of the module, by pid, and none may be left behind."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    made = []

    def build(name: str, count: int, index: int, **kwargs) -> Lab:
        lab.down(name)
        layout = lab.up(count, name, index, **kwargs)
        made.append(name)
        return Lab(layout)

    yield build
    for name in made:
        lab.down(name)
        assert not [ns for ns in lab.namespaces() if ns.startswith(f"{name}-")], f"lab {name} left namespaces"
