"""`python -m scripts.preflight STACK [--json] [--stacks-dir DIR]`: can this AWS account take the stack, before
`pulumi up`? Credentials, the vCPU or endpoint quota, whether the instance type is offered where the stack puts it,
the capacity reservation, the Deep Learning AMI parameter and the staged copy of the weights (its manifest and every
file it lists, docs/weights.md); for JumpStart, that a person accepted the model's EULA;
for a stack that needs a secret to deploy (ngcApiKey for NIM), that the stack file holds it.

Each check passes, fails with what to do, or is skipped with why. Exit 0 when no check failed, 1 when one did, 2 on
bad input (an unknown stack or a bad key, in one line). Read-only: it changes nothing in the account.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import ProfileNotFound
from rich.console import Console
from rich.table import Table

from planner.cli import OneLineParser, PipeConsole, run_main
from planner.errors import PlanInputError
from planner.plan import StackPlan, plan_stack
from planner.stack_config import load_stack
from planner.targets.eks import required_secret_keys
from scripts.aws import AwsClients, session_for
from scripts.preflight.capacity import check_capacity_reservation, check_dlami, check_offering
from scripts.preflight.offline import check_eula, check_plan, check_required_secrets
from scripts.preflight.quotas import check_credentials, check_endpoint_quota, check_on_demand_quota
from scripts.preflight.results import FAIL, PASS, SKIP, CheckResult
from scripts.preflight.weights import NAME as WEIGHTS_CHECK
from scripts.preflight.weights import check_staged_weights

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
PROG = "python -m scripts.preflight"


def preflight(plan: StackPlan, clients: AwsClients) -> list[CheckResult]:
    """Every check that applies to the stack's target, in order; with no credentials the AWS checks are skipped."""
    results = [check_plan(plan)]
    if plan.config.target == "jumpstart":
        results.append(check_eula(plan))  # offline: needs no credentials
    if required_secret_keys(plan.config):
        results.append(check_required_secrets(plan))  # offline too
    results.append(_guarded("credentials", lambda: check_credentials(clients.client("sts"))))
    target = plan.config.target
    checks: list[tuple[str, Callable[[], CheckResult]]]
    if target == "jumpstart":
        checks = [("sagemaker-endpoint-quota", lambda: check_endpoint_quota(plan, clients.client("service-quotas")))]
    else:
        checks = [
            ("ec2-vcpu-quota", lambda: check_on_demand_quota(plan, clients.client("service-quotas"),
                                                             clients.client("ec2"))),
            ("instance-offering", lambda: check_offering(plan, clients.client("ec2"))),
            ("capacity-reservation", lambda: check_capacity_reservation(plan, clients.client("ec2"))),
        ]
        if target == "ec2":
            checks.append(("dlami-parameter", lambda: check_dlami(plan, clients.client("ssm"))))
            checks.append((WEIGHTS_CHECK, lambda: check_staged_weights(plan, clients.client("s3"))))
    if results[-1].status != PASS:
        return results + [CheckResult(name, SKIP, "needs working credentials") for name, _ in checks]
    return results + [_guarded(name, run) for name, run in checks]


def _guarded(name: str, run: Callable[[], CheckResult]) -> CheckResult:
    """One check's result; an unexpected error fails that check instead of hiding the others."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - a report row beats a traceback that hides the other checks
        return CheckResult(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                           "report this with the stack file; the other checks are unaffected")


# ------------------------------------------------------------------------------------------------------ output

_STYLE = {PASS: "[bold green]pass[/]", FAIL: "[bold red]fail[/]", SKIP: "[yellow]skip[/]"}


def print_table(stack: str, region: str, results: list[CheckResult], console: Console) -> None:
    table = Table(title=f"preflight {stack} ({region})", title_justify="left")
    for column in ("check", "status", "detail", "what to do"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.name, _STYLE[r.status], r.detail, r.remedy)
    console.print(table)
    failed = [r.name for r in results if r.status == FAIL]
    console.print(f"[bold red]{len(failed)} check(s) failed: {', '.join(failed)}[/]" if failed
                  else "[bold green]ready for `pulumi up`[/]")


def main(argv: list[str] | None = None, clients: AwsClients | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__)
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object {"stack", "checks": [{name, status, detail, remedy}], "ok"}')
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    args = parser.parse_args(argv)
    try:
        stack = load_stack(args.stacks_dir, args.stack)
        plan = plan_stack(stack, datetime.now(UTC))
    except PlanInputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    if clients is None:
        try:
            clients = AwsClients(session_for(plan.region, stack.aws_profile))
        except ProfileNotFound as err:
            print(f"{PROG}: aws:profile / AWS_PROFILE: {err}; allowed: a profile in ~/.aws/config", file=sys.stderr)
            return 2
    console = PipeConsole(highlight=False, width=160)
    if args.json or not console.is_terminal:
        results = preflight(plan, clients)
    else:
        with console.status(f"checking {plan.stack} in {plan.region}..."):
            results = preflight(plan, clients)
    ok = all(r.status != FAIL for r in results)
    if args.json:
        print(json.dumps({"stack": plan.stack, "checks": [r.to_json() for r in results], "ok": ok}, indent=2))
    else:
        print_table(plan.stack, plan.region, results, console)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_main(main))

