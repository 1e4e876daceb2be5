"""The teardown's waits: after a kind that takes time to go is deleted (instances, NAT gateways, node groups,
clusters, endpoints, VPC endpoints), poll until it is gone, bounded by the RetryPolicy, with a progress line at most
every `progress_every_s`. One poll judges a whole kind: botocore's waiter definitions where AWS has one per
resource (node groups, clusters, endpoints), filtered listings for the kinds that go in batches."""

from __future__ import annotations

from botocore.exceptions import ClientError

from planner.reaper import FoundResource
from scripts.aws import SUCCESS, is_not_found, wait_until, waiter_state
from scripts.teardown.common import RetryPolicy, chunks, few, pages

# kind -> (service, botocore waiter, its parameters for one resource)
WAITERS = {
    "eks:nodegroup": ("eks", "nodegroup_deleted",
                      lambda r: {"clusterName": r.attributes["cluster"], "nodegroupName": r.attributes["name"]}),
    "eks:cluster": ("eks", "cluster_deleted", lambda r: {"name": r.attributes["name"]}),
    "sagemaker:endpoint": ("sagemaker", "endpoint_deleted", lambda r: {"EndpointName": r.attributes["name"]}),
}


def _instances_left(ec2, ids: list[str]) -> set[str]:
    left: set[str] = set()
    for chunk in chunks(ids):
        for reservation in pages(ec2, "describe_instances", "Reservations",
                                 Filters=[{"Name": "instance-id", "Values": chunk}]):
            left |= {i["InstanceId"] for i in reservation["Instances"] if i["State"]["Name"] != "terminated"}
    return left


def _nat_gateways_left(ec2, ids: list[str]) -> set[str]:
    """Deleted NAT gateways stay listed for about an hour, as "deleted"."""
    left: set[str] = set()
    for chunk in chunks(ids):
        for nat in pages(ec2, "describe_nat_gateways", "NatGateways",
                         Filter=[{"Name": "nat-gateway-id", "Values": chunk}]):
            if nat.get("State") != "deleted":
                left.add(nat["NatGatewayId"])
    return left


# kinds that go in batches: one filtered listing says which of them are left
BATCHES = {"ec2:instance": _instances_left, "ec2:natgateway": _nat_gateways_left}


def _gone(clients, region: str, kind: str, r: FoundResource) -> bool:
    """Whether one resource is gone: by its botocore waiter, or (a VPC endpoint, which has none) by its state."""
    try:
        if kind in WAITERS:
            service, waiter, params = WAITERS[kind]
            return waiter_state(clients(service, region), waiter, **params(r)) == SUCCESS
        if kind == "ec2:vpc-endpoint":  # an endpoint being deleted is listed as "deleted"
            answer = clients("ec2", region).describe_vpc_endpoints(VpcEndpointIds=[r.id])["VpcEndpoints"]
            return all((e.get("State") or "").lower() == "deleted" for e in answer)
        return False
    except ClientError as err:
        return is_not_found(err)
    except Exception:  # noqa: BLE001 - an unanswered poll proves this one not gone; the others are still judged
        return False


def still_there(clients, region: str, kind: str, resources: list[FoundResource]) -> set[str]:
    """Ids among `resources` that still exist (not terminated, not deleted)."""
    if kind in BATCHES:
        return BATCHES[kind](clients("ec2", region), [r.id for r in resources])
    return {r.id for r in resources if not _gone(clients, region, kind, r)}


def wait_until_gone(clients, region: str, kind: str, resources: list[FoundResource], policy: RetryPolicy) -> set[str]:
    """Poll (bounded by policy.wait_timeout_s, one poll per policy.poll_interval_s) until the resources are gone;
    returns the ids still there. Says what it waits for and for how long through policy.progress, at most once
    every policy.progress_every_s."""
    pending = {r.id: r for r in resources}
    said_at: list[float] = []

    def poll() -> set[str]:
        try:
            left = still_there(clients, region, kind, list(pending.values()))
        except Exception:  # noqa: BLE001 - an unanswered poll proves nothing gone; the bound still holds
            left = set(pending)
        for rid in set(pending) - left:
            del pending[rid]
        return left

    def progress(left: set[str], waited: float) -> None:
        if left and waited < policy.wait_timeout_s and (not said_at or waited - said_at[-1] >= policy.progress_every_s):
            policy.progress(f"waiting for {len(left)} {kind} in {region} to go ({few(sorted(left))}): "
                            f"{waited:.0f} s of at most {policy.wait_timeout_s:g} s")
            said_at.append(waited)

    left, _ = wait_until(poll, lambda left: not left, timeout_s=policy.wait_timeout_s,
                         interval_s=policy.poll_interval_s, sleep=policy.sleep, clock=policy.clock, on_poll=progress)
    return left
