"""The reaper's decisions: which found cloud resources are expired toolkit resources, in what order they go, and
what that saves per hour. Pure: scripts/teardown/ gathers the facts with boto3 and acts on the plan.

A resource is the toolkit's only when it carries all three tags `nemotron-deploy:stack`, `nemotron-deploy:owner`
and `nemotron-deploy:expires-at` with non-empty values and an expiry in a form planner/expiry.py accepts (the
same forms the stack schema and the node's dead-man switch accept).
Anything else is foreign (a missing or look-alike tag) or malformed (an unreadable expiry: reported, never touched).

Kinds are named `<service>:<type>` (`ec2:natgateway`, `iam:role`); IAM roles and instance profiles and AWS Budgets
are global and carry the region GLOBAL_REGION.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from planner.estimates import iso_utc
from planner.expiry import EXPIRY_FORMS, parse_expiry
from planner.hardware import INSTANCE_TYPES
from planner.tags import TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK

TOOLKIT_TAGS = (TAG_STACK, TAG_OWNER, TAG_EXPIRES_AT)

# Deletion order: a kind that holds another comes first (an endpoint before its config, a node group before its
# cluster, instances before their ENIs and volumes, load balancers and clusters before the security groups their
# network interfaces use; in a VPC: NAT gateways before the Elastic IPs they hold, VPC endpoints before the subnets,
# route tables and security groups they use, internet gateways and route tables before the subnets and the VPC).
# Edges from in_use_by refine this order within and across kinds. IAM and budgets come last: nothing regional
# holds them once the compute is gone.
KIND_ORDER = (
    "application-autoscaling:scalable-target",
    "sagemaker:endpoint",
    "sagemaker:endpoint-config",
    "sagemaker:model",
    "eks:nodegroup",
    "eks:cluster",
    "elbv2:load-balancer",
    "ec2:instance",
    "ec2:natgateway",
    "ec2:elastic-ip",
    "ec2:vpc-endpoint",
    "ec2:network-interface",
    "ec2:volume",
    "ec2:launch-template",
    "ec2:placement-group",
    "ec2:security-group",
    "ec2:internet-gateway",
    "ec2:route-table",
    "ec2:subnet",
    "ec2:vpc",
    "secretsmanager:secret",
    "iam:instance-profile",
    "iam:role",
    "budgets:budget",
)
KINDS = frozenset(KIND_ORDER)

# What "delete" means for a kind, when it is more than one call (the table shows it).
ACTION_BY_KIND = {
    "ec2:instance": "terminate",
    "application-autoscaling:scalable-target": "deregister",
    "ec2:elastic-ip": "release",
    "ec2:internet-gateway": "detach+delete",
    "ec2:route-table": "disassociate+delete",
    "secretsmanager:secret": "force-delete",  # ForceDeleteWithoutRecovery: no 7-30 day window holding the name
    "iam:instance-profile": "remove-roles+delete",
    "iam:role": "detach-policies+delete",
}

# IAM and AWS Budgets are global: their resources carry this region and are listed once per run.
GLOBAL_REGION = "global"

# States in which a resource no longer exists for our purposes (EC2 lists terminated instances for about an hour).
GONE_STATES = {"ec2:instance": {"terminated"}, "ec2:volume": {"deleted"}, "ec2:natgateway": {"deleted"},
               "ec2:vpc-endpoint": {"deleted"}}
# States in which deletion is already under way: nothing to call, only to wait for.
GOING_STATES = {
    "ec2:instance": {"shutting-down"},
    "ec2:volume": {"deleting"},
    "eks:nodegroup": {"DELETING"},
    "eks:cluster": {"DELETING"},
    "sagemaker:endpoint": {"Deleting"},
    "ec2:natgateway": {"deleting"},
    "ec2:vpc-endpoint": {"deleting"},
}
# Kinds whose deletion runs asynchronously and is waited for (bounded) before the next kinds: a NAT gateway holds
# its Elastic IP and its network interface until it is deleted; an interface endpoint holds its interfaces (and so
# its subnets and security group) until it is.
WAIT_AFTER = frozenset({"ec2:instance", "eks:nodegroup", "eks:cluster", "sagemaker:endpoint", "ec2:natgateway",
                        "ec2:vpc-endpoint"})

# What bills by the hour, in the states in which it bills: compute priced from planner/hardware.py, network priced
# below. Kinds not listed here bill nothing per hour (or nothing this reaper prices) in any state.
BILLING_STATES = {
    "ec2:instance": {"pending", "running"},
    "sagemaker:endpoint": {"Creating", "Updating", "SystemUpdating", "RollingBack", "InService"},
    "eks:nodegroup": {"CREATING", "ACTIVE", "UPDATING", "DEGRADED"},
    "ec2:natgateway": {"pending", "available"},
    "ec2:vpc-endpoint": {"pendingacceptance", "pending", "available"},  # as gather lower-cases it
    "ec2:elastic-ip": {None},  # a public IPv4 address bills whether associated or not (since 2024-02)
}
# Hourly charges of what a stack's network leaves running once the servers are gone, without data processing
# ($0.045/GB through a NAT gateway, $0.01/GB through an interface endpoint). Approximate constants, us-east-1
# on-demand, read 2026-06; other regions cost up to about a third more.
NAT_GATEWAY_USD_PER_HOUR = 0.045
INTERFACE_ENDPOINT_USD_PER_HOUR_PER_AZ = 0.01  # gateway endpoints (S3, DynamoDB) are free
PUBLIC_IPV4_USD_PER_HOUR = 0.005

FOREIGN, MALFORMED, LIVE, EXPIRED = "foreign", "malformed", "live", "expired"


@dataclass(frozen=True)
class FoundResource:
    """One cloud resource as the listing found it, reduced to what the reaper decides on.

    `in_use_by` names resources that hold this one (an instance holding its ENI, an ENI holding a security group,
    an endpoint holding its config); it can be deleted only once they are gone. `managed_by` names a resource that
    creates and removes this one (an EKS node group for its instances, a VPC for its main route table and default
    security group): deleting it directly would be undone or refused. `attached_to` names resources this one is
    attached to and is detached from by its own deletion (a route table's subnets, an internet gateway's VPC): they
    go after it, but only when they go too, so a foreign subnet or VPC never loses its route table or gateway.
    `keep` is a reason never to delete it at all (a region's default VPC).
    """

    kind: str
    id: str
    region: str
    tags: Mapping[str, str] = field(default_factory=dict)
    state: str | None = None
    in_use_by: tuple[str, ...] = ()
    managed_by: str | None = None
    instance_type: str | None = None  # EC2 or SageMaker instance type, for $/hour
    instance_count: int = 1  # instances of an endpoint or node group; Availability Zones of an interface endpoint
    attributes: Mapping[str, Any] = field(default_factory=dict)  # what the delete call needs besides the id
    attached_to: tuple[str, ...] = ()
    keep: str = ""

    @property
    def stack(self) -> str | None:
        return self.tags.get(TAG_STACK)

    @property
    def gone(self) -> bool:
        return self.state in GONE_STATES.get(self.kind, ())

    @property
    def going(self) -> bool:
        return self.state in GOING_STATES.get(self.kind, ())


@dataclass(frozen=True)
class Assessment:
    """Whose a resource is and, if ours, whether its time-to-live is over."""

    resource: FoundResource
    verdict: str  # foreign, malformed, live or expired
    reason: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Deletion:
    """One step of the plan: what to do to one resource and the $/hour that stops with it."""

    resource: FoundResource
    action: str  # terminate, delete, deregister, release, ..., wait (already going), with-manager (its manager goes)
    usd_per_hour: float | None  # None: compute of a type without a price in planner/hardware.py
    note: str = ""

    def to_json(self) -> dict:
        r = self.resource
        return {"region": r.region, "kind": r.kind, "id": r.id, "stack": r.stack, "owner": r.tags.get(TAG_OWNER),
                "expires_at": r.tags.get(TAG_EXPIRES_AT), "state": r.state, "action": self.action,
                "instance_type": r.instance_type,
                "usd_per_hour": None if self.usd_per_hour is None else round(self.usd_per_hour, 3), "note": self.note}


@dataclass(frozen=True)
class Blocked:
    """A resource the plan selected but must leave: something that stays holds or manages it."""

    resource: FoundResource
    reason: str

    def to_json(self) -> dict:
        r = self.resource
        return {"region": r.region, "kind": r.kind, "id": r.id, "stack": r.stack, "reason": self.reason}


@dataclass(frozen=True)
class ReapPlan:
    """What the reaper will do, in order, and what it leaves and why."""

    now: datetime
    stack: str | None  # None: every expired toolkit resource; a name: every resource of that stack
    assessments: tuple[Assessment, ...]
    deletions: tuple[Deletion, ...]  # in dependency order
    blocked: tuple[Blocked, ...]

    @property
    def malformed(self) -> tuple[Assessment, ...]:
        return tuple(a for a in self.assessments if a.verdict == MALFORMED)

    @property
    def usd_per_hour_stopped(self) -> float:
        return sum(d.usd_per_hour for d in self.deletions if d.usd_per_hour)

    @property
    def unpriced(self) -> tuple[str, ...]:
        """Ids of billing compute whose type has no price in the catalogue (the total leaves them out)."""
        return tuple(d.resource.id for d in self.deletions if d.usd_per_hour is None)

    def counts(self) -> dict[str, int]:
        counts = {FOREIGN: 0, MALFORMED: 0, LIVE: 0, EXPIRED: 0}
        for a in self.assessments:
            counts[a.verdict] += 1
        return counts

    def steps(self) -> list[tuple[str, str, str, list[Deletion]]]:
        """The deletions grouped into consecutive (region, kind, action) steps, in order."""
        steps: list[tuple[str, str, str, list[Deletion]]] = []
        for d in self.deletions:
            key = (d.resource.region, d.resource.kind, d.action)
            if steps and steps[-1][:3] == key:
                steps[-1][3].append(d)
            else:
                steps.append((*key, [d]))
        return steps

    def to_json(self) -> dict:
        return {
            "now": iso_utc(self.now),
            "stack": self.stack,
            "found": {"total": len(self.assessments), **self.counts()},
            "deletions": [d.to_json() for d in self.deletions],
            "blocked": [b.to_json() for b in self.blocked],
            "malformed": [{"region": a.resource.region, "kind": a.resource.kind, "id": a.resource.id,
                           "reason": a.reason} for a in self.malformed],
            "usd_per_hour_stopped": round(self.usd_per_hour_stopped, 3),
            "unpriced": list(self.unpriced),
        }


def parse_expires_at(value: str) -> datetime | None:
    """The instant an expires-at tag names, in UTC; None when it is not a form planner/expiry.py accepts."""
    return parse_expiry(value)


def assess(resource: FoundResource, now: datetime) -> Assessment:
    """Whether a resource is foreign, carries an unreadable expiry, or is the toolkit's and live or expired."""
    missing = [key for key in TOOLKIT_TAGS if not str(resource.tags.get(key, "")).strip()]
    if missing:
        return Assessment(resource, FOREIGN, "no " + ", ".join(missing) + " tag")
    value = resource.tags[TAG_EXPIRES_AT]
    expiry = parse_expires_at(value)
    if expiry is None:
        return Assessment(resource, MALFORMED, f"{TAG_EXPIRES_AT} {value!r} is not {EXPIRY_FORMS}: "
                                               "left alone")
    if expiry <= now:
        return Assessment(resource, EXPIRED, f"expired {iso_utc(expiry)}", expiry)
    return Assessment(resource, LIVE, f"expires {iso_utc(expiry)}", expiry)


def usd_per_hour(resource: FoundResource) -> float | None:
    """What a resource bills per hour: compute from planner/hardware.py, NAT gateways, interface endpoints (per
    Availability Zone) and public IPv4 addresses from the constants above; 0.0 when it bills nothing we price,
    None for compute of a type without a price."""
    if resource.state not in BILLING_STATES.get(resource.kind, ()):
        return 0.0
    if resource.kind == "ec2:natgateway":
        return NAT_GATEWAY_USD_PER_HOUR
    if resource.kind == "ec2:vpc-endpoint":
        interface = resource.attributes.get("endpoint_type") == "Interface"
        return INTERFACE_ENDPOINT_USD_PER_HOUR_PER_AZ * max(resource.instance_count, 0) if interface else 0.0
    if resource.kind == "ec2:elastic-ip":
        return PUBLIC_IPV4_USD_PER_HOUR
    itype = INSTANCE_TYPES.get(resource.instance_type or "")
    if itype is None or itype.usd_per_hour is None:
        return None
    return itype.usd_per_hour * max(resource.instance_count, 0)


def _selected(a: Assessment, stack: str | None) -> bool:
    if stack is None:
        return a.verdict == EXPIRED
    return a.verdict in (EXPIRED, LIVE) and a.resource.stack == stack


def plan_reap(resources: Iterable[FoundResource], now: datetime, stack: str | None = None) -> ReapPlan:
    """Plan the deletion of every expired toolkit resource (or, with `stack`, every resource of that stack).

    Selected resources that something staying still holds or manages are blocked, transitively (a model whose
    config a live endpoint uses stays with the config). The rest are ordered so holders go first.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    resources = list(resources)
    gone = {r.id for r in resources if r.gone}  # e.g. terminated instances, which EC2 lists for about an hour
    assessments = tuple(assess(r, now) for r in resources if not r.gone)
    selected = {a.resource.id: a.resource for a in assessments if _selected(a, stack)}

    reasons: dict[str, str] = {}
    changed = True
    while changed:  # drop what a remaining holder keeps, until nothing changes
        changed = False
        for rid, r in list(selected.items()):
            reason = _kept_by(r, selected, gone)
            if reason:
                reasons[rid] = reason
                del selected[rid]
                changed = True
    blocked = tuple(Blocked(a.resource, reasons[a.resource.id]) for a in assessments if a.resource.id in reasons)

    deletions = []
    for r in _dependency_order(selected):
        if r.managed_by in selected:
            deletions.append(Deletion(r, "with-manager", 0.0, f"removed with {r.managed_by}"))
        elif r.going:
            deletions.append(Deletion(r, "wait", 0.0, f"already {r.state}"))
        else:
            deletions.append(Deletion(r, ACTION_BY_KIND.get(r.kind, "delete"), usd_per_hour(r)))
    return ReapPlan(now.astimezone(UTC), stack, assessments, tuple(deletions), blocked)


def _kept_by(r: FoundResource, selected: Mapping[str, FoundResource], gone: set[str]) -> str:
    """Why `r` must stay: a manager, a holder or something it is attached to that stays (anything not selected and
    not known gone, including ids the listing never saw, such as a foreign instance); empty when it can go."""
    if r.keep:
        return r.keep
    if r.managed_by and r.managed_by not in selected and r.managed_by not in gone:
        return f"managed by {r.managed_by}, which is not being deleted"
    staying = [h for h in r.in_use_by if h not in selected and h not in gone and h != r.id]
    if staying:
        return f"in use by {_some(staying)}, which is not being deleted"
    attached = [a for a in r.attached_to if a not in selected and a not in gone and a != r.id]
    if attached:
        return f"attached to {_some(attached)}, which is not being deleted"
    return ""


def _some(ids: list[str], shown: int = 3) -> str:
    """A few ids for a reason a person reads (a budget is held by every other resource of its stack)."""
    ids = sorted(ids)
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _dependency_order(selected: Mapping[str, FoundResource]) -> list[FoundResource]:
    """Holders before what they hold; among the free, kinds in KIND_ORDER, then region and id."""
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    waiting_on: dict[str, set[str]] = {rid: {h for h in r.in_use_by if h in selected and h != rid}
                                       for rid, r in selected.items()}
    for rid, r in selected.items():
        if r.managed_by in selected and r.managed_by != rid:
            waiting_on[rid].add(r.managed_by)
    holds: dict[str, list[str]] = {rid: [] for rid in selected}
    for rid, holders in waiting_on.items():
        for h in holders:
            holds[h].append(rid)

    def key(rid: str) -> tuple:
        r = selected[rid]
        return (rank.get(r.kind, len(rank)), r.region, r.id)

    ready = [key(rid) + (rid,) for rid, holders in waiting_on.items() if not holders]
    heapq.heapify(ready)
    ordered: list[FoundResource] = []
    while ready:
        rid = heapq.heappop(ready)[-1]
        ordered.append(selected[rid])
        for held in holds[rid]:
            waiting_on[held].discard(rid)
            if not waiting_on[held]:
                heapq.heappush(ready, key(held) + (held,))
    if len(ordered) < len(selected):  # a cycle of holders: fall back to kind order for the rest
        done = {r.id for r in ordered}
        ordered += sorted((r for rid, r in selected.items() if rid not in done), key=lambda r: key(r.id))
    return ordered
