"""The reaper's linking rules: who holds or manages what, from the facts the listings gathered. Pure: the teardown
script's link listings (scripts/teardown/links.py) find what uses a security group, a subnet, a VPC or a placement
group; these rules turn those facts, and what the resources' own listings say, into `in_use_by` and `managed_by`.

`LINK_RULES` is the table: one rule per kind, each reading a `LinkContext` built once from all the resources found
in a region and the link facts. A kind without a rule keeps the links its own listing gave it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from planner.reaper import TOOLKIT_TAGS, FoundResource, parse_expires_at
from planner.tags import TAG_EXPIRES_AT

# Kinds whose users only a separate link listing finds: what uses a security group, a subnet or a VPC.
LINKED_KINDS = ("ec2:security-group", "ec2:subnet", "ec2:vpc")


@dataclass(frozen=True)
class LinkFacts:
    """What the link listings found in one region: `users` maps a security group, subnet or VPC id to the ids of
    what uses it or lives in it; `placement_members` maps a placement group name to the instances in it; `unlinked`
    maps a kind whose link listing failed to why its resources stay (what uses them is unknown)."""

    users: Mapping[str, Iterable[str]] = field(default_factory=dict)
    placement_members: Mapping[str, Iterable[str]] = field(default_factory=dict)
    unlinked: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Owners:
    """Who the resources found name as owners of a network interface: load balancers by their `app/<name>/<id>`
    suffix, EKS clusters by name, and the interfaces AWS creates for a NAT gateway or an interface endpoint."""

    load_balancers: Mapping[str, str]
    clusters: Mapping[str, str]
    interfaces: Mapping[str, str]

    @classmethod
    def of(cls, resources: Iterable[FoundResource]) -> Owners:
        resources = list(resources)
        return cls(
            load_balancers={r.id.split(":loadbalancer/", 1)[-1]: r.id for r in resources
                            if r.kind == "elbv2:load-balancer"},
            clusters={r.attributes["name"]: r.id for r in resources if r.kind == "eks:cluster"},
            interfaces={eni: r.id for r in resources if r.kind in ("ec2:natgateway", "ec2:vpc-endpoint")
                        for eni in r.attributes.get("interfaces", ())})


def eni_holder(eni: Mapping, owners: Owners) -> str:
    """What keeps a network interface (and so its security groups and subnet) in use: the instance it goes with,
    the NAT gateway, VPC endpoint, load balancer or EKS cluster that manages it, or the interface itself."""
    if eni.get("NetworkInterfaceId") in owners.interfaces:
        return owners.interfaces[eni["NetworkInterfaceId"]]
    attachment = eni.get("Attachment") or {}
    # primary interfaces (device 0) and delete-on-termination ones go with their instance
    if attachment.get("InstanceId") and (attachment.get("DeleteOnTermination") or attachment.get("DeviceIndex") == 0):
        return attachment["InstanceId"]
    description = eni.get("Description") or ""
    if description.startswith("ELB "):  # "ELB app/<name>/<id>": the load balancer's ARN ends in the same
        suffix = description[4:]
        return owners.load_balancers.get(suffix, f"load balancer {suffix}")
    if description.startswith("Amazon EKS "):
        name = description[len("Amazon EKS "):]
        return owners.clusters.get(name, f"EKS cluster {name}")
    for prefix in ("Interface for NAT Gateway ", "VPC Endpoint Interface "):  # "... nat-0abc", "... vpce-0abc"
        if description.startswith(prefix):
            return description[len(prefix):].strip()
    return eni["NetworkInterfaceId"]


def instance_manager(tags: Mapping[str, str], nodegroups: Mapping[tuple[str, str], str]) -> str | None:
    """The node group or Auto Scaling group that launched an instance (terminating it directly would be undone)."""
    cluster, nodegroup = tags.get("eks:cluster-name"), tags.get("eks:nodegroup-name")
    if cluster and nodegroup:
        return nodegroups.get((cluster, nodegroup), f"EKS node group {cluster}/{nodegroup}")
    if tags.get("aws:autoscaling:groupName"):
        return f"Auto Scaling group {tags['aws:autoscaling:groupName']}"
    return None


def _index(pairs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    index: dict[str, set[str]] = {}
    for key, value in pairs:
        index.setdefault(key, set()).add(value)
    return index


@dataclass(frozen=True)
class LinkContext:
    """The region's resources seen from each rule: who holds what, by id."""

    users: Mapping[str, set[str]]  # security group, subnet, VPC -> what uses it (link listings, NAT, endpoints)
    placement_members: Mapping[str, set[str]]
    templates_in_use: Mapping[str, set[str]]  # launch template id -> node groups launching from it
    nodegroups: Mapping[tuple[str, str], str]  # (cluster, node group name) -> node group ARN
    nat_of_allocation: Mapping[str, str]  # Elastic IP allocation -> NAT gateway
    owners: Owners
    endpoints_of_table: Mapping[str, set[str]]  # route table -> gateway endpoints using it
    nats_in_vpc: Mapping[str, set[str]]

    @classmethod
    def of(cls, resources: Iterable[FoundResource], facts: LinkFacts) -> LinkContext:
        resources = list(resources)
        by_kind = lambda kind: [r for r in resources if r.kind == kind]  # noqa: E731
        users = {rid: set(found) for rid, found in facts.users.items()}
        # what the network's own listings already say: NAT gateways and interface endpoints live in subnets
        in_subnets = [(r.attributes.get("subnet", ""), r.id) for r in by_kind("ec2:natgateway")] + \
            [(subnet, r.id) for r in by_kind("ec2:vpc-endpoint") for subnet in r.attributes.get("subnets", ())]
        for subnet, holder in in_subnets:
            users.setdefault(subnet, set()).add(holder)
        return cls(
            users=users,
            placement_members={name: set(ids) for name, ids in facts.placement_members.items()},
            templates_in_use=_index((r.attributes["launch_template"], r.id) for r in by_kind("eks:nodegroup")
                                    if r.attributes.get("launch_template")),
            nodegroups={(r.attributes["cluster"], r.attributes["name"]): r.id for r in by_kind("eks:nodegroup")},
            nat_of_allocation={a: r.id for r in by_kind("ec2:natgateway") for a in r.attributes.get("allocations", ())},
            owners=Owners.of(resources),
            endpoints_of_table=_index((table, r.id) for r in by_kind("ec2:vpc-endpoint")
                                      for table in r.attributes.get("route_tables", ())),
            nats_in_vpc=_index((r.attributes.get("vpc", ""), r.id) for r in by_kind("ec2:natgateway")))


Rule = Callable[[FoundResource, LinkContext], FoundResource]


def _used_by_users(r: FoundResource, c: LinkContext) -> FoundResource:
    return replace(r, in_use_by=tuple(sorted(c.users.get(r.id, set()) - {r.id})))


def _security_group(r: FoundResource, c: LinkContext) -> FoundResource:
    r = _used_by_users(r, c)
    if r.attributes.get("name") == "default":
        r = replace(r, managed_by=r.attributes.get("vpc") or None)  # goes with its VPC
    return r


def _elastic_ip(r: FoundResource, c: LinkContext) -> FoundResource:
    if r.id in c.nat_of_allocation:
        return replace(r, in_use_by=(c.nat_of_allocation[r.id],))
    if r.attributes.get("interface") in c.owners.interfaces:
        return replace(r, in_use_by=(c.owners.interfaces[r.attributes["interface"]],))
    return r


def _internet_gateway(r: FoundResource, c: LinkContext) -> FoundResource:
    # a NAT gateway's public address keeps the gateway attached (detaching it first is refused)
    return replace(r, in_use_by=tuple(sorted(n for v in r.attributes["vpcs"] for n in c.nats_in_vpc.get(v, ()))))


LINK_RULES: dict[str, Rule] = {
    "ec2:security-group": _security_group,
    "ec2:subnet": _used_by_users,
    "ec2:vpc": _used_by_users,
    "ec2:placement-group": lambda r, c: replace(
        r, in_use_by=tuple(sorted(c.placement_members.get(r.attributes["name"], ())))),
    "ec2:launch-template": lambda r, c: replace(r, in_use_by=tuple(sorted(c.templates_in_use.get(r.id, ())))),
    "ec2:instance": lambda r, c: replace(r, managed_by=instance_manager(r.tags, c.nodegroups)),
    "ec2:elastic-ip": _elastic_ip,
    "ec2:route-table": lambda r, c: replace(r, in_use_by=tuple(sorted(c.endpoints_of_table.get(r.id, ())))),
    "ec2:internet-gateway": _internet_gateway,
}


def link_resources(resources: Iterable[FoundResource], facts: LinkFacts) -> list[FoundResource]:
    """Each resource with the links its kind's rule adds; a kind whose link listing failed is kept (`keep`)."""
    resources = list(resources)
    context = LinkContext.of(resources, facts)
    linked = []
    for r in resources:
        if r.kind in facts.unlinked and not r.keep:
            r = replace(r, keep=facts.unlinked[r.kind])
        rule = LINK_RULES.get(r.kind)
        linked.append(rule(r, context) if rule else r)
    return linked


def budgets_last(resources: Iterable[FoundResource], listing_errors: Iterable[str]) -> list[FoundResource]:
    """A stack's budget goes only after everything else of that stack: it is what still watches the spend of
    whatever could not be deleted. Every other resource of its stack holds it (toolkit resources only: one whose
    expiry does not parse is not ours and holds nothing), and after a failed listing no budget goes at all: what
    the listing missed may still be running."""
    resources = list(resources)
    if list(listing_errors):
        keep = "a listing failed, so what is left of its stack is unknown: kept until a complete run"
        return [replace(r, keep=keep) if r.kind == "budgets:budget" else r for r in resources]
    by_stack: dict[str, list[str]] = {}
    for r in resources:
        if r.kind != "budgets:budget" and all(str(r.tags.get(key, "")).strip() for key in TOOLKIT_TAGS) \
                and parse_expires_at(r.tags[TAG_EXPIRES_AT]) is not None:
            by_stack.setdefault(r.stack, []).append(r.id)
    return [replace(r, in_use_by=tuple(sorted(by_stack.get(r.stack, ())))) if r.kind == "budgets:budget" and r.stack
            else r for r in resources]
