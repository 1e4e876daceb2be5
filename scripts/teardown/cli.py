"""`python -m scripts.teardown`: end a deployment, and reap whatever a destroy left behind, by tag.

  --stack S     run `pulumi destroy --yes -s S` (when the Pulumi CLI is on PATH), then sweep every resource tagged
                nemotron-deploy:stack=S
  --expired     sweep every toolkit resource whose nemotron-deploy:expires-at is past (the hourly reaper)

A dry run by default: it lists what it found and what it would do; `--yes` acts. It never touches a resource that
lacks any of the tags nemotron-deploy:stack, nemotron-deploy:owner and nemotron-deploy:expires-at, nor one whose
expiry does not parse. Credentials come from the standard chain (none found: one line naming what was checked);
boto3 honours AWS_ENDPOINT_URL.

Gather facts (paginated, tag-filtered listings, one kind at a time: a kind that cannot be listed is reported and
hides nothing else) -> plan (planner/reaper.py) -> act in dependency order, with bounded retries and waits (a line
on stderr at most every 30 s says what it waits for) -> gather again and verify.

Exit status: 0 when the dry run listed everything (whatever it found), or when --yes left no selected resource
behind; 1 when something selected remains (blocked, failed, still deleting at the wait bound), a kind could not be
listed (the view is incomplete; the rest is still reaped), no credentials were found, or `pulumi destroy` failed;
2 on bad input (one line naming the flag), nothing changed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.exceptions import ProfileNotFound
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from planner.cli import OneLineParser, PipeConsole, number, run_main
from planner.errors import PlanInputError, one_of
from planner.reaper import FoundResource, ReapPlan, plan_reap
from planner.stack_config import load_stack, stack_names
from scripts.aws import AwsClients, missing_credentials, session_for
from scripts.teardown.common import PROG, Inventory, RetryPolicy
from scripts.teardown.delete import Outcome, act
from scripts.teardown.gather import gather

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
REGION_PATTERN = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
PULUMI_TIMEOUT_S = 3600


# ---- pulumi ----------------------------------------------------------------------------------------------------

def pulumi_destroy(stack: str, dry_run: bool, runner=subprocess.run) -> dict:
    """`pulumi destroy --yes -s STACK` when the CLI is on PATH; its output goes to stderr as it runs."""
    command = ["pulumi", "destroy", "--yes", "--non-interactive", "-s", stack]
    executable = shutil.which("pulumi")
    if executable is None:
        return {"ran": False, "command": command, "exit_code": None,
                "note": "pulumi CLI not on PATH: skipped `pulumi destroy`; sweeping by tag only"}
    if dry_run:
        return {"ran": False, "command": command, "exit_code": None, "note": "dry run: would run " + " ".join(command)}
    try:
        stream = sys.stderr.fileno()  # pulumi's progress goes straight to the terminal
    except (AttributeError, ValueError, OSError):
        stream = None  # stderr is not a file (captured): relay the output afterwards
    try:
        completed = runner([executable, *command[1:]], cwd=REPO, timeout=PULUMI_TIMEOUT_S, check=False,
                           stdout=stream if stream is not None else subprocess.PIPE,
                           stderr=stream if stream is not None else subprocess.STDOUT,
                           text=stream is None)
    except subprocess.TimeoutExpired:
        return {"ran": True, "command": command, "exit_code": None,
                "note": f"pulumi destroy still running after {PULUMI_TIMEOUT_S} s: stopped; sweeping by tag"}
    if stream is None and completed.stdout:
        sys.stderr.write(completed.stdout)
    note = "pulumi destroy finished" if completed.returncode == 0 else \
        f"pulumi destroy failed (exit {completed.returncode}); sweeping by tag"
    return {"ran": True, "command": command, "exit_code": completed.returncode, "note": note}


# ---- the command -----------------------------------------------------------------------------------------------

def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack", help="destroy this stack and sweep what carries its tag")
    which.add_argument("--expired", action="store_true", help="sweep every toolkit resource past its expiry")
    parser.add_argument("--region", action="append", default=[], help="region to sweep (repeatable; default: the "
                                                                       "stack's, or the AWS config's)")
    parser.add_argument("--yes", action="store_true", help="act (default: dry run, list only)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--wait-timeout", type=number, default=900.0,
                        help="seconds to wait for each kind of deletion to finish (default 900)")
    parser.add_argument("--now", help="judge expiry as of this ISO 8601 time with a zone (default: now)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    return parser


@dataclass(frozen=True)
class Request:
    """The validated command line."""

    stack: str | None
    regions: tuple[str, ...]
    profile: str | None
    dry_run: bool
    now: datetime
    wait_timeout_s: float


def validate(args, session_region: str | None) -> Request:
    """Check the flags; raises PlanInputError naming the flag and what is allowed."""
    try:
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
        if now.tzinfo is None:
            raise ValueError
    except ValueError:
        raise PlanInputError("--now", args.now, "an ISO 8601 time with a zone, e.g. 2026-12-01T18:00:00Z") from None
    if not 1 <= args.wait_timeout <= 7200:
        raise PlanInputError("--wait-timeout", args.wait_timeout, "seconds from 1 to 7200")
    for region in args.region:
        if not REGION_PATTERN.fullmatch(region):
            raise PlanInputError("--region", region, "an AWS region name such as us-east-1")
    regions, profile = tuple(dict.fromkeys(args.region)), None
    if args.stack is not None:
        try:
            stack = load_stack(args.stacks_dir, args.stack)
        except PlanInputError as err:
            # a stack whose file is gone or broken can still be swept, given the region
            if not regions:
                allowed = (f"{one_of(stack_names(args.stacks_dir))} (or any name, with --region)"
                           if err.field == "stack" else f"a readable stack ({err}), or any name with --region")
                raise PlanInputError("--stack", args.stack, allowed) from None
        else:
            regions, profile = regions or (stack.region,), stack.aws_profile
    if not regions:
        if not session_region:
            raise PlanInputError("--region", None, "a region such as us-east-1 (none given and no default region "
                                                   "in the AWS configuration)")
        regions = (session_region,)
    return Request(args.stack, regions, profile, not args.yes, now.astimezone(UTC), args.wait_timeout)


def _money(value: float | None) -> str:
    """Dollars per hour as a person reads them: cents, or tenths of a cent below a dollar (an Elastic IP, $0.005)."""
    if value is None:
        return "n/a"
    return "-" if value == 0 else f"${value:,.3f}" if value < 1 else f"${value:,.2f}"


def _label(r: FoundResource) -> str:
    """EC2 ids read well; other kinds are known by name (their ids are ARNs)."""
    if r.kind.startswith("ec2:"):
        return r.id
    return r.attributes.get("name") or r.id


def report_json(request: Request, plan: ReapPlan, inventory: Inventory, outcomes: dict[str, Outcome],
                left: list[dict], pulumi: dict | None, exit_code: int) -> dict:
    document = plan.to_json()
    for entry in document["deletions"]:
        outcome = outcomes.get(entry["id"])
        entry["outcome"] = outcome.status if outcome else (_would(entry) if request.dry_run else None)
        entry["detail"] = outcome.detail if outcome else ""
    stopped = sum(d.usd_per_hour or 0 for d in plan.deletions
                  if outcomes.get(d.resource.id) and outcomes[d.resource.id].status in ("deleted", "already gone"))
    return {"mode": "stack" if request.stack else "expired", "dry_run": request.dry_run,
            "regions": list(request.regions), "pulumi": pulumi, **document,
            "usd_per_hour_stopped": round(stopped if not request.dry_run else plan.usd_per_hour_stopped, 3),
            "listing_errors": list(inventory.listing_errors),
            "unlisted": [{"region": region, "kind": kind} for region, kind in inventory.unlisted],
            "left": left, "exit_code": exit_code}


def _would(entry: dict) -> str:
    if entry["action"] == "with-manager":
        return f"would go: {entry['note']}"
    if entry["action"] == "wait":
        return f"would wait: {entry['note']}"
    return f"would {entry['action']}"


def print_report(document: dict, console: Console) -> None:
    mode = f"stack {document['stack']}" if document["mode"] == "stack" else "expired resources"
    found = document["found"]
    console.print(f"[bold]teardown[/] of {mode} in {', '.join(document['regions'])} as of {document['now']}"
                  f"{'  (dry run: nothing changed; --yes to act)' if document['dry_run'] else ''}")
    if document.get("pulumi"):
        console.print(f"  {escape(document['pulumi']['note'])}", highlight=False)
    console.print(f"  listed {found['total']} with an expires-at tag: {found['expired']} expired, {found['live']} "
                  f"live, {found['foreign']} foreign (left alone), {found['malformed']} with an unreadable expiry",
                  highlight=False)
    if document["deletions"]:
        table = Table(title_justify="left")
        for header in ("region", "kind", "resource", "stack", "expires-at", "state", "action", "$/h"):
            table.add_column(header, justify="right" if header == "$/h" else "left")
        for d in document["deletions"]:
            outcome = d["outcome"] or d["action"]
            if d.get("detail"):
                outcome += f": {d['detail']}"
            table.add_row(d["region"], d["kind"], escape(d["label"]), escape(d["stack"] or ""), d["expires_at"],
                          d["state"] or "", escape(outcome), _money(d["usd_per_hour"]))
        console.print(table)
    else:
        console.print("  nothing to delete", highlight=False)
    verb = "would stop" if document["dry_run"] else "stopped"
    unpriced = f" (n/a for {len(document['unpriced'])} of unknown price)" if document["unpriced"] else ""
    console.print(f"  {verb} {_money(document['usd_per_hour_stopped']) if document['usd_per_hour_stopped'] else '$0'}"
                  f"/hour of compute and network{unpriced}", highlight=False)
    for b in document["blocked"]:
        console.print(f"  [yellow]left:[/] {b['kind']} {escape(b['id'])}: {escape(b['reason'])}", highlight=False,
                      soft_wrap=True)
    for m in document["malformed"]:
        console.print(f"  [yellow]not ours:[/] {m['kind']} {escape(m['id'])}: {escape(m['reason'])}", highlight=False,
                      soft_wrap=True)
    for error in document["listing_errors"]:
        console.print(f"  [red]could not list[/] {escape(error)}", highlight=False, soft_wrap=True)
    for item in document["left"]:
        console.print(f"  [red]still there:[/] {item['kind']} {escape(item['id'])} ({escape(item['why'])})",
                      highlight=False, soft_wrap=True)


def still_selected(again: ReapPlan, outcomes: dict[str, Outcome]) -> list[dict]:
    """What the verifying listing still selects, with why: the outcome of its deletion, or the reason it was left."""
    left = []
    for d in again.deletions:
        outcome = outcomes.get(d.resource.id)
        why = (f"{outcome.status}: {outcome.detail}" if outcome and outcome.detail else outcome.status) if outcome \
            else "found only after the sweep"
        left.append({"region": d.resource.region, "kind": d.resource.kind, "id": d.resource.id, "why": why})
    left += [{"region": b.resource.region, "kind": b.resource.kind, "id": b.resource.id, "why": b.reason}
             for b in again.blocked]
    return left


def main(argv: list[str] | None = None, session: boto3.Session | None = None,
         policy: RetryPolicy | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        base = session or session_for(None)
        request = validate(args, base.region_name)
    except PlanInputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    try:
        if session is None and request.profile:
            base = session_for(None, request.profile)
        problem = missing_credentials(base)
    except ProfileNotFound as err:
        problem = f"no AWS credentials: {err} (the stack's aws:profile)"
    if problem:  # one line, before anything is called: not "nothing to delete" and a credential error per listing
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 1
    clients = AwsClients(base)
    policy = policy or RetryPolicy(wait_timeout_s=request.wait_timeout_s)
    pulumi = pulumi_destroy(request.stack, request.dry_run) if request.stack else None

    inventory = gather(clients, request.regions, stack=request.stack)
    plan = plan_reap(inventory.resources, request.now, request.stack)
    outcomes: dict[str, Outcome] = {}
    left: list[dict] = []
    if not request.dry_run:
        outcomes = act(plan, clients, policy)
        after = gather(clients, request.regions, stack=request.stack)
        inventory.listing_errors += [f"(verify) {e}" for e in after.listing_errors]
        inventory.unlisted += [u for u in after.unlisted if u not in inventory.unlisted]
        left = still_selected(plan_reap(after.resources, request.now, request.stack), outcomes)
    failed_pulumi = bool(pulumi and pulumi["ran"] and pulumi["exit_code"] != 0)
    exit_code = 1 if left or inventory.listing_errors or failed_pulumi else 0
    document = report_json(request, plan, inventory, outcomes, left, pulumi, exit_code)
    labels = {d.resource.id: _label(d.resource) for d in plan.deletions}
    for entry in document["deletions"]:
        entry["label"] = labels[entry["id"]]
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_report(document, PipeConsole(highlight=False, width=200))
    return exit_code


if __name__ == "__main__":
    sys.exit(run_main(main))
