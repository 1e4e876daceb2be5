"""The teardown's deletions: each planned resource deleted in the plan's order with the calls AWS needs (a detach
first where it asks for one), a delete that meets a dependency error retried with bounded backoff, and each kind that
takes time waited for (scripts/teardown/waits.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from planner.reaper import WAIT_AFTER, Deletion, FoundResource, ReapPlan
from scripts.aws import describe_error, error_code, is_not_found
from scripts.teardown.common import RetryPolicy, chunks, pages
from scripts.teardown.waits import wait_until_gone

# A delete that meets one of these is retried with backoff (bounded): something is still letting go. Throttling is
# not here: botocore's standard retry mode retries it (and 5xx answers) inside each call.
RETRY_CODES = frozenset({
    "DependencyViolation", "ResourceInUse", "ResourceInUseException", "InvalidNetworkInterface.InUse", "VolumeInUse",
    "IncorrectState", "IncorrectInstanceState", "InvalidPlacementGroup.InUse", "ResourceContention",
    "ConcurrentUpdateException", "OperationInProgress", "InvalidIPAddress.InUse", "DeleteConflict",
    "ConcurrentModification",
})


@dataclass
class Outcome:
    """What happened to one planned deletion."""

    status: str  # deleted, already gone, removed with manager, failed, timed out waiting
    detail: str = ""


def with_retries(call: Callable[[], Any], policy: RetryPolicy) -> Outcome:
    """Run one delete call; retry (bounded, doubling delay) while something still holds the resource. Throttling,
    5xx answers and lost connections are retried by botocore's standard retry mode inside the call, not here."""
    delay = policy.first_delay_s
    for attempt in range(1, policy.attempts + 1):
        try:
            call()
            return Outcome("deleted")
        except ClientError as err:
            if is_not_found(err):
                return Outcome("already gone")
            if error_code(err) not in RETRY_CODES or attempt == policy.attempts:
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                return Outcome("failed", describe_error(err) + suffix)
        except Exception as err:  # noqa: BLE001 - not an answer worth retrying; one resource fails, not the run
            return Outcome("failed", describe_error(err))
        policy.sleep(delay)
        delay = min(delay * 2, policy.max_delay_s)
    return Outcome("failed", "no attempt made")


def _api_region(r: FoundResource) -> str:
    """The region whose endpoint answers for a resource: its own, or for a global one the region it was listed in."""
    return r.attributes.get("api_region", r.region)


def _unless(codes: frozenset[str] | set[str], call: Callable[[], Any]) -> None:
    """Run a preliminary step of a deletion; an answer in `codes` means it is already done."""
    try:
        call()
    except ClientError as err:
        if error_code(err) not in codes:
            raise


def _delete_vpc_endpoint(ec2, endpoint_id: str) -> None:
    """DeleteVpcEndpoints answers 200 and lists failures in Unsuccessful: raise them like any other error."""
    for item in ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint_id]).get("Unsuccessful", ()):
        error = item.get("Error") or {}
        raise ClientError({"Error": {"Code": error.get("Code", "Unsuccessful"), "Message": error.get("Message", "")}},
                          "DeleteVpcEndpoints")


def _delete_internet_gateway(ec2, r: FoundResource) -> None:
    for vpc in r.attributes.get("vpcs", ()):
        _unless({"Gateway.NotAttached"}, lambda vpc=vpc: ec2.detach_internet_gateway(
            InternetGatewayId=r.id, VpcId=vpc))
    ec2.delete_internet_gateway(InternetGatewayId=r.id)


def _delete_route_table(ec2, r: FoundResource) -> None:
    for association in r.attributes.get("associations", ()):
        _unless({"InvalidAssociationID.NotFound"}, lambda a=association: ec2.disassociate_route_table(
            AssociationId=a))
    ec2.delete_route_table(RouteTableId=r.id)


def _delete_instance_profile(iam, r: FoundResource) -> None:
    name = r.attributes["name"]
    for role in r.attributes.get("roles", ()):
        _unless({"NoSuchEntity"}, lambda role=role: iam.remove_role_from_instance_profile(
            InstanceProfileName=name, RoleName=role))
    iam.delete_instance_profile(InstanceProfileName=name)


def _delete_role(iam, r: FoundResource) -> None:
    """Detach the managed policies, delete the inline ones, then the role (IAM refuses while any remain)."""
    name = r.attributes["name"]
    for arn in r.attributes.get("managed_policies", ()):
        _unless({"NoSuchEntity"}, lambda arn=arn: iam.detach_role_policy(RoleName=name, PolicyArn=arn))
    for policy in r.attributes.get("inline_policies", ()):
        _unless({"NoSuchEntity"}, lambda policy=policy: iam.delete_role_policy(RoleName=name, PolicyName=policy))
    iam.delete_role(RoleName=name)


def _delete_call(clients, r: FoundResource) -> Callable[[], Any]:
    """The API calls that delete one resource (several where AWS needs a detach first), safe to repeat."""
    a, region = r.attributes, _api_region(r)
    ec2 = lambda: clients("ec2", region)  # noqa: E731 - made on first use, like every client
    calls: dict[str, Callable[[], Any]] = {
        "application-autoscaling:scalable-target": lambda: clients("application-autoscaling", region)
        .deregister_scalable_target(ServiceNamespace=a["namespace"], ResourceId=a["resource_id"],
                                    ScalableDimension=a["dimension"]),
        "sagemaker:endpoint": lambda: clients("sagemaker", region).delete_endpoint(EndpointName=a["name"]),
        "sagemaker:endpoint-config": lambda: clients("sagemaker", region)
        .delete_endpoint_config(EndpointConfigName=a["name"]),
        "sagemaker:model": lambda: clients("sagemaker", region).delete_model(ModelName=a["name"]),
        "eks:nodegroup": lambda: clients("eks", region).delete_nodegroup(clusterName=a["cluster"],
                                                                          nodegroupName=a["name"]),
        "eks:cluster": lambda: clients("eks", region).delete_cluster(name=a["name"]),
        "elbv2:load-balancer": lambda: clients("elbv2", region).delete_load_balancer(LoadBalancerArn=r.id),
        "ec2:instance": lambda: ec2().terminate_instances(InstanceIds=[r.id]),
        "ec2:natgateway": lambda: ec2().delete_nat_gateway(NatGatewayId=r.id),
        "ec2:elastic-ip": lambda: ec2().release_address(AllocationId=r.id),
        "ec2:vpc-endpoint": lambda: _delete_vpc_endpoint(ec2(), r.id),
        "ec2:network-interface": lambda: ec2().delete_network_interface(NetworkInterfaceId=r.id),
        "ec2:volume": lambda: ec2().delete_volume(VolumeId=r.id),
        "ec2:launch-template": lambda: ec2().delete_launch_template(LaunchTemplateId=r.id),
        "ec2:placement-group": lambda: ec2().delete_placement_group(GroupName=a["name"]),
        "ec2:security-group": lambda: ec2().delete_security_group(GroupId=r.id),
        "ec2:internet-gateway": lambda: _delete_internet_gateway(ec2(), r),
        "ec2:route-table": lambda: _delete_route_table(ec2(), r),
        "ec2:subnet": lambda: ec2().delete_subnet(SubnetId=r.id),
        "ec2:vpc": lambda: ec2().delete_vpc(VpcId=r.id),
        "secretsmanager:secret": lambda: clients("secretsmanager", region).delete_secret(
            SecretId=r.id, ForceDeleteWithoutRecovery=True),
        "iam:instance-profile": lambda: _delete_instance_profile(clients("iam", region), r),
        "iam:role": lambda: _delete_role(clients("iam", region), r),
        "budgets:budget": lambda: clients("budgets", region).delete_budget(AccountId=a["account"],
                                                                           BudgetName=a["name"]),
    }
    return calls[r.kind]


def _terminate_instances(clients, region: str, deletions: list[Deletion], policy: RetryPolicy,
                         outcomes: dict[str, Outcome]) -> None:
    """Terminate in batches of 1,000; a batch that fails is retried one instance at a time to isolate the cause."""
    ec2 = clients("ec2", region)
    ids = [d.resource.id for d in deletions]
    for chunk in (ids[i:i + 1000] for i in range(0, len(ids), 1000)):
        batch = with_retries(lambda chunk=chunk: ec2.terminate_instances(InstanceIds=chunk), policy)
        if batch.status == "deleted":
            outcomes.update({i: Outcome("deleted") for i in chunk})
            continue
        for instance_id in chunk:
            outcomes[instance_id] = with_retries(
                lambda instance_id=instance_id: ec2.terminate_instances(InstanceIds=[instance_id]), policy)


def _revoke_cross_references(clients, region: str, deletions: list[Deletion], outcomes: dict[str, Outcome]) -> None:
    """Remove the rules of the security groups about to go that point at other groups: a group another group's rule
    references cannot be deleted. Only the doomed groups' own rules are touched."""
    ec2 = clients("ec2", region)
    ids = [d.resource.id for d in deletions]
    for chunk in chunks(ids):
        try:
            groups = list(pages(ec2, "describe_security_groups", "SecurityGroups",
                                 Filters=[{"Name": "group-id", "Values": chunk}]))
        except Exception as err:  # noqa: BLE001 - these groups fail; the rest of the run goes on
            for gid in chunk:
                outcomes.setdefault(gid, Outcome("failed", f"listing rules: {describe_error(err)}"))
            continue
        for group in groups:
            for direction, revoke in (("IpPermissions", ec2.revoke_security_group_ingress),
                                      ("IpPermissionsEgress", ec2.revoke_security_group_egress)):
                referencing = [_group_pairs_only(p) for p in group.get(direction, ()) if p.get("UserIdGroupPairs")]
                if referencing:
                    try:
                        revoke(GroupId=group["GroupId"], IpPermissions=referencing)
                    except Exception as err:  # noqa: BLE001 - this group fails; the rest of the run goes on
                        if not (isinstance(err, ClientError) and is_not_found(err)):
                            outcomes.setdefault(group["GroupId"], Outcome("failed",
                                                                          f"revoking rules: {describe_error(err)}"))


def _group_pairs_only(permission: dict) -> dict:
    keep = {k: permission[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in permission}
    keep["UserIdGroupPairs"] = [{k: v for k, v in pair.items() if k in ("GroupId", "UserId")}
                                for pair in permission["UserIdGroupPairs"]]
    return keep


def act(plan: ReapPlan, clients, policy: RetryPolicy) -> dict[str, Outcome]:
    """Carry out the plan step by step; every planned resource gets an outcome. A resource whose holder could not
    be deleted is not tried (AWS would refuse it, after the retries): it is reported with that holder."""
    outcomes: dict[str, Outcome] = {}
    for region, kind, action, deletions in plan.steps():
        deletions = [d for d in deletions if not _held_by_a_failure(d, outcomes)]
        if action == "with-manager":
            outcomes.update({d.resource.id: Outcome("removed with manager", d.note) for d in deletions})
            continue
        if action != "wait":
            if kind == "ec2:instance":
                _terminate_instances(clients, region, deletions, policy, outcomes)
            else:
                if kind == "ec2:security-group":
                    _revoke_cross_references(clients, region, deletions, outcomes)
                for d in deletions:
                    if d.resource.id not in outcomes:
                        outcomes[d.resource.id] = with_retries(_delete_call(clients, d.resource), policy)
        else:
            outcomes.update({d.resource.id: Outcome("deleted", f"was {d.resource.state}") for d in deletions})
        if kind in WAIT_AFTER:
            pending = [d.resource for d in deletions if outcomes[d.resource.id].status == "deleted"]
            for rid in wait_until_gone(clients, region, kind, pending, policy) if pending else ():
                outcomes[rid] = Outcome("timed out waiting", f"still there after {policy.wait_timeout_s:g} s")
    return outcomes


def _held_by_a_failure(d: Deletion, outcomes: dict[str, Outcome]) -> bool:
    """Record "not tried" for a deletion whose holder or manager was planned but did not go."""
    r = d.resource
    failed = sorted(h for h in (*r.in_use_by, *((r.managed_by,) if r.managed_by else ()))
                    if h in outcomes and outcomes[h].status not in ("deleted", "already gone", "removed with manager"))
    if failed:
        shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        outcomes[r.id] = Outcome("not tried", f"{shown} did not go")
    return bool(failed)

