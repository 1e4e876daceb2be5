"""`python -m scripts.preflight STACK [--json] [--stacks-dir DIR]`: can this AWS account take the stack, before
`pulumi up`? Credentials, the vCPU or endpoint quota, whether the instance type is offered where the stack puts it,
the capacity reservation and the Deep Learning AMI parameter; for JumpStart, that a person accepted the model's EULA;
for a stack that needs a secret to deploy (ngcApiKey for NIM), that the stack file holds it.

Each check passes, fails with what to do, or is skipped with why. Exit 0 when no check failed, 1 when one did, 2 on
bad input (an unknown stack or a bad key, in one line). Read-only: it changes nothing in the account.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from rich.console import Console
from rich.table import Table

from planner.cli import OneLineParser, PipeConsole, run_main
from planner.errors import PlanInputError
from planner.estimates import iso_utc
from planner.hardware import INSTANCE_TYPES
from planner.kubernetes import missing_required_secrets, missing_secret_message, required_secret_keys
from planner.plan import TAG_STACK, StackPlan, plan_stack
from planner.stack_config import load_stack
from planner.user_data import boot_image
from scripts._aws import AwsClients, session_for

REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"
PROG = "python -m scripts.preflight"

PASS, FAIL, SKIP = "pass", "fail", "skip"

# On-Demand vCPU quotas (service code ec2) by instance family letter. docs/sources.md#aws-limits.
ON_DEMAND_QUOTAS = {"p": ("L-417A185B", "Running On-Demand P instances")}
ENDPOINT_QUOTA_NAME = "{instance_type} for endpoint usage"
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException")


@dataclass(frozen=True)
class CheckResult:
    """One preflight check: its name, pass/fail/skip, what was found and, on failure, what to do."""

    name: str
    status: str
    detail: str
    remedy: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "remedy": self.remedy}


def nodes_needed(plan: StackPlan) -> int:
    """Instances the stack may run at once: its nodes, or the node group / endpoint maximum when larger."""
    c = plan.config
    if c.target == "eks" and c.eks and c.eks.max_nodes:
        return max(c.nodes, c.eks.max_nodes)
    if c.target == "jumpstart" and c.jumpstart:
        return max(c.nodes, c.jumpstart.max_capacity)
    return c.nodes


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def _api_failure(name: str, exc: Exception, action: str) -> CheckResult:
    """A check that could not ask AWS: say which call failed and what would let it."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "Error")
        detail = f"{action} failed: {code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        if code in DENIED:
            return CheckResult(name, FAIL, detail, f"allow {action} for this identity (see docs/preflight.md)")
        return CheckResult(name, FAIL, detail, "retry; if it persists, check the region and the service's status")
    return CheckResult(name, FAIL, f"{action} failed: {exc}", "check network access to AWS and AWS_ENDPOINT_URL")


# ------------------------------------------------------------------------------------------------------ checks


def check_plan(plan: StackPlan) -> CheckResult:
    """The stack's plan fits: a configuration that cannot load the model is not worth a quota request."""
    fit = plan.fit
    layout = fit.layout.describe()
    warnings = f"; warnings: {'; '.join(plan.warnings)}" if plan.warnings else ""
    if fit.fits:
        return CheckResult("plan", PASS, f"{plan.config.nodes} x {plan.instance.name}, {fit.request.precision}: "
                                         f"fits ({layout}){warnings}")
    return CheckResult("plan", FAIL, f"does not fit: {'; '.join(fit.reasons)}",
                       f"run `python -m scripts.plan {plan.stack}` for configurations that fit")


def check_eula(plan: StackPlan) -> CheckResult:
    """A JumpStart model's EULA was accepted by a person, for the hub content the stack records (never by default)."""
    name, js = "eula-accepted", plan.config.jumpstart
    resolved = js.resolved
    if resolved is None:
        return CheckResult(name, FAIL, f"{js.model_id}: hub content not resolved, so the EULA to accept is unknown",
                           f"run `python -m scripts.jumpstart resolve {plan.stack}`, read the EULA it records, then "
                           "set jumpstart.acceptEula to true")
    link = plan.jumpstart.eula_url if plan.jumpstart else resolved.eula_uri
    what = f"{js.model_id} {resolved.hub_content_version} (resolved {iso_utc(resolved.recorded_at)})"
    if not js.accept_eula:
        return CheckResult(name, FAIL, f"jumpstart.acceptEula is false for {what}; SageMaker refuses the model",
                           f"read {link or 'the model EULA'} and, if you accept it, set jumpstart.acceptEula to true")
    return CheckResult(name, PASS, f"accepted for {what}: {link or 'no EULA stated by the hub'}")


def check_required_secrets(plan: StackPlan) -> CheckResult:
    """The stack file holds every secret the stack cannot deploy without (a `secure:` value), read offline: without
    it `pulumi up` fails only after the network and cluster have started."""
    name, required = "required-secrets", required_secret_keys(plan.config)
    missing = missing_required_secrets(plan.config)
    if missing:
        return CheckResult(name, FAIL, "; ".join(missing_secret_message(plan.stack, key) for key in missing),
                           "; ".join(f"pulumi config set --secret {key} ... -s {plan.stack}" for key in missing))
    return CheckResult(name, PASS, f"{', '.join(required)} set as a Pulumi secret")


def check_credentials(sts: Any) -> CheckResult:
    """Working credentials for the stack's account (sts:GetCallerIdentity needs no permission)."""
    try:
        identity = sts.get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        result = _api_failure("credentials", exc, "sts:GetCallerIdentity")
        return CheckResult("credentials", FAIL, result.detail,
                           "set AWS_PROFILE (or the stack's aws:profile) and log in, e.g. `aws sso login`")
    return CheckResult("credentials", PASS, f"account {identity['Account']} as {identity['Arn']}")


def _quota_value(quotas: Any, service: str, code: str) -> float:
    """The applied quota value, or AWS's default when none was ever applied to this account."""
    try:
        return float(quotas.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchResourceException":
            raise
    return float(quotas.get_aws_default_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])


def _vcpus(ec2: Any, instance_types: set[str]) -> dict[str, int]:
    known = {t: INSTANCE_TYPES[t].vcpus for t in instance_types if t in INSTANCE_TYPES}
    unknown = sorted(instance_types - set(known))
    if unknown:
        for page in ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=unknown):
            known.update({t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"] for t in page["InstanceTypes"]})
    return known


def vcpus_in_use(ec2: Any, family: str, stack: str) -> tuple[int, int]:
    """vCPUs of running or pending On-Demand instances of one family that are not this stack's own: (vcpus, count).

    Spot instances have their own quota; this stack's instances are replaced or kept by `pulumi up`, not added.
    """
    running = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                if (instance["InstanceType"].startswith(family) and instance.get("InstanceLifecycle") != "spot"
                        and tags.get(TAG_STACK) != stack):
                    running.append(instance["InstanceType"])
    vcpus = _vcpus(ec2, set(running))
    return sum(vcpus.get(t, 0) for t in running), len(running)


def check_on_demand_quota(plan: StackPlan, quotas: Any, ec2: Any) -> CheckResult:
    """The On-Demand vCPU quota of the instance family covers nodes x vCPUs on top of what already runs."""
    name, c, itype = "ec2-vcpu-quota", plan.config, plan.instance
    if c.capacity_block:
        return CheckResult(name, SKIP, f"Capacity Block {c.capacity_reservation_id}: instances in a Capacity Block "
                                       "are not counted against the On-Demand vCPU quota (see docs/preflight.md)")
    family = re.match(r"[a-z]+", itype.name).group()[0]
    if family not in ON_DEMAND_QUOTAS:
        return CheckResult(name, SKIP, f"no On-Demand quota code known for {itype.name}")
    code, quota_name = ON_DEMAND_QUOTAS[family]
    nodes = nodes_needed(plan)
    needed = nodes * itype.vcpus
    try:
        value = _quota_value(quotas, "ec2", code)
    except (ClientError, BotoCoreError) as exc:
        return _api_failure(name, exc, "servicequotas:GetServiceQuota")
    try:
        in_use, count = vcpus_in_use(ec2, family, plan.stack)
        running = f"; {in_use:,} in use by {count} other running {family.upper()} instance(s)" if count else ""
    except (ClientError, BotoCoreError):
        in_use, running = 0, "; instances already running not counted (ec2:DescribeInstances was refused)"
    reservation = (f"; reservation {c.capacity_reservation_id} runs On-Demand instances, which count here"
                   if c.capacity_reservation_id else "")
    detail = (f"{needed:,} vCPUs needed ({nodes} x {itype.name} at {itype.vcpus}); {code} ({quota_name}) "
              f"is {_number(value)} in {plan.region}{running}{reservation}")
    if value - in_use >= needed:
        return CheckResult(name, PASS, detail)
    target = needed + in_use
    return CheckResult(name, FAIL, detail,
                       f"request an increase of {code} to >= {target:,}: `aws service-quotas "
                       f"request-service-quota-increase --service-code ec2 --quota-code {code} --desired-value "
                       f"{target} --region {plan.region}`, or run in a Capacity Block")


def _endpoint_quota(quotas: Any, quota_name: str) -> tuple[str, float] | None:
    for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
        for page in quotas.get_paginator(operation).paginate(ServiceCode="sagemaker"):
            for quota in page["Quotas"]:
                if quota.get("QuotaName") == quota_name:
                    return quota["QuotaCode"], float(quota["Value"])
    return None


def check_endpoint_quota(plan: StackPlan, quotas: Any) -> CheckResult:
    """The SageMaker "<ml type> for endpoint usage" quota covers the endpoint's instances."""
    name = "sagemaker-endpoint-quota"
    quota_name = ENDPOINT_QUOTA_NAME.format(instance_type=plan.instance.name)
    needed = nodes_needed(plan)
    try:
        found = _endpoint_quota(quotas, quota_name)
    except (ClientError, BotoCoreError) as exc:
        return _api_failure(name, exc, "servicequotas:ListServiceQuotas")
    if found is None:
        return CheckResult(name, FAIL, f'no SageMaker quota named "{quota_name}" in {plan.region}',
                           f"check that {plan.instance.name} is offered for SageMaker hosting in {plan.region}, "
                           "or choose another instanceType")
    code, value = found
    detail = f'{needed} instance(s) needed; {code} ("{quota_name}") is {_number(value)} in {plan.region}'
    if value >= needed:
        return CheckResult(name, PASS, detail)
    return CheckResult(name, FAIL, detail,
                       f"request an increase of {code} to >= {needed}: `aws service-quotas "
                       f"request-service-quota-increase --service-code sagemaker --quota-code {code} "
                       f"--desired-value {needed} --region {plan.region}`")


def check_offering(plan: StackPlan, ec2: Any) -> CheckResult:
    """The instance type is offered in the stack's region, and in its availability zone when it names one."""
    name, itype, zone = "instance-offering", plan.instance.name, plan.config.availability_zone
    try:
        zones = sorted(
            offering["Location"]
            for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
                LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [itype]}])
            for offering in page["InstanceTypeOfferings"])
    except (ClientError, BotoCoreError) as exc:
        return _api_failure(name, exc, "ec2:DescribeInstanceTypeOfferings")
    if not zones:
        return CheckResult(name, FAIL, f"{itype} is not offered in any availability zone of {plan.region}",
                           f"choose another region or instanceType (`aws ec2 describe-instance-type-offerings "
                           f"--location-type availability-zone --filters Name=instance-type,Values={itype} "
                           f"--region REGION`)")
    if zone and zone not in zones:
        return CheckResult(name, FAIL, f"{itype} is not offered in {zone}; it is offered in {', '.join(zones)}",
                           f"set nemotron-deploy:availabilityZone to one of {', '.join(zones)}")
    where = zone or f"{plan.region} ({', '.join(zones)})"
    return CheckResult(name, PASS, f"{itype} is offered in {where}")


def check_capacity_reservation(plan: StackPlan, ec2: Any) -> CheckResult:
    """The configured reservation is active, of the right type and zone, with enough free instances."""
    name, c = "capacity-reservation", plan.config
    if not c.capacity_reservation_id:
        return CheckResult(name, SKIP, "no capacityReservationId: instances launch On-Demand, where p5-class "
                                       "capacity is often short (a Capacity Block guarantees it)")
    rid = c.capacity_reservation_id
    try:
        found = ec2.describe_capacity_reservations(CapacityReservationIds=[rid])["CapacityReservations"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "").startswith("InvalidCapacityReservationId"):
            return CheckResult(name, FAIL, f"{rid} does not exist in this account in {plan.region}",
                               "check nemotron-deploy:capacityReservationId and aws:region")
        return _api_failure(name, exc, "ec2:DescribeCapacityReservations")
    except BotoCoreError as exc:
        return _api_failure(name, exc, "ec2:DescribeCapacityReservations")
    if not found:
        return CheckResult(name, FAIL, f"{rid} does not exist in this account in {plan.region}",
                           "check nemotron-deploy:capacityReservationId and aws:region")
    cr = found[0]
    nodes = nodes_needed(plan)
    state, rtype, zone = cr.get("State"), cr.get("InstanceType"), cr.get("AvailabilityZone")
    available, total = cr.get("AvailableInstanceCount", 0), cr.get("TotalInstanceCount", 0)
    block = cr.get("ReservationType") == "capacity-block"
    problems: list[tuple[str, str]] = []
    if state != "active":
        start = cr.get("StartDate")
        when = f", starts {iso_utc(start)}" if isinstance(start, datetime) and state == "scheduled" else ""
        problems.append((f"state is {state}{when}", "deploy once it is active, or use an active reservation"))
    if rtype != plan.instance.name:
        problems.append((f"it reserves {rtype}, the stack uses {plan.instance.name}",
                         f"set nemotron-deploy:instanceType to {rtype} or use a {plan.instance.name} reservation"))
    if c.availability_zone and zone != c.availability_zone:
        problems.append((f"it is in {zone}, the stack uses {c.availability_zone}",
                         f"set nemotron-deploy:availabilityZone to {zone}"))
    if available < nodes:
        problems.append((f"{available} of {total} instances available, {nodes} needed",
                         "free instances in it, reserve more, or lower nemotron-deploy:nodes"))
    if block != c.capacity_block:
        kind = "a Capacity Block" if block else "an On-Demand Capacity Reservation"
        problems.append((f"it is {kind} but capacityBlock is {str(c.capacity_block).lower()}",
                         f"set nemotron-deploy:capacityBlock to {str(block).lower()}"))
    end = cr.get("EndDate")
    ends = f", ends {iso_utc(end)}" if isinstance(end, datetime) else ""
    if isinstance(end, datetime) and end < plan.expires_at:
        ends += f" (before the stack's expiry {iso_utc(plan.expires_at)}: its instances stop then)"
    if problems:
        return CheckResult(name, FAIL, f"{rid}: " + "; ".join(p for p, _ in problems) + ends,
                           "; ".join(r for _, r in problems))
    kind = "Capacity Block" if block else "reservation"
    return CheckResult(name, PASS, f"{rid}: active {kind}, {available} of {total} x {rtype} free in {zone}{ends}")


def dlami_parameter(plan: StackPlan) -> str:
    """The SSM parameter of the Deep Learning AMI for the stack's GPUs (arm64 for Grace, else x86_64)."""
    return boot_image(plan).ssm_parameter


def check_dlami(plan: StackPlan, ssm: Any) -> CheckResult:
    """The Deep Learning AMI the instances boot from is published in the region."""
    name, parameter = "dlami-parameter", dlami_parameter(plan)
    try:
        ami = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return CheckResult(name, FAIL, f"{parameter} is not published in {plan.region}",
                               "run the stack in a region that publishes the Deep Learning AMI (`aws ssm "
                               f"get-parameter --name {parameter} --region REGION`)")
        return _api_failure(name, exc, "ssm:GetParameter")
    except BotoCoreError as exc:
        return _api_failure(name, exc, "ssm:GetParameter")
    return CheckResult(name, PASS, f"{parameter} = {ami}")


def preflight(plan: StackPlan, clients: AwsClients) -> list[CheckResult]:
    """Every check that applies to the stack's target, in order; with no credentials the AWS checks are skipped."""
    results = [check_plan(plan)]
    if plan.config.target == "jumpstart":
        results.append(check_eula(plan))  # offline: needs no credentials
    if required_secret_keys(plan.config):
        results.append(check_required_secrets(plan))  # offline too
    results.append(check_credentials(clients.client("sts")))
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
