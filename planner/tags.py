"""The tags every resource of a stack carries: who owns it, which stack it belongs to, when it expires.

The reaper (planner/reaper.py) and the dead-man switches read them; every target's plan puts them on what it declares.
"""

from __future__ import annotations

from datetime import datetime

from planner.estimates import iso_utc
from planner.stack_config import PROJECT

TAG_STACK = f"{PROJECT}:stack"
TAG_OWNER = f"{PROJECT}:owner"
TAG_EXPIRES_AT = f"{PROJECT}:expires-at"


def stack_tags(stack: str, owner: str, expires_at: datetime) -> dict[str, str]:
    """The stack's tags, in this order: stack, owner, expiry (ISO 8601 UTC)."""
    return {TAG_STACK: stack, TAG_OWNER: owner, TAG_EXPIRES_AT: iso_utc(expires_at)}
