"""What the jumpstart commands share: where the stacks are, the command's name, and its two kinds of failure."""

from __future__ import annotations

from pathlib import Path

from planner.stack_config import PROJECT

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
PROG = "python -m scripts.jumpstart"
JS_KEY = f"{PROJECT}:jumpstart"


class UsageError(Exception):
    """Bad input: one line, exit 2."""


class Failure(Exception):
    """AWS, the hub or the endpoint failed: one line, exit 1."""

