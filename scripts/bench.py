"""`python -m scripts.bench`: measure a live OpenAI-compatible endpoint (vLLM, NIM) or a SageMaker endpoint.

For each concurrency level it sends a bounded number of streamed chat requests and reports time to first token,
inter-token latency, output tokens/s per request and in total, and errors, as p50/p90/p99. With --stack it prices
the throughput ($ per 1M output tokens) from the planner and sets it against the planner's upper bound. It checks
that the reasoning and tool-call parsers answer in the shape clients expect, and writes a run record.

No request is ever retried: a refused or timed-out request is counted as an error. The API key is read from the
environment variable named by --api-key-env and never printed or written.

Exit 0 when every request succeeded and every check passed; 1 when a request failed, a check failed or the endpoint
could not be reached; 2 on bad input (one line naming the flag).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.benchmark import (
    REASONING_CHECK_MESSAGES,
    TOOL_CHECK_MESSAGES,
    WEATHER_TOOL,
    CostComparison,
    LevelResult,
    ParserCheck,
    RequestResult,
    RunRecord,
    SseLineSplitter,
    StreamAccumulator,
    bound_at_concurrency,
    builtin_conversations,
    compare_cost,
    failed_request,
    judge_reasoning,
    judge_tool_call,
    parse_concurrency_levels,
    parse_prompts,
    record_filename,
    redact,
    summarize_level,
)
from planner.cli import OneLineParser, PipeConsole, number, run_main, whole
from planner.errors import PlanInputError
from planner.plan import StackPlan, plan_stack
from planner.stack_config import load_stack

PROG = "python -m scripts.bench"
REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"
DEFAULT_API_KEY_ENV = "VLLM_API_KEY"
MAX_REQUESTS_PER_LEVEL = 10_000
ERROR_BODY_LIMIT = 2048  # bytes of an error response kept for the report


# ---- targets: where the requests go ---------------------------------------------------------------------------

class OpenAITarget:
    """An OpenAI-compatible server (vLLM, NIM): POST /v1/chat/completions with stream=true, GET /v1/models."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float, max_connections: int):
        self.base_url = base_url
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False)

    def describe(self) -> dict:
        return {"kind": "openai", "url": self.base_url}

    async def served_model(self) -> str:
        """The model name the server reports at /v1/models (the first one listed)."""
        response = await self._client.get("/v1/models")
        response.raise_for_status()
        models = response.json().get("data") or []
        if not models or not models[0].get("id"):
            raise ValueError("/v1/models listed no model")
        return str(models[0]["id"])

    async def stream_chat(self, body: dict) -> RequestResult:
        """Send one streamed chat request and measure it; never raises for a failed request, never retries."""
        started = time.perf_counter()
        accumulator = StreamAccumulator()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        detail = await _bounded_body(response)
                        return failed_request(f"http {response.status_code}", detail, response.status_code,
                                              time.perf_counter() - started)
                    async for line in response.aiter_lines():
                        accumulator.feed_line(line, time.perf_counter() - started)
        except TimeoutError:
            return _partial(accumulator, started, "timeout", f"no complete answer within {self.timeout_s:g} s")
        except httpx.TimeoutException as err:
            return _partial(accumulator, started, "timeout", f"{type(err).__name__} after {self.timeout_s:g} s")
        except httpx.HTTPError as err:
            return _partial(accumulator, started, "connection error", f"{type(err).__name__}: {err}")
        return accumulator.finish(time.perf_counter() - started)

    async def close(self) -> None:
        await self._client.aclose()


class SageMakerTarget:
    """A SageMaker real-time endpoint whose container speaks the OpenAI chat schema (JumpStart vLLM/LMI), streamed
    with sagemaker-runtime InvokeEndpointWithResponseStream. The boto3 call blocks, so requests run in threads."""

    def __init__(self, endpoint_name: str, client, timeout_s: float, max_workers: int):
        self.endpoint_name = endpoint_name
        self.timeout_s = timeout_s
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="bench-sagemaker")

    def describe(self) -> dict:
        return {"kind": "sagemaker", "endpoint": self.endpoint_name, "region": self._client.meta.region_name}

    async def served_model(self) -> str | None:
        return None  # SageMaker has no /v1/models; the model name is taken from the streamed chunks

    async def stream_chat(self, body: dict) -> RequestResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.stream_chat_blocking, body)

    def stream_chat_blocking(self, body: dict) -> RequestResult:
        """One streamed request through sagemaker-runtime, measured like the HTTP path."""
        from botocore.exceptions import BotoCoreError, ClientError

        started = time.perf_counter()
        accumulator, splitter = StreamAccumulator(), SseLineSplitter()
        try:
            response = self._client.invoke_endpoint_with_response_stream(
                EndpointName=self.endpoint_name, Body=json.dumps(body).encode(), ContentType="application/json",
                Accept="text/event-stream")
            for event in response["Body"]:
                now = time.perf_counter() - started
                if "PayloadPart" in event:
                    for line in splitter.feed(event["PayloadPart"].get("Bytes", b"")):
                        accumulator.feed_line(line, now)
                elif "ModelStreamError" in event or "InternalStreamFailure" in event:
                    failure = event.get("ModelStreamError") or event.get("InternalStreamFailure") or {}
                    return _partial(accumulator, started, "stream error", str(failure.get("Message", failure)))
                if now > self.timeout_s:
                    return _partial(accumulator, started, "timeout", f"no complete answer within {self.timeout_s:g} s")
            for line in splitter.flush():
                accumulator.feed_line(line, time.perf_counter() - started)
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = err.response.get("Error", {}).get("Code", "ClientError")
            kind = f"http {status}" if status else code
            return failed_request(kind, f"{code}: {err.response.get('Error', {}).get('Message', '')}"[:300], status,
                                  time.perf_counter() - started)
        except BotoCoreError as err:
            kind = "timeout" if "timeout" in type(err).__name__.lower() else "connection error"
            return _partial(accumulator, started, kind, f"{type(err).__name__}: {err}")
        return accumulator.finish(time.perf_counter() - started)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _partial(accumulator: StreamAccumulator, started: float, kind: str, detail: str) -> RequestResult:
    """A request cut short: it counts as an error; the tokens that did arrive are kept for the record."""
    measured = accumulator.finish(time.perf_counter() - started)
    if measured.first_token_s is None:
        return failed_request(kind, detail, None, measured.latency_s)
    return RequestResult(**{**measured.__dict__, "ok": False, "error_kind": kind, "error": detail})


async def _bounded_body(response: httpx.Response) -> str:
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT].decode("utf-8", "replace").strip()[:300]


def sagemaker_runtime_client(region: str | None, timeout_s: float, max_connections: int):
    """A sagemaker-runtime client from the standard credential chain, with no automatic retries."""
    import boto3
    from botocore.config import Config

    config = Config(read_timeout=timeout_s, connect_timeout=min(timeout_s, 10.0),
                    retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=max_connections)
    from scripts._aws import name_html_error_pages

    session = boto3.session.Session()
    name_html_error_pages(session)  # an HTML error page becomes one line with its status, never a table cell
    return session.client("sagemaker-runtime", region_name=region, config=config)


# ---- the run --------------------------------------------------------------------------------------------------

def chat_body(model: str | None, messages: Sequence[dict], max_tokens: int, **extra) -> dict:
    body = {"messages": list(messages), "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    if model:
        body["model"] = model
    return body


async def run_level(target, model: str | None, conversations, concurrency: int, requests: int, max_tokens: int,
                    advance: Callable[[RequestResult], None]) -> LevelResult:
    """`requests` requests with at most `concurrency` in flight; prompts taken in turn."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[RequestResult] = []

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = chat_body(model, conversations[i % len(conversations)], max_tokens)
            result = await target.stream_chat(body)
            results.append(result)
            advance(result)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return summarize_level(concurrency, results, time.perf_counter() - started)


async def run_checks(target, model: str | None, max_tokens: int,
                     advance: Callable[[RequestResult], None]) -> list[ParserCheck]:
    """The tool-call and reasoning prompts, judged by the shape of their streamed answers."""
    tool = await target.stream_chat(chat_body(model, TOOL_CHECK_MESSAGES, max_tokens, tools=[WEATHER_TOOL],
                                              tool_choice="auto"))
    advance(tool)
    reasoning = await target.stream_chat(chat_body(model, REASONING_CHECK_MESSAGES, max_tokens))
    advance(reasoning)
    return [judge_tool_call(tool), judge_reasoning(reasoning)]


async def run_benchmark(target, args, conversations, levels: Sequence[int], progress: Progress) -> dict:
    """The whole measurement: model name, parser checks, then each level in turn."""
    outcome: dict = {"model": None, "levels": [], "checks": [], "models_in_chunks": set()}
    try:
        try:
            outcome["model"] = args.model or await target.served_model()
        except (httpx.HTTPError, ValueError) as err:
            outcome["unreachable"] = f"cannot list models at {getattr(target, 'base_url', '')}/v1/models: " \
                                     f"{type(err).__name__}: {err}"
            return outcome
        total = (0 if args.no_checks else 2) + args.requests_per_level * len(levels)
        task = progress.add_task("benchmark", total=total)

        def advance(result: RequestResult) -> None:
            if result.model:
                outcome["models_in_chunks"].add(result.model)
            progress.advance(task)

        if not args.no_checks:
            progress.update(task, description="parser checks")
            outcome["checks"] = await run_checks(target, outcome["model"], args.max_tokens, advance)
        for level in levels:
            progress.update(task, description=f"concurrency {level}")
            outcome["levels"].append(await run_level(target, outcome["model"], conversations, level,
                                                     args.requests_per_level, args.max_tokens, advance))
    finally:
        await target.close()
    return outcome


# ---- input and output -----------------------------------------------------------------------------------------

def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of an OpenAI-compatible server, e.g. https://10.0.1.5:8000")
    where.add_argument("--sagemaker-endpoint", help="name of a SageMaker real-time endpoint")
    parser.add_argument("--region", help="AWS region of the SageMaker endpoint (default: the AWS config's)")
    parser.add_argument("--api-key-env",
                        help=f"environment variable holding the API key (default {DEFAULT_API_KEY_ENV})")
    parser.add_argument("--model", help="model name to request (default: the first one /v1/models lists)")
    parser.add_argument("--stack", help="price the run with this stack's plan ($/hour, throughput bound)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated concurrency levels (default 1,4,16)")
    parser.add_argument("--prompts", default="builtin", help="'builtin' or a file: one prompt per line, or .jsonl")
    parser.add_argument("--requests-per-level", type=whole, default=16, help="requests sent at each level (default 16)")
    parser.add_argument("--max-tokens", type=whole, default=256, help="max_tokens per request (default 256)")
    parser.add_argument("--timeout", type=number, default=120.0, help="seconds one request may take (default 120)")
    parser.add_argument("--no-checks", action="store_true", help="skip the reasoning and tool-call parser checks")
    parser.add_argument("--record", type=Path, help="run-record file (default bench-runs/<time>-<label>.json)")
    parser.add_argument("--json", action="store_true", help="the run record as one JSON object on stdout")
    return parser


def validate(args) -> tuple[tuple[int, ...], tuple, str | None]:
    """Check the flags; returns (levels, conversations, api key). Raises PlanInputError naming the flag."""
    levels = parse_concurrency_levels(args.concurrency)
    if not 1 <= args.requests_per_level <= MAX_REQUESTS_PER_LEVEL:
        raise PlanInputError("--requests-per-level", args.requests_per_level,
                             f"a whole number from 1 to {MAX_REQUESTS_PER_LEVEL}")
    if not 0 < args.timeout <= 3600:
        raise PlanInputError("--timeout", args.timeout, "seconds, more than 0 and at most 3600")
    if not 1 <= args.max_tokens <= 66_000:
        raise PlanInputError("--max-tokens", args.max_tokens, "a whole number from 1 to 66000 (the model's maximum)")
    if args.url is not None:
        parts = urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise PlanInputError("--url", args.url, "an http:// or https:// base URL such as https://10.0.1.5:8000")
        if args.region:
            raise PlanInputError("--region", args.region, "only with --sagemaker-endpoint")
    elif not args.sagemaker_endpoint or len(args.sagemaker_endpoint) > 63:
        raise PlanInputError("--sagemaker-endpoint", args.sagemaker_endpoint, "a SageMaker endpoint name")
    if args.prompts == "builtin":
        conversations = builtin_conversations()
    else:
        path = Path(args.prompts)
        if not path.is_file():
            raise PlanInputError("--prompts", args.prompts, "builtin, or a readable file of prompts")
        conversations = parse_prompts(path.read_text(encoding="utf-8", errors="replace"), str(path))
    env_name = args.api_key_env or DEFAULT_API_KEY_ENV
    api_key = os.environ.get(env_name) or None
    if args.api_key_env and api_key is None:
        raise PlanInputError("--api-key-env", args.api_key_env, "the name of a set, non-empty environment variable")
    return levels, conversations, api_key


def base_url(url: str) -> str:
    """The server root: `https://h:8000/v1/` and `https://h:8000` both give `https://h:8000`."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def plan_summary(plan: StackPlan) -> dict:
    return {"stack": plan.stack, "instance_type": plan.instance.name, "nodes": plan.config.nodes,
            "usd_per_hour": plan.cost.usd_per_hour, "configured_concurrency": plan.config.concurrency,
            "throughput_upper_bound": plan.throughput.to_json(),
            "usd_per_million_output_tokens_at_bound": plan.cost.to_json()["usd_per_million_output_tokens"]}


def cost_comparisons(plan: StackPlan | None, levels: Sequence[LevelResult]) -> list[CostComparison]:
    if plan is None:
        return []
    return [compare_cost(lv.concurrency, plan.cost.usd_per_hour, lv.total_tokens_per_s,
                         bound_at_concurrency(plan.fit, lv.concurrency)) for lv in levels]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}" if value >= 0.1 else f"{value * 1000:,.1f}"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def print_report(record: RunRecord, console: Console, record_path: Path | None) -> None:
    endpoint = record.endpoint.get("url") or f"sagemaker:{record.endpoint.get('endpoint')}"
    console.print(f"[bold]{endpoint}[/]  model {record.model or 'unknown'}  "
                  f"{record.settings['requests_per_level']} requests per level, max_tokens "
                  f"{record.settings['max_tokens']}", highlight=False)
    table = Table(title="latency (ms) and throughput (output tokens/s)", title_justify="left")
    for header in ("conc.", "ok/sent", "errors", "TTFT p50", "p90", "p99", "ITL p50", "p90", "p99",
                   "tok/s/req p50", "tok/s total"):
        table.add_column(header, justify="right")
    for lv in record.levels:
        errors = ", ".join(f"{k} x{v}" for k, v in lv.errors.items()) or "-"
        req = lv.request_tokens_per_s.p50
        table.add_row(str(lv.concurrency), f"{lv.ok}/{lv.requests}", errors, _ms(lv.ttft_s.p50), _ms(lv.ttft_s.p90),
                      _ms(lv.ttft_s.p99), _ms(lv.inter_token_s.p50), _ms(lv.inter_token_s.p90),
                      _ms(lv.inter_token_s.p99), "-" if req is None else f"{req:,.1f}",
                      f"{lv.total_tokens_per_s:,.1f}")
    console.print(table)
    if record.costs:
        plan = record.plan or {}
        cost = Table(title=f"cost at {_money(plan.get('usd_per_hour'))}/h ({plan.get('nodes')}x "
                           f"{plan.get('instance_type')}, stack {plan.get('stack')})", title_justify="left")
        for header in ("conc.", "measured tok/s", "$ per 1M tokens", "planner bound tok/s", "$ per 1M at bound",
                       "% of bound"):
            cost.add_column(header, justify="right")
        for c in record.costs:
            share = "-" if c.fraction_of_bound is None else f"{c.fraction_of_bound:.0%}"
            cost.add_row(str(c.concurrency), f"{c.measured_tokens_per_s:,.1f}", _money(c.measured_usd_per_million),
                         f"{c.bound_tokens_per_s:,.0f}", _money(c.bound_usd_per_million), share)
        console.print(cost)
        for note in dict.fromkeys(c.note for c in record.costs if c.note):
            console.print(f"  [yellow]! {escape(note)}[/]", highlight=False, soft_wrap=True)
    for check in record.checks:
        mark = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
        console.print(f"{mark}  {check.name}: {escape(check.detail)}", highlight=False, soft_wrap=True)
    for lv in record.levels:
        for example in lv.error_examples:
            console.print(f"  [red]error[/] at concurrency {lv.concurrency}: {escape(example)}", highlight=False,
                          soft_wrap=True, markup=True)
    for note in record.notes:
        console.print(f"  note: {note}", highlight=False, soft_wrap=True, markup=False)
    if record_path is not None:
        console.print(f"run record: {record_path}", highlight=False)


def main(argv: list[str] | None = None, sagemaker_client=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        levels, conversations, api_key = validate(args)
    except PlanInputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    try:
        plan = plan_stack(load_stack(args.stacks_dir, args.stack), datetime.now(UTC)) if args.stack else None
    except PlanInputError as err:
        message = f"{err.value!r} is not valid; allowed: {err.allowed}" if err.field == "stack" else str(err)
        print(f"{PROG}: --stack: {message}", file=sys.stderr)
        return 2
    notes = []
    if api_key is None and args.url:
        notes.append(f"{DEFAULT_API_KEY_ENV} is not set: requests carry no API key")
    widest = max(levels)
    if args.url:
        target = OpenAITarget(base_url(args.url), api_key, args.timeout, widest)
    else:
        client = sagemaker_client or sagemaker_runtime_client(args.region, args.timeout, widest)
        target = SageMakerTarget(args.sagemaker_endpoint, client, args.timeout, widest)
    endpoint = target.describe()
    started_at = datetime.now(UTC)
    err_console = PipeConsole(stderr=True, highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        outcome = asyncio.run(run_benchmark(target, args, conversations, levels, progress))
    finished_at = datetime.now(UTC)
    if "unreachable" in outcome:
        print(f"{PROG}: {redact(outcome['unreachable'], [api_key])}", file=sys.stderr)
        return 1
    model = outcome["model"] or ", ".join(sorted(outcome["models_in_chunks"])) or None
    settings = {"concurrency": list(levels), "requests_per_level": args.requests_per_level,
                "max_tokens": args.max_tokens, "timeout_s": args.timeout, "prompts": args.prompts,
                "api_key_env": args.api_key_env or DEFAULT_API_KEY_ENV, "api_key_sent": api_key is not None,
                "stack": args.stack, "checks": not args.no_checks, "retries": 0}
    record = RunRecord(endpoint, model, settings, tuple(outcome["levels"]), tuple(outcome["checks"]),
                       tuple(cost_comparisons(plan, outcome["levels"])), started_at, finished_at,
                       plan_summary(plan) if plan else None, tuple(notes))
    text = redact(json.dumps(record.to_json(), indent=2), [api_key])
    label = args.stack or args.sagemaker_endpoint or (urlsplit(args.url).hostname or "endpoint")
    path = args.record or Path("bench-runs") / record_filename(started_at, label)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as err:
        print(f"{PROG}: --record: cannot write {path}: {err.strerror}", file=sys.stderr)
        path = None
    if args.json:
        print(text)
    else:
        print_report(record, PipeConsole(highlight=False, width=160), path)
    failed = any(lv.error_count for lv in record.levels) or any(not c.passed for c in record.checks)
    return 1 if failed or path is None else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
