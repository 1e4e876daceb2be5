"""`resolve`: read a public JumpStart model's hub content and record it in the stack file (`jumpstart.resolved`),
choosing the hub model by name when the stack names no modelId."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from planner.errors import PlanInputError, one_of
from planner.fit import FitRequest, plan_fit
from planner.hardware import GPUS, instance_type
from planner.models import first_validation_error, load_model
from planner.stack_config import PROJECT, ResolvedHubContent, StackFile, parse_stack
from planner.targets.jumpstart import (
    HUB_CONTENT_TYPE,
    HUB_NAME,
    HubContentError,
    HubMatch,
    check_environment,
    choose_hub_model,
    eula_url,
    resolved_from_hub,
)
from planner.yamlfile import parse_yaml_text
from scripts.aws import AwsClients, describe_error, error_code, is_not_found, token_pages
from scripts.jumpstart.common import JS_KEY, PROG, Failure, UsageError

EXAMPLE_MARK = "_example"  # a saved response carrying this key is an illustration: recorded as source "example"



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
        if is_not_found(err):
            which = model_id if version == "*" else f"{model_id} version {version}"
            raise UsageError(f"{JS_KEY}.modelId: {which!r} is not valid; allowed: a model id in {HUB_NAME} "
                             f"(DescribeHubContent: {error_code(err)})") from None
        raise Failure(f"sagemaker:DescribeHubContent failed: {describe_error(err)}") from None
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
    try:  # bounded: 50 pages of 100, 5,000 matches, is far beyond any model family
        return token_pages(sm.list_hub_contents, "HubContentSummaries", most_pages=50, HubName=HUB_NAME,
                           HubContentType=HUB_CONTENT_TYPE, NameContains=name, MaxResults=100)
    except ClientError as err:
        raise Failure(f"sagemaker:ListHubContents failed: {describe_error(err)}") from None
    except BotoCoreError as err:
        raise Failure(f"sagemaker:ListHubContents failed: {err}") from None


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

