"""`python -m scripts.jumpstart resolve|smoke STACK`: record a JumpStart model's hub content in the stack file, and
check a live endpoint with one chat request.

resolve  Without a modelId: ListHubContents(SageMakerPublicHub, Model, NameContains=modelName) lists the family
         (sibling ids carry a precision suffix), the planner fits each on the stack's instance type and the best
         fit is chosen (the stack's precision first) and recorded as modelId. Then
         DescribeHubContent(SageMakerPublicHub, Model, modelId[, modelVersion]) -> the container image, artifact
         prefix, environment and EULA for the stack's instance type, written into `jumpstart.resolved` of
         stacks/Pulumi.<stack>.yaml with the rest of the file (comments included) unchanged, so `pulumi up` is
         reproducible and the change is reviewed like code. `--check` only compares (exit 1 when the hub changed);
         `--from-file` reads a saved DescribeHubContent response instead of calling AWS.
smoke    One OpenAI-style chat request through sagemaker-runtime InvokeEndpoint (or the streaming call with
         `--stream`): prints latency, prompt and completion tokens and the start of the answer.

Exit 0 on success, 1 when AWS or the endpoint failed or the hub content is unusable (or differs, with --check), 2 on
bad input (one line naming the key or flag). Deleting an endpoint is scripts.teardown's job (one deletion path).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from planner.cli import OneLineParser, PipeConsole, number, run_main, whole
from planner.errors import PlanInputError, one_of
from planner.estimates import iso_utc
from planner.fit import FitRequest, plan_fit
from planner.hardware import GPUS, instance_type
from planner.jumpstart import (
    HUB_CONTENT_TYPE,
    HUB_NAME,
    ChatCompletion,
    HubContentError,
    HubMatch,
    chat_request,
    check_environment,
    choose_hub_model,
    endpoint_name_for,
    eula_url,
    parse_chat_completion,
    resolved_from_hub,
)
from planner.models import first_validation_error, load_model
from planner.stack_config import PROJECT, ResolvedHubContent, StackFile, load_stack, parse_stack, stack_path
from planner.yamlfile import parse_yaml_text
from scripts._aws import AwsClients, session_for

REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"
PROG = "python -m scripts.jumpstart"
JS_KEY = f"{PROJECT}:jumpstart"
EXAMPLE_MARK = "_example"  # a saved response carrying this key is an illustration: recorded as source "example"
NOT_FOUND = ("ResourceNotFound", "ResourceNotFoundException")
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


class UsageError(Exception):
    """Bad input: one line, exit 2."""


class Failure(Exception):
    """AWS, the hub or the endpoint failed: one line, exit 1."""


# ---------------------------------------------------------------------------------------------------- resolve


@dataclass(frozen=True)
class ResolveResult:
    """What resolve found and whether the stack file changed."""

    stack: str
    path: Path
    resolved: dict
    changed: bool
    written: bool
    previous: dict | None
    matches: tuple[HubMatch, ...] = ()  # the name filter's matches, when resolve chose the model

    def to_json(self) -> dict:
        return {"stack": self.stack, "path": str(self.path), "changed": self.changed, "written": self.written,
                "resolved": self.resolved, "matches": [m.to_json() for m in self.matches]}


def describe_hub_content(sm: Any, model_id: str, version: str) -> dict:
    """DescribeHubContent of a public JumpStart model ("*" = the newest version)."""
    request = {"HubName": HUB_NAME, "HubContentType": HUB_CONTENT_TYPE, "HubContentName": model_id}
    if version != "*":
        request["HubContentVersion"] = version
    try:
        return sm.describe_hub_content(**request)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in NOT_FOUND:
            which = model_id if version == "*" else f"{model_id} version {version}"
            raise UsageError(f"{JS_KEY}.modelId: {which!r} is not valid; allowed: a model id in {HUB_NAME} "
                             f"(DescribeHubContent: {code})") from None
        raise Failure(f"sagemaker:DescribeHubContent failed: {code}: "
                      f"{err.response.get('Error', {}).get('Message', '')}") from None
    except BotoCoreError as err:
        raise Failure(f"sagemaker:DescribeHubContent failed: {err}") from None


def saved_response(path: Path) -> tuple[dict, str]:
    """A DescribeHubContent response saved as JSON (aws sagemaker describe-hub-content > file), and its source."""
    try:
        response = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"--from-file: {str(path)!r} is not valid; allowed: a saved DescribeHubContent JSON "
                         f"response ({err})") from None
    if not isinstance(response, dict):
        raise UsageError(f"--from-file: {str(path)!r} is not valid; allowed: a JSON object")
    return response, "example" if EXAMPLE_MARK in response else "DescribeHubContent"


def resolved_section(stack: StackFile, response: dict, source: str, now: datetime) -> dict:
    """The checked `resolved` mapping for the stack's instance type, from a hub response."""
    c = stack.config
    try:
        section = resolved_from_hub(response, c.instance_type, now, source)
    except HubContentError as err:
        raise Failure(f"the hub content of {c.jumpstart.model_id} is unusable: {err}") from None
    supported = section.get("supportedInstanceTypes") or []
    if supported and c.instance_type not in supported:
        raise UsageError(f"{PROJECT}:instanceType: {c.instance_type!r} is not valid; allowed: an instance type the "
                         f"hub supports for {c.jumpstart.model_id}: {one_of(supported)}")
    try:
        resolved = ResolvedHubContent.model_validate(section)
        check_environment(resolved.environment, f"{JS_KEY}.resolved.environment")
    except ValidationError as exc:
        raise Failure(f"the hub content of {c.jumpstart.model_id} is unusable: "
                      f"{first_validation_error(exc, prefix='resolved.')}") from None
    except PlanInputError as err:
        raise Failure(f"the hub content of {c.jumpstart.model_id} is refused: {err}") from None
    return section


def _yaml() -> YAML:
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096
    round_trip.indent(mapping=2, sequence=4, offset=2)
    return round_trip


def _commented(value: Any) -> Any:
    if isinstance(value, dict):
        return CommentedMap({k: _commented(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return CommentedSeq([_commented(v) for v in value])
    return value


def _comparable(section: dict | None) -> dict | None:
    """A resolved section without its recording time: two resolves of unchanged hub content compare equal."""
    if section is None:
        return None
    return {k: v for k, v in json.loads(json.dumps(section, default=str)).items() if k != "recordedAt"}


_WRITTEN_BY = ("# Written by `", "# Do not edit by hand: re-run it")


def _drop_written_by(mapping: CommentedMap) -> None:
    """Remove the comment an earlier resolve wrote (ruamel attaches it to the key before `resolved`)."""
    def cleaned(token):
        if isinstance(token, list):
            kept = [t for t in (cleaned(t) for t in token) if t is not None]
            return kept or None
        if token is None or not hasattr(token, "value"):
            return token
        token.value = "\n".join(line for line in token.value.split("\n")
                                if not line.strip().startswith(_WRITTEN_BY))
        return token if token.value.strip() else None

    for key, tokens in list(mapping.ca.items.items()):
        tokens[:] = [cleaned(token) for token in tokens]
        if all(token is None for token in tokens):
            del mapping.ca.items[key]


def write_resolved(path: Path, stack_name: str, section: dict, command: str, model_id: str | None = None) -> str:
    """The stack file's text with `jumpstart.resolved` replaced; everything else (comments, order, quotes) kept.

    The new text is validated as a stack before it is returned, so a write never leaves an invalid stack file.
    """
    round_trip = _yaml()
    document = round_trip.load(path.read_text())
    jumpstart = document["config"][JS_KEY]
    _drop_written_by(jumpstart)
    if model_id is not None:
        jumpstart["modelId"] = model_id  # the hub model resolve chose by name: pinned from now on
    jumpstart["resolved"] = _commented(section)
    what = "an EXAMPLE, not read from the hub" if section["source"] == "example" else "read from DescribeHubContent"
    jumpstart.yaml_set_comment_before_after_key(
        "resolved", before=f"Written by `{command}` on {section['recordedAt']} ({what}).\n"
                           "Do not edit by hand: re-run it to refresh, and review the change like code.", indent=4)
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    text = buffer.getvalue()
    # Read back with the planner's own loader: what it accepts is what the program will plan.
    parse_stack(stack_name, parse_yaml_text(text, str(path))["config"], str(path))
    return text


def list_hub_matches(sm: Any, name: str) -> list[dict]:
    """Every public hub model whose name contains `name` (all pages)."""
    request = {"HubName": HUB_NAME, "HubContentType": HUB_CONTENT_TYPE, "NameContains": name, "MaxResults": 100}
    summaries: list[dict] = []
    try:
        for _ in range(50):  # bounded: 5,000 matches is far beyond any model family
            page = sm.list_hub_contents(**request)
            summaries += page.get("HubContentSummaries", [])
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        raise Failure(f"sagemaker:ListHubContents failed: {code}: "
                      f"{err.response.get('Error', {}).get('Message', '')}") from None
    except BotoCoreError as err:
        raise Failure(f"sagemaker:ListHubContents failed: {err}") from None
    return summaries


def choose_model(stack: StackFile, summaries: list[dict]) -> tuple[HubMatch, tuple[HubMatch, ...]]:
    """The hub model the planner picks for the stack among the name filter's matches (UsageError when none fits)."""
    c = stack.config
    itype = instance_type(c.instance_type, "sagemaker")
    model = load_model(c.model)

    def fit_for(precision: str):
        if precision not in model.checkpoints:
            return None
        return plan_fit(FitRequest(model, GPUS[itype.gpu], itype.gpus, 1, precision, c.context_tokens,
                                   c.concurrency, kv_cache_dtype=c.kv_cache_dtype,
                                   gpu_memory_utilization=c.gpu_memory_utilization), with_alternatives=False)

    chosen, rows = choose_hub_model(summaries, fit_for, c.precision)
    if chosen is None:
        listed = "; ".join(f"{row.name}: {row.reason}" for row in rows) or "no model matched"
        raise UsageError(f"{JS_KEY}.modelName: {c.jumpstart.model_name!r} is not valid; allowed: a name matching a "
                         f"hub model that fits {c.instance_type} ({listed})"[:600])
    if chosen.precision != c.precision:
        raise UsageError(f"{PROJECT}:precision: {c.precision!r} is not valid; allowed: {chosen.precision}, the "
                         f"precision of {chosen.name}, the hub model that fits {c.instance_type}")
    return chosen, rows


def resolve(stack: StackFile, clients: AwsClients | None, *, now: datetime, check: bool = False,
            from_file: Path | None = None) -> ResolveResult:
    """Read the hub content for the stack and write (or, with check, only compare) its `resolved` section."""
    js = stack.config.jumpstart
    model_id, matches = js.model_id, ()
    if from_file is not None:
        response, source = saved_response(from_file)
    else:
        sm = clients.client("sagemaker")
        if model_id is None:
            chosen, matches = choose_model(stack, list_hub_matches(sm, js.model_name))
            model_id = chosen.name
        response, source = describe_hub_content(sm, model_id, js.model_version), "DescribeHubContent"
    section = resolved_section(stack, response, source, now)
    previous = None
    if js.resolved is not None:
        previous = js.resolved.model_dump(by_alias=True, mode="json", exclude_none=True)
    changed = _comparable(previous) != _comparable(section) or (js.model_id is None and model_id is not None)
    path = Path(stack.source)
    written = False
    if changed and not check:
        command = f"{PROG} resolve {stack.name}"
        path.write_text(write_resolved(path, stack.name, section, command,
                                       model_id if js.model_id is None else None))
        written = True
    return ResolveResult(stack.name, path, section, changed, written, previous, matches)


def print_resolve(result: ResolveResult, region: str, console: Console) -> None:
    r = result.resolved
    if result.matches:
        found = Table(title="hub models matching modelName", title_justify="left")
        for column in ("hub content", "version", "precision", "fits", "why"):
            found.add_column(column, overflow="fold")
        for match in result.matches:
            found.add_row(match.name, match.version, match.precision or "-", "yes" if match.fits else "no",
                          match.reason)
        console.print(found)
    table = Table(title=f"resolve {result.stack}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    rows = [("hub content", f"{r.get('hubContentArn')} ({r.get('source')})"),
            ("instance type", r["instanceType"]), ("image", r["imageUri"]),
            ("artifact", f"{r['artifactS3Uri']} ({r['artifactS3DataType']}, compression {r['artifactCompression']})"),
            ("EULA", eula_url(r.get("eulaUri"), region) or "none stated"),
            ("network isolation", str(r["networkIsolation"]).lower()),
            ("environment", " ".join(f"{k}={v}" for k, v in r["environment"].items())),
            ("supported", ", ".join(r.get("supportedInstanceTypes", [])) or "not stated")]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if not result.changed:
        console.print(f"{result.path}: unchanged (the hub content is what the stack records)")
    elif result.written:
        console.print(f"{result.path}: jumpstart.resolved written; review the diff, then read the EULA before "
                      "setting acceptEula to true")
    else:
        console.print(f"[bold red]{result.path}: the hub content differs from jumpstart.resolved[/]; run "
                      f"`{PROG} resolve {result.stack}` to record it")


# ---------------------------------------------------------------------------------------------- endpoint lifecycle


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


def _missing(err: ClientError) -> bool:
    """SageMaker reports a missing endpoint, config or model as a ValidationException "Could not find ..."."""
    error = err.response.get("Error", {})
    return error.get("Code") in NOT_FOUND or (error.get("Code") == "ValidationException"
                                              and "could not find" in error.get("Message", "").lower())


def endpoint_state(sm: Any, name: str) -> EndpointState | None:
    """The endpoint's state, or None when it does not exist."""
    try:
        found = sm.describe_endpoint(EndpointName=name)
    except ClientError as err:
        if _missing(err):
            return None
        raise
    return EndpointState(name, found["EndpointStatus"], found.get("EndpointConfigName"), found.get("FailureReason"),
                         tuple(found.get("ProductionVariants", [])))


class EndpointNotReady(Exception):
    """The endpoint failed, vanished or did not become InService in time."""


def wait_in_service(sm: Any, name: str, timeout_s: float, poll_s: float = 30.0,
                    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                    on_poll: Callable[[EndpointState], None] | None = None) -> EndpointState:
    """Poll DescribeEndpoint until InService; EndpointNotReady on Failed, on disappearance or after timeout_s."""
    deadline = clock() + timeout_s
    while True:
        state = endpoint_state(sm, name)
        if state is None:
            raise EndpointNotReady(f"endpoint {name} does not exist")
        if on_poll:
            on_poll(state)
        if state.status == "InService":
            return state
        if state.status in ("Failed", "OutOfService", "Deleting"):
            reason = f": {state.failure_reason}" if state.failure_reason else ""
            raise EndpointNotReady(f"endpoint {name} is {state.status}{reason}")
        if clock() + poll_s > deadline:
            raise EndpointNotReady(f"endpoint {name} is still {state.status} after {timeout_s:g} s")
        sleep(poll_s)


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
    from scripts.bench import SageMakerTarget

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


# ---------------------------------------------------------------------------------------------------- main


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    res = sub.add_parser("resolve", help="record the hub content in the stack file")
    res.add_argument("stack")
    res.add_argument("--check", action="store_true", help="compare only; exit 1 when the hub content changed")
    res.add_argument("--from-file", type=Path, help="a saved DescribeHubContent JSON response instead of AWS")
    res.add_argument("--json", action="store_true")
    res.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    sm = sub.add_parser("smoke", help="one chat request to the live endpoint")
    sm.add_argument("stack")
    sm.add_argument("--endpoint", help="endpoint name (default nemotron-<stack>)")
    sm.add_argument("--prompt", default="In one sentence: what is a hybrid Mamba-Transformer model?")
    sm.add_argument("--max-tokens", type=whole, default=128)
    sm.add_argument("--stream", action="store_true", help="use InvokeEndpointWithResponseStream")
    sm.add_argument("--wait", type=number, default=0.0, metavar="SECONDS", help="wait this long for InService")
    sm.add_argument("--timeout", type=number, default=300.0, help="seconds for the request itself")
    sm.add_argument("--json", action="store_true")
    sm.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    return parser


def _load(args) -> StackFile:
    stack = load_stack(args.stacks_dir, args.stack)
    if stack.config.target != "jumpstart":
        raise PlanInputError(f"{PROJECT}:target", stack.config.target, "jumpstart (this command is for JumpStart "
                             "stacks)", str(stack_path(args.stacks_dir, args.stack)))
    return stack


def check_smoke_flags(args: argparse.Namespace) -> None:
    """One flag per message, with its value as typed."""
    if not 1 <= args.max_tokens <= 66000:
        raise UsageError(str(PlanInputError("--max-tokens", args.max_tokens, "a whole number from 1 to 66000")))
    if not 0 < args.timeout <= 3600:
        raise UsageError(str(PlanInputError("--timeout", args.timeout, "seconds, more than 0 and at most 3600")))
    if not 0 <= args.wait <= 7200:
        raise UsageError(str(PlanInputError("--wait", args.wait, "seconds from 0 to 7200")))


def main(argv: list[str] | None = None, clients: AwsClients | None = None, now: datetime | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = PipeConsole(highlight=False, width=160)
    try:
        if args.command == "smoke":
            check_smoke_flags(args)
        stack = _load(args)
        if clients is None and not (args.command == "resolve" and args.from_file):
            try:
                clients = AwsClients(session_for(stack.region, stack.aws_profile))
            except ProfileNotFound as err:
                raise UsageError(f"aws:profile / AWS_PROFILE: {err}; allowed: a profile in ~/.aws/config") from None
        if args.command == "resolve":
            result = resolve(stack, clients, now=now or datetime.now(UTC), check=args.check,
                             from_file=args.from_file)
            if args.json:
                print(json.dumps(result.to_json(), indent=2))
            else:
                print_resolve(result, stack.region, console)
            return 1 if args.check and result.changed else 0
        report = smoke(stack, clients, endpoint=args.endpoint, prompt=args.prompt, max_tokens=args.max_tokens,
                       stream=args.stream, wait_s=args.wait, timeout_s=args.timeout,
                       console=None if args.json else console)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_smoke(report, console)
        return 0 if report["ok"] else 1
    except (PlanInputError, UsageError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except Failure as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run_main(main))
