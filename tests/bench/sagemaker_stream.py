"""A stand-in for sagemaker-runtime's response stream (botocore's EventStream, which the Stubber cannot build), with
known delays between its events, shared by the bench and the JumpStart endpoint tests."""

from __future__ import annotations

import json
import time


class PayloadStream(dict):
    """Stands in for botocore's EventStream, which the Stubber cannot build.

    While the Stubber validates the response it is a one-member dict, as the API model's event-stream union
    expects; once armed (after add_response) iterating it yields the events, sleeping before each, so the known
    delays are what TTFT and ITL must report.
    """

    def __init__(self, events):
        super().__init__(PayloadPart={"Bytes": b""})
        self._events = events
        self.armed = False

    def __iter__(self):
        if not self.armed:
            return super().__iter__()
        return self._replay()

    def _replay(self):
        for delay, event in self._events:
            time.sleep(delay)
            yield event


def sse(delta=None, finish=None):
    body = {"model": "nemotron-js", "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


def stream_of_tokens(first_delay: float, gap: float, tokens: int):
    """Events: a role chunk at once, then token chunks each split across two PayloadParts."""
    events = [(0.0, {"PayloadPart": {"Bytes": sse({"role": "assistant", "content": ""})}})]
    for i in range(tokens):
        data = sse({"content": f"t{i} "})
        events.append((first_delay if i == 0 else gap, {"PayloadPart": {"Bytes": data[:7]}}))
        events.append((0.0, {"PayloadPart": {"Bytes": data[7:]}}))
    events.append((0.0, {"PayloadPart": {"Bytes": sse({}, "stop") + b"data: [DONE]\n\n"}}))
    return events
