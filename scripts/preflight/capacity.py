"""The account checks of where the instances land: the instance type is offered there, the capacity reservation
fits, and the Deep Learning AMI parameter is published in the region."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from planner.estimates import iso_utc
from planner.plan import StackPlan
from scripts.preflight.results import FAIL, PASS, SKIP, CheckResult, api_failure


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
        return api_failure(name, exc, "ec2:DescribeInstanceTypeOfferings")
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
        return api_failure(name, exc, "ec2:DescribeCapacityReservations")
    except BotoCoreError as exc:
        return api_failure(name, exc, "ec2:DescribeCapacityReservations")
    if not found:
        return CheckResult(name, FAIL, f"{rid} does not exist in this account in {plan.region}",
                           "check nemotron-deploy:capacityReservationId and aws:region")
    cr = found[0]
    nodes = plan.peak_nodes
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
    return plan.ec2.boot_image.ssm_parameter


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
        return api_failure(name, exc, "ssm:GetParameter")
    except BotoCoreError as exc:
        return api_failure(name, exc, "ssm:GetParameter")
    return CheckResult(name, PASS, f"{parameter} = {ami}")


