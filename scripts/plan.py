"""`python -m scripts.plan [STACK ...] [--json]`: the offline plan of every stack, no cloud account needed.

For each stack: the fit verdict with its numbers, the layout, the serving command, cost and time-to-live, the
resources the Pulumi program declares and the policy findings. Exit 0 when every stack is valid and fits, 1 when
one does not fit or has findings, 2 on bad input (one line naming the key).

A stack that lacks a secret it cannot deploy without (ngcApiKey for NIM) is marked "cannot deploy" in the table and
in `cannot_deploy` of its JSON entry. Planning every stack (`make plan`) still exits 0 for it: the shipped examples
hold no secrets. Naming the stack (`python -m scripts.plan eks-nim`) asks whether it can be deployed: then each
missing secret is one line on stderr and the exit status is 2.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from components.offline import declared_resources
from planner.cli import OneLineParser, PipeConsole, run_main
from planner.errors import PlanInputError
from planner.plan import StackPlan, plan_stack
from planner.policy import check_resources
from planner.stack_config import load_stack, stack_names
from planner.targets.eks import missing_required_secrets, missing_secret_message

REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"


# What each target does by itself when its expiry passes (docs/lifecycle.md).
SELF_END = {"ec2": "the servers terminate themselves then", "eks": "the GPU nodes scale to zero then",
            "jumpstart": "a schedule deletes the endpoint then"}


def plan_entry(plan: StackPlan) -> dict:
    """One stack's JSON entry (the plan JSON contract: stack, target, fit, serving, cost, resources, violations)."""
    entry = plan.to_json()
    entry["resources"] = []
    if plan.fit.fits:  # a plan that does not fit stops the program before it declares anything
        # The program plans again under mocks; as of expiry - TTL it computes the same expiry, so the same tags.
        as_of = plan.expires_at - timedelta(hours=plan.config.ttl_hours)
        entry["resources"] = declared_resources(plan.stack, stacks_dir=Path(plan.source).parent, now=as_of)
    entry["violations"] = [v.to_json() for v in check_resources(entry["resources"], plan.tags)]
    entry["cannot_deploy"] = [missing_secret_message(plan.stack, key) for key in missing_required_secrets(plan.config)]
    return entry


def resources_by_type(resources: list[dict]) -> dict[str, list[str]]:
    """Declared resource names grouped by the short type name (`LaunchTemplate`), in declaration order."""
    grouped: dict[str, list[str]] = {}
    for resource in resources:
        grouped.setdefault(resource["type"].rsplit(":", 1)[-1], []).append(resource["name"])
    return grouped


def cold_start_text(entry: dict) -> str:
    """The cold start's summary, its rates and the timeouts that follow from it (docs/sources.md#cold-start)."""
    cold = entry["cold_start"]
    rates = "; ".join(cold["rates"]) or "SageMaker's download at 1 GB/s, load at 2 GB/s (assumed)"
    if "jumpstart" in entry:
        timeouts = f"SageMaker's timeouts: {entry['jumpstart']['timeouts']['describe']}"
    else:
        timeouts = f"the startup timeout is {cold['timeout_s']:,} s"
    return f"{cold['summary']}\n{rates}\n(docs/sources.md#cold-start; {timeouts})"


def print_entry(entry: dict, console: Console) -> None:
    fit = entry["fit"]
    verdict = "[bold green]fits[/]" if fit["fits"] else "[bold red]does not fit[/]"
    console.rule(f"[bold]{entry['stack']}[/]  {entry['target']} / {entry['engine']}  {entry['nodes']}x "
                 f"{entry['instance_type']}  {fit['precision']}  {verdict}")
    table = Table(show_header=False, box=None, pad_edge=False)
    cost = entry["cost"]
    hourly = f"${cost['usd_per_hour']:,.2f}/h" if cost["usd_per_hour"] is not None else "price n/a"
    spend = f"${cost['max_spend_usd']:,.0f}" if cost["max_spend_usd"] is not None else "n/a"
    per_million = (f"${cost['usd_per_million_output_tokens']:,.2f}" if cost["usd_per_million_output_tokens"]
                   is not None else "n/a")
    rows = [
        ("layout", entry["layout"]["description"]),
        ("memory", f"weights {fit['weights_gib']:,.1f} GiB ({fit['weights_per_gpu_gib']:,.1f}/GPU), "
                   f"free {fit['per_gpu_free_gib']:,.1f} GiB/GPU, margin {fit['margin_gib']:,.1f} GiB/GPU"),
        ("capacity", f"{fit['max_concurrent_sequences']:,} sequences at {fit['context']:,} tokens "
                     f"({fit['concurrency']} configured)"),
        ("throughput", f"<= {entry['throughput']['single_stream_tokens_per_s_upper_bound']:,.0f} tok/s per "
                       f"stream, <= {entry['throughput']['aggregate_tokens_per_s_upper_bound']:,.0f} tok/s total "
                       f"(upper bound, {entry['throughput']['bound_by']})"),
        ("cost", f"{hourly}; at most {spend} over the {entry['ttl_hours']:g} h TTL; >= {per_million} per 1M "
                 f"output tokens"),
        ("expires", f"{entry['expires_at']} ({SELF_END[entry['target']]})"),
        *([("cold start", cold_start_text(entry))] if "cold_start" in entry else []),
        ("resources", f"{len(entry['resources'])} declared" + "".join(
            f"\n{kind}: {', '.join(names)}" for kind, names in resources_by_type(entry["resources"]).items())),
        ("violations", ", ".join(v["rule"] + ": " + v["resource"] for v in entry["violations"]) or "none"),
    ]
    serving = entry["serving"]
    if "command" in serving:
        rows.append(("serve", serving["command"]))
        if serving["env"]:
            rows.append(("env", " ".join(f"{k}={v}" for k, v in serving["env"].items())))
    elif "env" in serving:
        rows.append(("NIM env", " ".join(f"{k}={v}" for k, v in serving["env"].items())))
    rows += [("deploy", f"[bold red]cannot deploy:[/] {reason}") for reason in entry.get("cannot_deploy", [])]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    for reason in fit["reasons"]:
        console.print(f"  - {reason}", highlight=False)
    for warning in entry["warnings"]:
        console.print(f"  [yellow]! {warning}[/]", highlight=False)
    for alt in fit["alternatives"]:
        console.print(f"  * would fit: {alt}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m scripts.plan", description=__doc__)
    parser.add_argument("stacks", nargs="*", help="stack names (default: every stack in stacks/)")
    parser.add_argument("--json", action="store_true", help='one JSON object {"stacks": [...]} on stdout')
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    parser.add_argument("--now", help="plan as of this ISO 8601 UTC time (default: now)")
    args = parser.parse_args(argv)
    try:
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
        if now.tzinfo is None:
            raise ValueError
    except ValueError:
        print(f"python -m scripts.plan: --now: {args.now!r} is not valid; allowed: an ISO 8601 time with a zone, "
              "e.g. 2026-12-01T18:00:00Z", file=sys.stderr)
        return 2
    if not args.stacks_dir.is_dir():
        print(f"python -m scripts.plan: --stacks-dir: {str(args.stacks_dir)!r} is not a directory; allowed: the "
              "folder of Pulumi.<stack>.yaml files (default stacks/)", file=sys.stderr)
        return 2
    names = args.stacks or stack_names(args.stacks_dir)
    if not names:
        print(f"python -m scripts.plan: --stacks-dir: {str(args.stacks_dir)!r} holds no Pulumi.<stack>.yaml file",
              file=sys.stderr)
        return 2
    entries, status = [], 0
    for name in names:
        try:
            plan = plan_stack(load_stack(args.stacks_dir, name), now)
        except PlanInputError as err:
            print(f"python -m scripts.plan: {err}", file=sys.stderr)
            status = 2
            continue
        entry = plan_entry(plan)
        entries.append(entry)
        if args.stacks and entry["cannot_deploy"]:  # named: planned for deployment
            for reason in entry["cannot_deploy"]:
                print(f"python -m scripts.plan: {plan.source}: {reason}", file=sys.stderr)
            status = 2
        if status == 0 and (not entry["fit"]["fits"] or entry["violations"]):
            status = 1
    if args.json:
        print(json.dumps({"stacks": entries}, indent=2))
    else:
        console = PipeConsole(highlight=False, width=160)
        for entry in entries:
            print_entry(entry, console)
    return status


if __name__ == "__main__":
    sys.exit(run_main(main))
