"""The account checks of credentials and quotas: working credentials, the On-Demand vCPU quota of the instance
family (counting what already runs) and SageMaker's endpoint-usage quota."""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from planner.hardware import INSTANCE_TYPES
from planner.plan import StackPlan
from planner.tags import TAG_STACK
from scripts.preflight.results import FAIL, PASS, SKIP, CheckResult, api_failure, quantity

# On-Demand vCPU quotas (service code ec2) by instance family letter. docs/sources.md#aws-limits.
ON_DEMAND_QUOTAS = {"p": ("L-417A185B", "Running On-Demand P instances")}
ENDPOINT_QUOTA_NAME = "{instance_type} for endpoint usage"


def check_credentials(sts: Any) -> CheckResult:
    """Working credentials for the stack's account (sts:GetCallerIdentity needs no permission)."""
    try:
        identity = sts.get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        result = api_failure("credentials", exc, "sts:GetCallerIdentity")
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
    nodes = plan.peak_nodes
    needed = nodes * itype.vcpus
    try:
        value = _quota_value(quotas, "ec2", code)
    except (ClientError, BotoCoreError) as exc:
        return api_failure(name, exc, "servicequotas:GetServiceQuota")
    try:
        in_use, count = vcpus_in_use(ec2, family, plan.stack)
        running = f"; {in_use:,} in use by {count} other running {family.upper()} instance(s)" if count else ""
    except (ClientError, BotoCoreError):
        in_use, running = 0, "; instances already running not counted (ec2:DescribeInstances was refused)"
    reservation = (f"; reservation {c.capacity_reservation_id} runs On-Demand instances, which count here"
                   if c.capacity_reservation_id else "")
    detail = (f"{needed:,} vCPUs needed ({nodes} x {itype.name} at {itype.vcpus}); {code} ({quota_name}) "
              f"is {quantity(value)} in {plan.region}{running}{reservation}")
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
    needed = plan.peak_nodes
    try:
        found = _endpoint_quota(quotas, quota_name)
    except (ClientError, BotoCoreError) as exc:
        return api_failure(name, exc, "servicequotas:ListServiceQuotas")
    if found is None:
        return CheckResult(name, FAIL, f'no SageMaker quota named "{quota_name}" in {plan.region}',
                           f"check that {plan.instance.name} is offered for SageMaker hosting in {plan.region}, "
                           "or choose another instanceType")
    code, value = found
    detail = f'{needed} instance(s) needed; {code} ("{quota_name}") is {quantity(value)} in {plan.region}'
    if value >= needed:
        return CheckResult(name, PASS, detail)
    return CheckResult(name, FAIL, detail,
                       f"request an increase of {code} to >= {needed}: `aws service-quotas "
                       f"request-service-quota-increase --service-code sagemaker --quota-code {code} "
                       f"--desired-value {needed} --region {plan.region}`")


