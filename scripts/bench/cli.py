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
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.benchmark import (
    RunRecord,
    base_url,
    builtin_conversations,
    cost_comparisons,
    parse_concurrency_levels,
    parse_prompts,
    plan_summary,
    record_filename,
    redact,
)
from planner.cli import OneLineParser, PipeConsole, number, run_main, whole
from planner.errors import PlanInputError
from planner.plan import plan_stack
from planner.stack_config import load_stack
from scripts.bench.run import run_benchmark
from scripts.bench.targets import OpenAITarget, SageMakerTarget, sagemaker_runtime_client

PROG = "python -m scripts.bench"
REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
DEFAULT_API_KEY_ENV = "VLLM_API_KEY"
MAX_REQUESTS_PER_LEVEL = 10_000


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
