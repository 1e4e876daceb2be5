"""`smoke` and the endpoint lifecycle it relies on: DescribeEndpoint's state, a bounded wait for InService, and
one chat request (InvokeEndpoint, or the streamed call measured by the benchmark's accumulator)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from planner.estimates import iso_utc
from planner.stack_config import StackFile
from planner.targets.jumpstart import (
    ChatCompletion,
    chat_request,
    endpoint_name_for,
    parse_chat_completion,
)
from scripts.aws import AwsClients, is_not_found, wait_until
from scripts.jumpstart.common import Failure


@dataclass(frozen=True)
class EndpointState:
    """What DescribeEndpoint says about an endpoint."""

    name: str
    status: str
    config_name: str | None
    failure_reason: str | None = None
    variants: tuple[dict, ...] = ()

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "config_name": self.config_name,
                "failure_reason": self.failure_reason,
                "variants": [{k: v for k, v in variant.items() if k in ("VariantName", "CurrentInstanceCount",
                                                                       "DesiredInstanceCount")}
                             for variant in self.variants]}


def endpoint_state(sm: Any, name: str) -> EndpointState | None:
    """The endpoint's state, or None when it does not exist."""
    try:
        found = sm.describe_endpoint(EndpointName=name)
    except ClientError as err:
        if is_not_found(err):
            return None
        raise
    return EndpointState(name, found["EndpointStatus"], found.get("EndpointConfigName"), found.get("FailureReason"),
                         tuple(found.get("ProductionVariants", [])))


class EndpointNotReady(Exception):
    """The endpoint failed, vanished or did not become InService in time."""


def wait_in_service(sm: Any, name: str, timeout_s: float, poll_s: float = 30.0,
                    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                    on_poll: Callable[[EndpointState], None] | None = None) -> EndpointState:
    """Poll DescribeEndpoint (scripts/aws's bounded wait) until InService; EndpointNotReady on Failed, on
    disappearance or after timeout_s."""
    def poll() -> EndpointState:
        state = endpoint_state(sm, name)
        if state is None:
            raise EndpointNotReady(f"endpoint {name} does not exist")
        return state

    def seen(state: EndpointState, _waited: float) -> None:
        if on_poll:
            on_poll(state)
        if state.status in ("Failed", "OutOfService", "Deleting"):
            reason = f": {state.failure_reason}" if state.failure_reason else ""
            raise EndpointNotReady(f"endpoint {name} is {state.status}{reason}")

    state, ready = wait_until(poll, lambda s: s.status == "InService", timeout_s=timeout_s, interval_s=poll_s,
                              sleep=sleep, clock=clock, on_poll=seen)
    if not ready:
        raise EndpointNotReady(f"endpoint {name} is still {state.status} after {timeout_s:g} s")
    return state


@dataclass(frozen=True)
class ChatResult:
    """One smoke request: what came back and how long it took."""

    ok: bool
    latency_s: float
    completion: ChatCompletion | None
    error: str | None = None
    ttft_s: float | None = None  # streamed requests only

    @property
    def tokens_per_s(self) -> float | None:
        c = self.completion
        if not c or not c.completion_tokens or self.latency_s <= 0:
            return None
        return c.completion_tokens / self.latency_s

    def to_json(self) -> dict:
        c = self.completion
        return {"ok": self.ok, "latency_ms": round(self.latency_s * 1000, 1),
                "ttft_ms": None if self.ttft_s is None else round(self.ttft_s * 1000, 1), "error": self.error,
                "prompt_tokens": c.prompt_tokens if c else None,
                "completion_tokens": c.completion_tokens if c else None,
                "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 1),
                "finish_reason": c.finish_reason if c else None, "content": c.content if c else None,
                "model": c.model if c else None}


def invoke_chat(runtime: Any, name: str, body: dict, clock: Callable[[], float] = time.perf_counter) -> ChatResult:
    """One chat request through InvokeEndpoint, timed from send to the whole body read."""
    started = clock()
    try:
        response = runtime.invoke_endpoint(EndpointName=name, ContentType="application/json",
                                           Accept="application/json", Body=json.dumps(body).encode())
        raw = response["Body"].read()
    except ClientError as err:
        error = err.response.get("Error", {})
        return ChatResult(False, clock() - started, None, f"{error.get('Code')}: {error.get('Message', '')}"[:300])
    except BotoCoreError as err:
        return ChatResult(False, clock() - started, None, f"{type(err).__name__}: {err}"[:300])
    latency = clock() - started
    try:
        completion = parse_chat_completion(raw)
    except ValueError as err:
        return ChatResult(False, latency, None, str(err))
    if not (completion.content or completion.reasoning) and not completion.completion_tokens:
        return ChatResult(False, latency, completion, "the answer is empty")
    return ChatResult(True, latency, completion)


def stream_chat(runtime: Any, name: str, body: dict, timeout_s: float) -> ChatResult:
    """The same request streamed (InvokeEndpointWithResponseStream), measured by the benchmark's accumulator."""
    from scripts.bench.targets import SageMakerTarget

    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    target = SageMakerTarget(name, runtime, timeout_s, max_workers=1)
    try:
        result = target.stream_chat_blocking(streamed)
    finally:
        asyncio.run(target.close())
    # Streamed usage carries completion tokens (or they are counted from the chunks); prompt tokens are not kept.
    completion = ChatCompletion(result.content, result.reasoning, result.finish_reason, None, result.output_tokens,
                                result.model)
    return ChatResult(result.ok, result.latency_s or 0.0, completion, result.error, result.ttft_s)


# ---------------------------------------------------------------------------------------------------- smoke


def smoke(stack: StackFile, clients: AwsClients, *, endpoint: str | None, prompt: str, max_tokens: int,
          stream: bool, wait_s: float, timeout_s: float, console: Console | None) -> dict:
    """Check the endpoint is InService (waiting up to wait_s), send one chat request, report what came back."""
    name = endpoint or endpoint_name_for(stack.name)
    sm = clients.client("sagemaker")
    try:
        state = endpoint_state(sm, name)
        if state is None:
            raise Failure(f"endpoint {name} does not exist in {stack.region}; deploy it with `pulumi up -s "
                          f"{stack.name}`")
        if state.status != "InService":
            if wait_s <= 0:
                reason = f": {state.failure_reason}" if state.failure_reason else ""
                raise Failure(f"endpoint {name} is {state.status}{reason}; pass --wait SECONDS to wait for it")

            def progress(s: EndpointState) -> None:
                if console:
                    console.print(f"{iso_utc(datetime.now(UTC))} {name}: {s.status}", highlight=False)

            state = wait_in_service(sm, name, wait_s, on_poll=progress)
    except EndpointNotReady as err:
        raise Failure(str(err)) from None
    except (ClientError, BotoCoreError) as err:
        raise Failure(f"sagemaker:DescribeEndpoint failed: {err}") from None
    body = chat_request(prompt, max_tokens)
    runtime = clients.client("sagemaker-runtime")
    result = stream_chat(runtime, name, body, timeout_s) if stream else invoke_chat(runtime, name, body)
    return {"stack": stack.name, "region": stack.region, "endpoint": state.to_json(), "streamed": stream,
            "request": {"prompt": prompt, "max_tokens": max_tokens}, "result": result.to_json(), "ok": result.ok}


def print_smoke(report: dict, console: Console) -> None:
    r, e = report["result"], report["endpoint"]
    table = Table(title=f"smoke {report['stack']} ({report['region']})", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    counts = ", ".join(f"{v['VariantName']} x {v.get('CurrentInstanceCount', '?')}" for v in e["variants"])
    rows = [("endpoint", f"{e['name']} {e['status']}" + (f" ({counts})" if counts else "")),
            ("latency", f"{r['latency_ms']:,.0f} ms" + (f" (first token {r['ttft_ms']:,.0f} ms)"
                                                         if r["ttft_ms"] is not None else "")),
            ("tokens", f"prompt {r['prompt_tokens'] if r['prompt_tokens'] is not None else 'n/a'}, completion "
                       f"{r['completion_tokens'] if r['completion_tokens'] is not None else 'n/a'}"
                       + (f", {r['tokens_per_s']:,.1f} tokens/s" if r["tokens_per_s"] else "")),
            ("finish", str(r["finish_reason"])), ("answer", (r["content"] or "")[:200])]
    if r["error"]:
        rows.append(("error", r["error"]))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print("[bold green]ok[/]" if report["ok"] else "[bold red]failed[/]")

