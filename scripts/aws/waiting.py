"""Waiting for AWS: botocore's waiter definitions where AWS has them, and one bounded loop for every wait.

`waiter_state` makes one poll of a botocore waiter (AWS's own definition of what "deleted" or "in service" looks
like: the operation and its acceptors) and says which state it reached. `wait_until` is the only polling loop of the
scripts: bounded in time (`timeout_s`) and in count (one poll per interval, plus the first), with an injectable
clock and sleep (tests move a fake clock) and a hook after each poll (progress lines). botocore's own
`Waiter.wait` is not used as the loop: it sleeps on the real clock, reports nothing while it waits and judges one
resource at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from botocore import xform_name
from botocore.exceptions import ClientError

T = TypeVar("T")

SUCCESS, FAILURE, RETRY = "success", "failure", "retry"


def waiter_state(client: Any, waiter_name: str, **params: Any) -> str:
    """One poll of botocore's `waiter_name` waiter (`endpoint_deleted`, `cluster_deleted`, ...): its operation is
    called once with `params` and its acceptors judge the answer: SUCCESS, FAILURE or RETRY. An AWS error that no
    acceptor expects is raised, as the waiter would."""
    config = client.get_waiter(waiter_name).config
    try:
        response = getattr(client, xform_name(config.operation))(**params)
    except ClientError as err:
        response = err.response
    for acceptor in config.acceptors:
        if acceptor.matcher_func(response):
            return acceptor.state
    if "Error" in response:
        raise ClientError(response, config.operation)
    return RETRY


def most_polls(timeout_s: float, interval_s: float) -> int:
    """The count bound of a wait: the first poll, then one per interval until the timeout."""
    return 1 + (math.ceil(timeout_s / interval_s) if interval_s > 0 else 0)


def wait_until(poll: Callable[[], T], done: Callable[[T], bool], *, timeout_s: float, interval_s: float,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
               on_poll: Callable[[T, float], None] | None = None) -> tuple[T, bool]:
    """Call `poll` until `done(answer)`, `timeout_s` has passed or `most_polls` polls were made, sleeping
    `interval_s` between polls (less before the last, so the last poll falls on the timeout). `on_poll(answer,
    seconds waited)` follows every poll. Returns the last answer and whether it was done. What `poll`, `done` or
    `on_poll` raise goes to the caller (a failed resource ends its wait)."""
    started = clock()
    deadline = started + timeout_s
    bound = most_polls(timeout_s, interval_s)
    polls = 0
    while True:
        answer = poll()
        polls += 1
        now = clock()
        if on_poll is not None:
            on_poll(answer, now - started)
        if done(answer):
            return answer, True
        if now >= deadline or polls >= bound:
            return answer, False
        sleep(min(interval_s, max(deadline - now, 0.0)))
