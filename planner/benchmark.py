"""Benchmark arithmetic for a live endpoint: streamed answers into timings, latency percentiles, parser checks,
$ per 1M output tokens against the planner's upper bound, and the run record. Pure: scripts/bench/ does the
network and feeds this module timed lines."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import PurePath

from planner.errors import PlanInputError
from planner.estimates import ThroughputBound, decode_upper_bound, iso_utc
from planner.fit import FitResult

MAX_CONCURRENCY = 1024
RECORD_KIND = "nemotron-deploy.bench"

BUILTIN_PROMPTS: tuple[str, ...] = (
    "Explain in three short paragraphs how a mixture-of-experts layer routes tokens.",
    "Write a Python function that merges two sorted lists, with a docstring and two doctests.",
    "Summarise the trade-offs between tensor parallelism and pipeline parallelism for serving a large model.",
    "List five checks an operator should run before putting a new GPU inference endpoint into production.",
    "Describe what a KV cache stores and why it grows with context length, for a reader new to transformers.",
    "Translate into French: 'The deployment expires tonight; tear it down before the budget runs out.'",
    "Give a step-by-step plan to diagnose high time-to-first-token on a busy inference server.",
    "Compare FP8 and NVFP4 weight formats in a short table: bits, scaling, hardware support.",
)

# The parser checks: a tool-call prompt with one tool defined, and a prompt that makes a reasoning model think.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
TOOL_CHECK_MESSAGES = ({"role": "user",
                        "content": "What is the weather in Paris right now? Use the get_weather tool."},)
REASONING_CHECK_MESSAGES = ({"role": "user",
                             "content": "A train leaves at 14:05 and arrives at 17:50. How long is the journey? "
                                        "Think it through before answering."},)


# ---- percentiles ----------------------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, not {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    """How a measured quantity spread over requests: count, mean, p50/p90/p99, min and max."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    min: float | None
    max: float | None

    def to_json(self, digits: int = 4) -> dict:
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def distribution(values: Iterable[float]) -> Distribution:
    """Summarise samples as a Distribution (all None when there are none)."""
    values = list(values)
    if not values:
        return Distribution(0, None, None, None, None, None, None)
    return Distribution(len(values), sum(values) / len(values), percentile(values, 50), percentile(values, 90),
                        percentile(values, 99), min(values), max(values))


# ---- stream parsing -------------------------------------------------------------------------------------------

class SseLineSplitter:
    """Reassembles lines from byte fragments cut anywhere (SageMaker PayloadPart events split the body freely)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [rest.decode("utf-8", "replace").rstrip("\r")] if rest.strip() else []


@dataclass(frozen=True)
class ToolCall:
    """One tool call assembled from its streamed fragments."""

    index: int
    id: str | None
    name: str | None
    arguments: str  # the JSON text as streamed

    def parsed_arguments(self) -> dict | None:
        try:
            value = json.loads(self.arguments)
        except (TypeError, ValueError):
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class RequestResult:
    """One streamed request, measured: when tokens came, how many, what came back, or why it failed."""

    ok: bool
    error_kind: str | None  # short label for counting: "http 500", "timeout", "stream error", ...
    error: str | None  # detail for people
    http_status: int | None
    ttft_s: float | None  # request sent -> first chunk that carries generated text, reasoning or a tool call
    latency_s: float | None  # request sent -> end of stream
    chunk_gaps_s: tuple[float, ...]  # time between consecutive token-bearing chunks (inter-token latency samples)
    output_tokens: int
    output_tokens_from_usage: bool  # True: the server's usage chunk; False: counted token-bearing chunks
    first_token_s: float | None = None
    last_token_s: float | None = None
    content: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    model: str | None = None

    @property
    def time_per_output_token_s(self) -> float | None:
        """Decode time per token after the first: (last token - first token) / (tokens - 1)."""
        if self.first_token_s is None or self.last_token_s is None or self.output_tokens < 2:
            return None
        return (self.last_token_s - self.first_token_s) / (self.output_tokens - 1)

    @property
    def output_tokens_per_s(self) -> float | None:
        """Output tokens over the whole request (end-to-end, first token wait included)."""
        if not self.latency_s or self.output_tokens <= 0:
            return None
        return self.output_tokens / self.latency_s


def failed_request(error_kind: str, error: str, http_status: int | None = None,
                   latency_s: float | None = None) -> RequestResult:
    """A request that produced no usable stream (refused, timed out, connection lost before any chunk)."""
    return RequestResult(False, error_kind, error, http_status, None, latency_s, (), 0, False)


class StreamAccumulator:
    """Turns the lines of one streamed chat completion, each with its arrival time, into a RequestResult.

    Accepts Server-Sent Events (`data: {...}`, `data: [DONE]`, comments) as vLLM and NIM send them, and bare JSON
    lines as some SageMaker containers do. A chunk counts as a token when it carries non-empty content, reasoning
    (`reasoning_content`, or `reasoning` in newer vLLM) or a tool-call fragment; the role-only first chunk that
    vLLM sends at once does not, so it does not shorten the time to first token.
    """

    def __init__(self) -> None:
        self._token_times: list[float] = []
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, dict] = {}
        self._usage_tokens: int | None = None
        self._done = False
        self._finish_reason: str | None = None
        self._model: str | None = None
        self._error: tuple[str, str] | None = None

    def feed_line(self, line: str, at_s: float) -> None:
        """One line of the response body, received `at_s` seconds after the request was sent."""
        line = line.strip()
        if not line or line.startswith(":"):
            return
        if line.startswith("data:"):
            payload = line[5:].strip()
        elif line.startswith("{"):
            payload = line
        else:  # event:, id:, retry: fields carry nothing we measure
            return
        if payload == "[DONE]":
            self._done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            self._error = self._error or ("malformed chunk", f"not JSON: {payload[:120]!r}")
            return
        if not isinstance(chunk, dict):
            self._error = self._error or ("malformed chunk", f"not a JSON object: {payload[:120]!r}")
            return
        if chunk.get("error"):
            err = chunk["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            self._error = self._error or ("stream error", str(message)[:300])
            return
        self._model = self._model or chunk.get("model")
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self._usage_tokens = usage["completion_tokens"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            if self._take_delta(delta):
                self._token_times.append(at_s)

    def _take_delta(self, delta: dict) -> bool:
        carried = False
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._content.append(content)
            carried = True
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._reasoning.append(reasoning)
            carried = True
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            slot = self._calls.setdefault(int(call.get("index", 0)), {"id": None, "name": None, "arguments": ""})
            slot["id"] = slot["id"] or call.get("id")
            function = call.get("function") or {}
            slot["name"] = slot["name"] or function.get("name")
            if isinstance(function.get("arguments"), str):
                slot["arguments"] += function["arguments"]
            carried = True
        return carried

    def finish(self, end_s: float, http_status: int | None = 200) -> RequestResult:
        """The measured request, once the stream has ended (normally or not) `end_s` seconds after sending."""
        times = self._token_times
        tokens = self._usage_tokens if self._usage_tokens is not None else len(times)
        error = self._error
        if error is None and not (self._done or self._finish_reason):
            error = ("truncated stream", "the stream ended without a finish_reason or [DONE]")
        if error is None and not times:
            error = ("no tokens", "the stream carried no content, reasoning or tool call")
        calls = tuple(ToolCall(i, c["id"], c["name"], c["arguments"]) for i, c in sorted(self._calls.items()))
        return RequestResult(
            ok=error is None, error_kind=error[0] if error else None, error=error[1] if error else None,
            http_status=http_status, ttft_s=times[0] if times else None, latency_s=end_s,
            chunk_gaps_s=tuple(b - a for a, b in zip(times, times[1:], strict=False)), output_tokens=tokens,
            output_tokens_from_usage=self._usage_tokens is not None,
            first_token_s=times[0] if times else None, last_token_s=times[-1] if times else None,
            content="".join(self._content), reasoning="".join(self._reasoning), tool_calls=calls,
            finish_reason=self._finish_reason, model=self._model)


# ---- levels ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LevelResult:
    """All requests at one concurrency: latency distributions, throughput per request and in total, errors."""

    concurrency: int
    requests: int
    ok: int
    errors: dict[str, int]  # error kind -> count
    wall_s: float
    ttft_s: Distribution
    inter_token_s: Distribution
    time_per_output_token_s: Distribution
    request_tokens_per_s: Distribution
    output_tokens: int
    total_tokens_per_s: float
    error_examples: tuple[str, ...] = ()

    @property
    def error_count(self) -> int:
        return self.requests - self.ok

    def to_json(self) -> dict:
        return {"concurrency": self.concurrency, "requests": self.requests, "ok": self.ok,
                "errors": dict(self.errors), "error_examples": list(self.error_examples),
                "wall_s": round(self.wall_s, 3), "ttft_s": self.ttft_s.to_json(),
                "inter_token_latency_s": self.inter_token_s.to_json(),
                "time_per_output_token_s": self.time_per_output_token_s.to_json(),
                "request_output_tokens_per_s": self.request_tokens_per_s.to_json(2),
                "output_tokens": self.output_tokens, "total_output_tokens_per_s": round(self.total_tokens_per_s, 2)}


def summarize_level(concurrency: int, results: Sequence[RequestResult], wall_s: float) -> LevelResult:
    """One concurrency level's figures from its requests; failed requests count as errors, not as timings."""
    good = [r for r in results if r.ok]
    errors = Counter(r.error_kind or "error" for r in results if not r.ok)
    examples = tuple(dict.fromkeys(f"{r.error_kind}: {r.error}" for r in results if not r.ok))[:5]
    tokens = sum(r.output_tokens for r in good)
    return LevelResult(
        concurrency=concurrency, requests=len(results), ok=len(good), errors=dict(sorted(errors.items())),
        wall_s=wall_s, ttft_s=distribution(r.ttft_s for r in good if r.ttft_s is not None),
        inter_token_s=distribution(g for r in good for g in r.chunk_gaps_s),
        time_per_output_token_s=distribution(t for r in good if (t := r.time_per_output_token_s) is not None),
        request_tokens_per_s=distribution(t for r in good if (t := r.output_tokens_per_s) is not None),
        output_tokens=tokens, total_tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
        error_examples=examples)


# ---- cost -----------------------------------------------------------------------------------------------------

def usd_per_million_tokens(usd_per_hour: float | None, tokens_per_s: float | None) -> float | None:
    """Dollars per 1M output tokens at a steady rate; None without a price or without throughput."""
    if usd_per_hour is None or not tokens_per_s or tokens_per_s <= 0:
        return None
    return usd_per_hour / (tokens_per_s * 3600) * 1e6


def bound_at_concurrency(fit: FitResult, concurrency: int) -> ThroughputBound:
    """The planner's decode upper bound for the same deployment serving `concurrency` sequences at once.

    The server runs at most the plan's configured sequences (max-num-seqs); beyond that requests queue, so the
    bound is taken at min(concurrency, configured).
    """
    effective = max(1, min(concurrency, fit.request.concurrency))
    return decode_upper_bound(replace(fit, request=replace(fit.request, concurrency=effective)))


@dataclass(frozen=True)
class CostComparison:
    """Measured $ per 1M output tokens at one level against the planner's bound (the best the hardware allows)."""

    concurrency: int
    usd_per_hour: float | None
    measured_tokens_per_s: float
    measured_usd_per_million: float | None
    bound_tokens_per_s: float
    bound_usd_per_million: float | None
    fraction_of_bound: float | None
    note: str = ""

    def to_json(self) -> dict:
        # 6 significant digits, not a fixed number of decimals: a fraction of 0.0004 keeps its relative precision
        return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def compare_cost(concurrency: int, usd_per_hour: float | None, measured_tokens_per_s: float,
                 bound: ThroughputBound) -> CostComparison:
    """$ per 1M output tokens measured at one level, next to what the planner's upper bound would give."""
    bound_tps = bound.aggregate_tokens_per_s
    fraction = measured_tokens_per_s / bound_tps if bound_tps > 0 else None
    note = ""
    if fraction is not None and fraction > 1:
        note = ("measured throughput exceeds the planner's upper bound: speculative decoding (MTP) emits several "
                "tokens per step, which the bound does not model; otherwise check the measurement")
    if usd_per_hour is None:
        note = (note + "; " if note else "") + "no price for this instance type in planner/hardware.py"
    return CostComparison(concurrency, usd_per_hour, measured_tokens_per_s,
                          usd_per_million_tokens(usd_per_hour, measured_tokens_per_s), bound_tps,
                          usd_per_million_tokens(usd_per_hour, bound_tps), fraction, note)


# ---- parser checks --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParserCheck:
    """Whether the server's reasoning or tool-call parser answered in the shape clients expect."""

    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


def judge_tool_call(result: RequestResult, expected_function: str = "get_weather") -> ParserCheck:
    """Pass when the stream carried a tool call to `expected_function` whose arguments are a JSON object."""
    name = "tool-call parser"
    if not result.ok and not result.tool_calls:
        return ParserCheck(name, False, f"request failed: {result.error_kind}: {result.error}")
    if not result.tool_calls:
        hint = ""
        if "<tool_call>" in result.content or '"name"' in result.content:
            hint = ("; the call came back as plain text: start vLLM with --enable-auto-tool-choice "
                    "--tool-call-parser qwen3_coder")
        return ParserCheck(name, False, f"no tool_calls in the streamed deltas{hint}")
    call = result.tool_calls[0]
    if call.name != expected_function:
        return ParserCheck(name, False, f"tool call names {call.name!r}, expected {expected_function!r}")
    arguments = call.parsed_arguments()
    if arguments is None:
        return ParserCheck(name, False, f"arguments are not a JSON object: {call.arguments[:120]!r}")
    return ParserCheck(name, True, f"{call.name}({json.dumps(arguments, sort_keys=True)[:120]})")


def judge_reasoning(result: RequestResult) -> ParserCheck:
    """Pass when the stream carried reasoning in its own field (`reasoning_content`), apart from the answer."""
    name = "reasoning parser"
    if not result.ok and not result.reasoning:
        return ParserCheck(name, False, f"request failed: {result.error_kind}: {result.error}")
    if not result.reasoning:
        hint = ""
        if "<think>" in result.content or "</think>" in result.content:
            hint = "; the thinking came back inside content: start vLLM with --reasoning-parser nemotron_v3"
        return ParserCheck(name, False, f"no reasoning_content in the streamed deltas{hint}")
    return ParserCheck(name, True, f"{len(result.reasoning)} characters of reasoning, "
                                   f"{len(result.content)} of answer")


# ---- input ----------------------------------------------------------------------------------------------------

def parse_concurrency_levels(text: str) -> tuple[int, ...]:
    """`1,4,16` -> (1, 4, 16); PlanInputError naming --concurrency otherwise."""
    allowed = f"comma-separated whole numbers from 1 to {MAX_CONCURRENCY}, e.g. 1,4,16"
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not re.fullmatch(r"\d+", p) for p in parts):
        raise PlanInputError("--concurrency", text, allowed)
    levels = tuple(int(p) for p in parts)
    if any(not 1 <= level <= MAX_CONCURRENCY for level in levels):
        raise PlanInputError("--concurrency", text, allowed)
    return levels


def parse_prompts(text: str, source: str) -> tuple[tuple[dict, ...], ...]:
    """Conversations to send, from a prompts file: JSON Lines (a string, {"prompt": ...} or {"messages": [...]})
    when `source` ends in .jsonl, else one prompt per non-empty line."""
    conversations: list[tuple[dict, ...]] = []
    allowed = ("one prompt per line, or JSON Lines of strings, {\"prompt\": ...} or {\"messages\": [{\"role\", "
               "\"content\"}, ...]}")
    jsonl = PurePath(source).suffix.lower() == ".jsonl"
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not jsonl:
            conversations.append(({"role": "user", "content": line.strip()},))
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise PlanInputError("--prompts", f"{source} line {number}", allowed) from None
        if isinstance(item, str) and item.strip():
            conversations.append(({"role": "user", "content": item},))
        elif isinstance(item, dict) and isinstance(item.get("prompt"), str) and item["prompt"].strip():
            conversations.append(({"role": "user", "content": item["prompt"]},))
        elif isinstance(item, dict) and _valid_messages(item.get("messages")):
            conversations.append(tuple(dict(m) for m in item["messages"]))
        else:
            raise PlanInputError("--prompts", f"{source} line {number}", allowed)
    if not conversations:
        raise PlanInputError("--prompts", source, allowed + " (the file has none)")
    return tuple(conversations)


def _valid_messages(messages: object) -> bool:
    return (isinstance(messages, list) and bool(messages)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages))


def builtin_conversations() -> tuple[tuple[dict, ...], ...]:
    return tuple(({"role": "user", "content": p},) for p in BUILTIN_PROMPTS)


# ---- run record -----------------------------------------------------------------------------------------------

def record_filename(started_at: datetime, label: str) -> str:
    """`20261129T110721Z-h100-pilot.json`: sortable by time, named after what was measured."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")[:60] or "endpoint"
    return f"{started_at.strftime('%Y%m%dT%H%M%SZ')}-{safe}.json"


@dataclass(frozen=True)
class RunRecord:
    """What a benchmark run measured, against what and with which settings; written as JSON next to others."""

    endpoint: dict
    model: str | None
    settings: dict
    levels: tuple[LevelResult, ...]
    checks: tuple[ParserCheck, ...]
    costs: tuple[CostComparison, ...]
    started_at: datetime
    finished_at: datetime
    plan: dict | None = None  # the stack's $/hour and bound, when --stack was given
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {"kind": RECORD_KIND, "version": 1, "started_at": iso_utc(self.started_at),
                "finished_at": iso_utc(self.finished_at), "endpoint": dict(self.endpoint), "model": self.model,
                "settings": dict(self.settings), "plan": self.plan, "levels": [lv.to_json() for lv in self.levels],
                "checks": [c.to_json() for c in self.checks], "cost": [c.to_json() for c in self.costs],
                "notes": list(self.notes)}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every non-trivial secret value replaced, so an echoed key never reaches a record or a log."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


# ---- the run record's plan side ---------------------------------------------------------------------------------

def base_url(url: str) -> str:
    """The server root: `https://h:8000/v1/` and `https://h:8000` both give `https://h:8000`."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def plan_summary(plan) -> dict:
    """What a run record keeps of the stack's plan (a planner.plan.StackPlan): its price and throughput bound, and
    the provenance a report shows (target, precision, layout, engine and the image it runs; JumpStart runs the hub's
    container, recorded in its endpoint plan)."""
    image = getattr(plan.serving, "image", None) or getattr(plan.serving, "nim_image", None)
    if image is None and plan.jumpstart is not None:
        image = plan.jumpstart.image.uri
    engine = "jumpstart" if plan.target == "jumpstart" else plan.engine
    return {"stack": plan.stack, "target": plan.target, "engine": engine, "image": image,
            "engine_version": image.rsplit(":", 1)[1] if image and ":" in image.rsplit("/", 1)[-1] else None,
            "precision": plan.config.precision, "layout": plan.fit.layout.describe(),
            "instance_type": plan.instance.name, "nodes": plan.config.nodes,
            "usd_per_hour": plan.cost.usd_per_hour, "configured_concurrency": plan.config.concurrency,
            "throughput_upper_bound": plan.throughput.to_json(),
            "usd_per_million_output_tokens_at_bound": plan.cost.to_json()["usd_per_million_output_tokens"]}


def cost_comparisons(plan, levels: Sequence[LevelResult]) -> list[CostComparison]:
    """Each level's measured throughput priced and set against the plan's bound at that concurrency (none without
    a plan)."""
    if plan is None:
        return []
    return [compare_cost(lv.concurrency, plan.cost.usd_per_hour, lv.total_tokens_per_s,
                         bound_at_concurrency(plan.fit, lv.concurrency)) for lv in levels]
