"""The reaper's decisions: which found cloud resources are expired toolkit resources, in what order they go, and
what that saves per hour. Pure: scripts/teardown.py gathers the facts with boto3 and acts on the plan.

A resource is the toolkit's only when it carries all three tags `nemotron-deploy:stack`, `nemotron-deploy:owner`
and `nemotron-deploy:expires-at` with non-empty values and an expiry that parses as an ISO 8601 time with a zone.
Anything else is foreign (a missing or look-alike tag) or malformed (an unreadable expiry: reported, never touched).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from planner.estimates import iso_utc
from planner.hardware import INSTANCE_TYPES
from planner.plan import TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK

TOOLKIT_TAGS = (TAG_STACK, TAG_OWNER, TAG_EXPIRES_AT)

# Deletion order: a kind that holds another comes first (an endpoint before its config, a node group before its
# cluster, instances before their ENIs and volumes, load balancers and clusters before the security groups their
# network interfaces use). Edges from in_use_by refine this order within and across kinds.
KIND_ORDER = (
    "application-autoscaling:scalable-target",
    "sagemaker:endpoint",
    "sagemaker:endpoint-config",
    "sagemaker:model",
    "eks:nodegroup",
    "eks:cluster",
    "elbv2:load-balancer",
    "ec2:instance",
    "ec2:network-interface",
    "ec2:volume",
    "ec2:launch-template",
    "ec2:placement-group",
    "ec2:security-group",
)
KINDS = frozenset(KIND_ORDER)

ACTION_BY_KIND = {"ec2:instance": "terminate", "application-autoscaling:scalable-target": "deregister"}

# States in which a resource no longer exists for our purposes (EC2 lists terminated instances for about an hour).
GONE_STATES = {"ec2:instance": {"terminated"}, "ec2:volume": {"deleted"}}
# States in which deletion is already under way: nothing to call, only to wait for.
GOING_STATES = {
    "ec2:instance": {"shutting-down"},
    "ec2:volume": {"deleting"},
    "eks:nodegroup": {"DELETING"},
    "eks:cluster": {"DELETING"},
    "sagemaker:endpoint": {"Deleting"},
}
# Kinds whose deletion runs asynchronously and is waited for (bounded) before the next kinds.
WAIT_AFTER = frozenset({"ec2:instance", "eks:nodegroup", "eks:cluster", "sagemaker:endpoint"})

# Compute that bills by the hour, in the states in which it bills; priced from planner/hardware.py.
BILLING_STATES = {
    "ec2:instance": {"pending", "running"},
    "sagemaker:endpoint": {"Creating", "Updating", "SystemUpdating", "RollingBack", "InService"},
    "eks:nodegroup": {"CREATING", "ACTIVE", "UPDATING", "DEGRADED"},
}

_ISO_WITH_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")

FOREIGN, MALFORMED, LIVE, EXPIRED = "foreign", "malformed", "live", "expired"


@dataclass(frozen=True)
class FoundResource:
    """One cloud resource as the listing found it, reduced to what the reaper decides on.

    `in_use_by` names resources that hold this one (an instance holding its ENI, an ENI holding a security group,
    an endpoint holding its config); it can be deleted only once they are gone. `managed_by` names a resource that
    creates and removes this one (an EKS node group for its instances): deleting it directly would be undone.
    """

    kind: str
    id: str
    region: str
    tags: Mapping[str, str] = field(default_factory=dict)
    state: str | None = None
    in_use_by: tuple[str, ...] = ()
    managed_by: str | None = None
    instance_type: str | None = None  # EC2 or SageMaker instance type, for $/hour
    instance_count: int = 1
    attributes: Mapping[str, str] = field(default_factory=dict)  # what the delete call needs besides the id

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
    action: str  # terminate, delete, deregister, wait (already going), with-manager (its manager removes it)
    usd_per_hour: float | None  # None: compute of a type without a price in planner/hardware.py
    note: str = ""

    def to_json(self) -> dict:
        r = self.resource
        return {"region": r.region, "kind": r.kind, "id": r.id, "stack": r.stack, "owner": r.tags.get(TAG_OWNER),
                "expires_at": r.tags.get(TAG_EXPIRES_AT), "state": r.state, "action": self.action,
                "instance_type": r.instance_type,
                "usd_per_hour": None if self.usd_per_hour is None else round(self.usd_per_hour, 2), "note": self.note}


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
            "usd_per_hour_stopped": round(self.usd_per_hour_stopped, 2),
            "unpriced": list(self.unpriced),
        }


def parse_expires_at(value: str) -> datetime | None:
    """The instant an expires-at tag names, in UTC; None when it is not an ISO 8601 time with a zone."""
    if not isinstance(value, str) or not _ISO_WITH_ZONE.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return None


def assess(resource: FoundResource, now: datetime) -> Assessment:
    """Whether a resource is foreign, carries an unreadable expiry, or is the toolkit's and live or expired."""
    missing = [key for key in TOOLKIT_TAGS if not str(resource.tags.get(key, "")).strip()]
    if missing:
        return Assessment(resource, FOREIGN, "no " + ", ".join(missing) + " tag")
    value = resource.tags[TAG_EXPIRES_AT]
    expiry = parse_expires_at(value)
    if expiry is None:
        return Assessment(resource, MALFORMED, f"{TAG_EXPIRES_AT} {value!r} is not an ISO 8601 time with a zone "
                                               "(e.g. 2026-12-01T18:00:00Z): left alone")
    if expiry <= now:
        return Assessment(resource, EXPIRED, f"expired {iso_utc(expiry)}", expiry)
    return Assessment(resource, LIVE, f"expires {iso_utc(expiry)}", expiry)


def usd_per_hour(resource: FoundResource) -> float | None:
    """What a resource bills per hour for compute: 0.0 when it bills none (or none we price), None when unknown."""
    if resource.state not in BILLING_STATES.get(resource.kind, ()):
        return 0.0
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
    """Why `r` must stay: a manager or a holder that stays (anything not selected and not known gone, including
    ids the listing never saw, such as a foreign instance); empty when it can go."""
    if r.managed_by and r.managed_by not in selected and r.managed_by not in gone:
        return f"managed by {r.managed_by}, which is not being deleted"
    staying = [h for h in r.in_use_by if h not in selected and h not in gone and h != r.id]
    if staying:
        return "in use by " + ", ".join(sorted(staying)) + ", which is not being deleted"
    return ""


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
