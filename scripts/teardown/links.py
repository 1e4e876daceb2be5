"""The teardown's link listings: what uses a security group, a subnet, a VPC or a placement group, which only a
listing of other kinds can see. The rules that turn these facts into links are planner/reaper_links.py's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from planner.reaper import FoundResource
from planner.reaper_links import LINKED_KINDS, LinkFacts, Owners, eni_holder, link_resources
from scripts.teardown.common import Inventory, chunks, pages

UNLINKED = "what uses it could not be listed: kept until a complete run"


@dataclass
class LinkListings:
    """One region's link listings, each filtered by the ids found (200 per filter) and paginated; what they find
    goes into `users` (security group, subnet, VPC id -> what uses it) and `members` (placement group name ->
    instances)."""

    ec2: Any
    page_size: int
    resources: list[FoundResource]
    owners: Owners = field(init=False)
    ids: dict[str, list[str]] = field(init=False)
    users: dict[str, set[str]] = field(init=False)
    members: dict[str, set[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.owners = Owners.of(self.resources)
        self.ids = {kind: [r.id for r in self.resources if r.kind == kind] for kind in LINKED_KINDS}
        self.users = {rid: set() for kind in LINKED_KINDS for rid in self.ids[kind]}
        self.members = {r.attributes["name"]: set() for r in self.resources if r.kind == "ec2:placement-group"}

    def listing(self, operation: str, key: str, name: str, values: list[str]) -> Iterator[dict]:
        for chunk in chunks(values):
            yield from pages(self.ec2, operation, key, Filters=[{"Name": name, "Values": chunk}],
                             PaginationConfig={"PageSize": max(5, min(self.page_size, 100 if key == "RouteTables"
                                                                      else 1000))})

    def security_group_users(self) -> None:
        for eni in self.listing("describe_network_interfaces", "NetworkInterfaces", "group-id",
                                self.ids["ec2:security-group"]):
            holder = eni_holder(eni, self.owners)
            for group in eni.get("Groups", ()):
                if group["GroupId"] in self.users:
                    self.users[group["GroupId"]].add(holder)

    def subnet_users(self) -> None:
        for eni in self.listing("describe_network_interfaces", "NetworkInterfaces", "subnet-id",
                                self.ids["ec2:subnet"]):
            self.users[eni["SubnetId"]].add(eni_holder(eni, self.owners))

    def vpc_contents(self) -> None:
        """Whatever else lives in a toolkit VPC, toolkit or not, must go before it (the default security group and
        the main route table go with it)."""
        vpcs = self.ids["ec2:vpc"]
        for subnet in self.listing("describe_subnets", "Subnets", "vpc-id", vpcs):
            self.users[subnet["VpcId"]].add(subnet["SubnetId"])
        for group in self.listing("describe_security_groups", "SecurityGroups", "vpc-id", vpcs):
            if group.get("GroupName") != "default":
                self.users[group["VpcId"]].add(group["GroupId"])
        for table in self.listing("describe_route_tables", "RouteTables", "vpc-id", vpcs):
            if not any(a.get("Main") for a in table.get("Associations", ())):
                self.users[table["VpcId"]].add(table["RouteTableId"])
        for gateway in self.listing("describe_internet_gateways", "InternetGateways", "attachment.vpc-id", vpcs):
            for attachment in gateway.get("Attachments", ()):
                if attachment.get("VpcId") in self.users:
                    self.users[attachment["VpcId"]].add(gateway["InternetGatewayId"])

    def placement_group_members(self) -> None:
        for chunk in chunks(list(self.members)):
            for reservation in pages(self.ec2, "describe_instances", "Reservations",
                                     Filters=[{"Name": "placement-group-name", "Values": chunk}],
                                     PaginationConfig={"PageSize": self.page_size}):
                for inst in reservation.get("Instances", ()):
                    if inst["State"]["Name"] != "terminated":
                        self.members[inst["Placement"]["GroupName"]].add(inst["InstanceId"])


def link(region: str, resources: list[FoundResource], clients, page_size: int,
         inventory: Inventory) -> list[FoundResource]:
    """Add the links one listing cannot see alone: who uses a security group, a subnet, a VPC or a placement
    group, which NAT gateway holds an Elastic IP, which gateway endpoint uses a route table, which node group
    launches an instance or uses a launch template. Calls grow with pages, not resources; none is made when there
    is nothing to link. A link listing that fails keeps its kind (what uses it is unknown) and is recorded in
    `inventory`."""
    listings = LinkListings(clients("ec2", region), page_size, resources)
    unlinked: dict[str, str] = {}  # kind -> why its resources stay: what uses them is unknown
    for kind, operation, find_users in (
            ("ec2:security-group", "ec2:DescribeNetworkInterfaces", listings.security_group_users),
            ("ec2:subnet", "ec2:DescribeNetworkInterfaces", listings.subnet_users),
            ("ec2:vpc", "ec2:DescribeSubnets", listings.vpc_contents),
            ("ec2:placement-group", "ec2:DescribeInstances", listings.placement_group_members)):
        try:
            find_users()
        except Exception as err:  # noqa: BLE001 - any failure holds back only this kind
            inventory.failed(region, (kind,), err, operation, what=" (what uses it)")
            unlinked[kind] = UNLINKED
    return link_resources(resources, LinkFacts(listings.users, listings.members, unlinked))
