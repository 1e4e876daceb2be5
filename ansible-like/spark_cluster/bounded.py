"""Bounded waiting: every wait loop in the toolkit and the lab ends by time and by count."""

from __future__ import annotations

import time
from collections.abc import Iterator


def attempts(timeout_s: float, interval_s: float) -> Iterator[int]:
    """Yield attempt numbers, sleeping `interval_s` between them, at most `timeout_s / interval_s + 1` times and
    never past the deadline. The caller breaks out when its condition holds."""
    deadline = time.monotonic() + timeout_s
    for attempt in range(int(timeout_s / interval_s) + 1):
        if attempt:
            if time.monotonic() + interval_s > deadline:
                return
            time.sleep(interval_s)
        yield attempt
