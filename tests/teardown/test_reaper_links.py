"""planner/reaper_links.py as a table: each row is one resource (its kind and attributes), what else the region holds
and what the link listings found, and the links the rules give it (in_use_by, managed_by, keep)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from planner.reaper import FoundResource
from planner.reaper_links import LINK_RULES, LinkFacts, Owners, budgets_last, eni_holder, link_resources
from planner.tags import TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK

R = "us-east-1"
LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/abc"
NG = "arn:aws:eks:us-east-1:123456789012:nodegroup/alpha-eks/alpha-gpu/1"
CLUSTER = "arn:aws:eks:us-east-1:123456789012:cluster/alpha-eks"


def res(kind: str, rid: str, **fields) -> FoundResource:
    return FoundResource(kind, rid, R, **fields)


# what else the region holds: a NAT gateway with its address and interface, an interface endpoint in two subnets
# and a gateway endpoint on a route table, a node group launching from a template, a cluster and a load balancer
NEIGHBOURS = [
    res("ec2:natgateway", "nat-1", attributes={"vpc": "vpc-1", "subnet": "subnet-1", "allocations": ("eipalloc-1",),
                                               "interfaces": ("eni-nat",)}),
    res("ec2:vpc-endpoint", "vpce-if", attributes={"subnets": ("subnet-1", "subnet-2"), "interfaces": ("eni-vpce",),
                                                   "route_tables": ()}),
    res("ec2:vpc-endpoint", "vpce-gw", attributes={"subnets": (), "interfaces": (), "route_tables": ("rtb-1",)}),
    res("eks:nodegroup", NG, attributes={"cluster": "alpha-eks", "name": "alpha-gpu", "launch_template": "lt-1"}),
    res("eks:cluster", CLUSTER, attributes={"name": "alpha-eks"}),
    res("elbv2:load-balancer", LB, attributes={"name": "web"}),
]
FACTS = LinkFacts(users={"sg-1": {"i-1", "sg-1"}, "subnet-1": {"i-2"}, "vpc-1": {"subnet-1", "sg-1"}},
                  placement_members={"pg-a": {"i-3", "i-1"}})

# (row id, the resource, facts (None: FACTS), expected (in_use_by, managed_by, keep))
ROWS = [
    ("security group: what its listing found, never itself",
     res("ec2:security-group", "sg-1", attributes={"name": "web", "vpc": "vpc-1"}), None, (("i-1",), None, "")),
    ("default security group goes with its VPC",
     res("ec2:security-group", "sg-d", attributes={"name": "default", "vpc": "vpc-1"}), None, ((), "vpc-1", "")),
    ("subnet: interfaces, the NAT gateway and the interface endpoint in it",
     res("ec2:subnet", "subnet-1", attributes={"vpc": "vpc-1"}), None, (("i-2", "nat-1", "vpce-if"), None, "")),
    ("subnet with only an interface endpoint",
     res("ec2:subnet", "subnet-2", attributes={"vpc": "vpc-1"}), None, (("vpce-if",), None, "")),
    ("VPC: what lives in it", res("ec2:vpc", "vpc-1"), None, (("sg-1", "subnet-1"), None, "")),
    ("VPC with nothing in it", res("ec2:vpc", "vpc-2"), None, ((), None, "")),
    ("placement group: the instances in it, by name",
     res("ec2:placement-group", "pg-0abc", attributes={"name": "pg-a"}), None, (("i-1", "i-3"), None, "")),
    ("launch template: the node groups launching from it",
     res("ec2:launch-template", "lt-1", attributes={"name": "t"}), None, ((NG,), None, "")),
    ("launch template nobody uses", res("ec2:launch-template", "lt-2"), None, ((), None, "")),
    ("instance of a node group found: managed by it",
     res("ec2:instance", "i-9", tags={"eks:cluster-name": "alpha-eks", "eks:nodegroup-name": "alpha-gpu"}), None,
     ((), NG, "")),
    ("instance of a node group not found: named",
     res("ec2:instance", "i-9", tags={"eks:cluster-name": "beta", "eks:nodegroup-name": "gpu"}), None,
     ((), "EKS node group beta/gpu", "")),
    ("instance of an Auto Scaling group",
     res("ec2:instance", "i-9", tags={"aws:autoscaling:groupName": "asg-1"}), None,
     ((), "Auto Scaling group asg-1", "")),
    ("plain instance", res("ec2:instance", "i-9"), None, ((), None, "")),
    ("Elastic IP of a NAT gateway", res("ec2:elastic-ip", "eipalloc-1"), None, (("nat-1",), None, "")),
    ("Elastic IP on an endpoint's interface",
     res("ec2:elastic-ip", "eipalloc-2", attributes={"interface": "eni-vpce"}), None, (("vpce-if",), None, "")),
    ("Elastic IP on an instance keeps its own holder",
     res("ec2:elastic-ip", "eipalloc-3", in_use_by=("i-1",), attributes={"interface": "eni-x"}), None,
     (("i-1",), None, "")),
    ("route table used by a gateway endpoint", res("ec2:route-table", "rtb-1"), None, (("vpce-gw",), None, "")),
    ("internet gateway held by the NAT gateways of its VPCs",
     res("ec2:internet-gateway", "igw-1", attributes={"vpcs": ("vpc-1", "vpc-2")}), None, (("nat-1",), None, "")),
    ("a kind without a rule keeps its own links",
     res("ec2:volume", "vol-1", in_use_by=("i-1",)), None, (("i-1",), None, "")),
    ("a kind whose link listing failed is kept",
     res("ec2:subnet", "subnet-3"), LinkFacts(unlinked={"ec2:subnet": "what uses it could not be listed"}),
     ((), None, "what uses it could not be listed")),
    ("an earlier keep is not replaced",
     res("ec2:vpc", "vpc-d", keep="the region's default VPC"), LinkFacts(unlinked={"ec2:vpc": "unknown"}),
     ((), None, "the region's default VPC")),
]


@pytest.mark.parametrize(("resource", "facts", "expected"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_link_rules(resource, facts, expected):
    linked = link_resources([resource, *NEIGHBOURS], facts or FACTS)[0]
    assert (linked.in_use_by, linked.managed_by, linked.keep) == expected


def test_every_rule_has_a_row():
    assert set(LINK_RULES) <= {row[1].kind for row in ROWS}


OWNERS = Owners.of(NEIGHBOURS)

# (row id, network interface as DescribeNetworkInterfaces answers, what holds it)
ENI_ROWS = [
    ("NAT gateway's interface", {"NetworkInterfaceId": "eni-nat"}, "nat-1"),
    ("primary interface goes with its instance",
     {"NetworkInterfaceId": "eni-1", "Attachment": {"InstanceId": "i-1", "DeviceIndex": 0}}, "i-1"),
    ("delete-on-termination goes with its instance",
     {"NetworkInterfaceId": "eni-1", "Attachment": {"InstanceId": "i-1", "DeviceIndex": 1,
                                                    "DeleteOnTermination": True}}, "i-1"),
    ("a secondary interface that stays is its own holder",
     {"NetworkInterfaceId": "eni-2", "Attachment": {"InstanceId": "i-1", "DeviceIndex": 1}}, "eni-2"),
    ("load balancer found", {"NetworkInterfaceId": "eni-3", "Description": "ELB app/web/abc"}, LB),
    ("load balancer not found", {"NetworkInterfaceId": "eni-3", "Description": "ELB app/other/x"},
     "load balancer app/other/x"),
    ("EKS cluster found", {"NetworkInterfaceId": "eni-4", "Description": "Amazon EKS alpha-eks"}, CLUSTER),
    ("EKS cluster not found", {"NetworkInterfaceId": "eni-4", "Description": "Amazon EKS beta"}, "EKS cluster beta"),
    ("NAT gateway named by the description",
     {"NetworkInterfaceId": "eni-5", "Description": "Interface for NAT Gateway nat-9"}, "nat-9"),
    ("VPC endpoint named by the description",
     {"NetworkInterfaceId": "eni-6", "Description": "VPC Endpoint Interface vpce-9"}, "vpce-9"),
]


@pytest.mark.parametrize(("eni", "holder"), [row[1:] for row in ENI_ROWS], ids=[row[0] for row in ENI_ROWS])
def test_eni_holder(eni, holder):
    assert eni_holder(eni, OWNERS) == holder


def _toolkit(kind: str, rid: str, stack: str, expires: str | None = None) -> FoundResource:
    expires = expires or (datetime(2026, 6, 1, tzinfo=UTC) - timedelta(hours=1)).isoformat()
    return FoundResource(kind, rid, R, {TAG_STACK: stack, TAG_OWNER: "me", TAG_EXPIRES_AT: expires})


def test_a_budget_is_held_by_the_rest_of_its_stack_and_kept_after_a_failed_listing():
    budget = _toolkit("budgets:budget", "budget-a", "a")
    found = [budget, _toolkit("ec2:instance", "i-1", "a"), _toolkit("ec2:volume", "vol-1", "a"),
             _toolkit("ec2:instance", "i-2", "b"), _toolkit("ec2:instance", "i-3", "a", expires="soon")]
    assert budgets_last(found, [])[0].in_use_by == ("i-1", "vol-1")  # not stack b's, not an unreadable expiry
    assert budgets_last(found, ["us-east-1 ec2:volume: denied"])[0].keep.startswith("a listing failed")
