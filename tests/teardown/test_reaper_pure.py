"""planner/reaper.py: whose a resource is, what blocks it, the order of deletion and the $/hour it stops."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.reaper import (
    EXPIRED,
    FOREIGN,
    KIND_ORDER,
    LIVE,
    MALFORMED,
    FoundResource,
    assess,
    parse_expires_at,
    plan_reap,
    usd_per_hour,
)
from planner.tags import TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PAST, FUTURE = "2026-06-01T11:00:00Z", "2026-06-01T20:00:00Z"


def tags(stack="alpha", owner="team", expires=PAST, **extra):
    found = {TAG_STACK: stack, TAG_OWNER: owner, TAG_EXPIRES_AT: expires}
    return {k: v for k, v in {**found, **extra}.items() if v is not None}


def res(kind, rid, expires=PAST, stack="alpha", **kw):
    return FoundResource(kind, rid, "us-east-1", tags(stack=stack, expires=expires), **kw)


ASSESS_CASES = [
    ("expired", tags(), EXPIRED),
    ("live", tags(expires=FUTURE), LIVE),
    ("expires this very second", tags(expires="2026-06-01T12:00:00Z"), EXPIRED),
    ("offset zone", tags(expires="2026-06-01T13:30:00+02:00"), EXPIRED),  # 11:30Z
    ("offset zone, live", tags(expires="2026-06-01T15:00:00+02:00"), LIVE),  # 13:00Z
    ("fractional seconds", tags(expires="2026-06-01T11:59:59.5Z"), EXPIRED),
    ("no owner tag", tags(owner=None), FOREIGN),
    ("no stack tag", tags(stack=None), FOREIGN),
    ("no expiry tag", tags(expires=None), FOREIGN),
    ("empty stack value", tags(stack=""), FOREIGN),
    ("blank owner value", tags(owner="  "), FOREIGN),
    ("look-alike key case", {"Nemotron-Deploy:stack": "a", TAG_OWNER: "t", TAG_EXPIRES_AT: PAST}, FOREIGN),
    ("look-alike underscore", {TAG_STACK: "a", TAG_OWNER: "t", "nemotron-deploy:expires_at": PAST}, FOREIGN),
    ("look-alike trailing space", {TAG_STACK: "a", TAG_OWNER: "t", TAG_EXPIRES_AT + " ": PAST}, FOREIGN),
    ("other project prefix", {"nemotron:stack": "a", "nemotron:owner": "t", "nemotron:expires-at": PAST}, FOREIGN),
    ("words", tags(expires="tomorrow"), MALFORMED),
    ("no zone", tags(expires="2026-06-01T11:00:00"), MALFORMED),
    ("date only", tags(expires="2026-06-01"), MALFORMED),
    ("impossible date", tags(expires="2026-02-30T00:00:00Z"), MALFORMED),
    ("epoch seconds", tags(expires="1780000000"), MALFORMED),
    ("space separator", tags(expires="2026-06-01 11:00:00Z"), MALFORMED),
]


@pytest.mark.parametrize(("case", "resource_tags", "verdict"), ASSESS_CASES, ids=[c[0] for c in ASSESS_CASES])
def test_assess(case, resource_tags, verdict):
    a = assess(FoundResource("ec2:volume", "vol-1", "us-east-1", resource_tags), NOW)
    assert a.verdict == verdict, a.reason
    if verdict == MALFORMED:
        assert "left alone" in a.reason and resource_tags[TAG_EXPIRES_AT] in a.reason


def test_parse_expires_at_is_utc():
    assert parse_expires_at("2026-06-01T13:30:00+02:00") == datetime(2026, 6, 1, 11, 30, tzinfo=UTC)
    assert parse_expires_at(None) is None


def test_only_expired_toolkit_resources_are_selected_and_malformed_is_reported():
    found = [res("ec2:volume", "vol-expired"), res("ec2:volume", "vol-live", expires=FUTURE),
             FoundResource("ec2:volume", "vol-foreign", "us-east-1", tags(owner=None)),
             res("ec2:volume", "vol-odd", expires="soon")]
    plan = plan_reap(found, NOW)
    assert [d.resource.id for d in plan.deletions] == ["vol-expired"]
    assert [a.resource.id for a in plan.malformed] == ["vol-odd"]
    assert plan.counts() == {EXPIRED: 1, LIVE: 1, FOREIGN: 1, MALFORMED: 1}
    assert plan.blocked == ()


def test_stack_mode_selects_the_stack_live_or_expired_and_nothing_else():
    found = [res("ec2:volume", "a-live", expires=FUTURE), res("ec2:volume", "a-old"),
             res("ec2:volume", "b-old", stack="beta"), res("ec2:volume", "a-odd", expires="never"),
             FoundResource("ec2:volume", "a-foreign", "us-east-1", tags(owner=None))]
    assert {d.resource.id for d in plan_reap(found, NOW, stack="alpha").deletions} == {"a-live", "a-old"}


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        plan_reap([], datetime(2026, 6, 1))


# ---- what blocks a deletion ------------------------------------------------------------------------------------

BLOCK_CASES = [
    ("security group used by an instance the listing never saw (foreign)",
     [res("ec2:security-group", "sg-1", in_use_by=("i-foreign",))], {"sg-1": "i-foreign"}),
    ("ENI attached to a live toolkit instance",
     [res("ec2:network-interface", "eni-1", in_use_by=("i-live",)), res("ec2:instance", "i-live", expires=FUTURE,
                                                                        state="running")], {"eni-1": "i-live"}),
    ("config of a live endpoint, and its model through it",
     [res("sagemaker:endpoint", "ep", expires=FUTURE, state="InService"),
      res("sagemaker:endpoint-config", "cfg", in_use_by=("ep",)), res("sagemaker:model", "m", in_use_by=("cfg",))],
     {"cfg": "ep", "m": "cfg"}),
    ("cluster with a foreign node group",
     [res("eks:cluster", "c", in_use_by=("ng-foreign",), state="ACTIVE")], {"c": "ng-foreign"}),
    ("instance of an Auto Scaling group the reaper does not own",
     [res("ec2:instance", "i-asg", state="running", managed_by="Auto Scaling group web")], {"i-asg": "web"}),
    ("instance of a live node group",
     [res("eks:nodegroup", "ng", expires=FUTURE, state="ACTIVE"),
      res("ec2:instance", "i-ng", state="running", managed_by="ng")], {"i-ng": "ng"}),
]


@pytest.mark.parametrize(("case", "found", "blocked"), BLOCK_CASES, ids=[c[0] for c in BLOCK_CASES])
def test_blocked(case, found, blocked):
    plan = plan_reap(found, NOW)
    assert {b.resource.id: b.reason for b in plan.blocked}.keys() == blocked.keys()
    for b in plan.blocked:
        assert blocked[b.resource.id] in b.reason
    assert not {d.resource.id for d in plan.deletions} & blocked.keys()


def test_holders_that_are_gone_or_going_with_it_do_not_block():
    found = [res("ec2:instance", "i-gone", state="terminated"),
             res("ec2:network-interface", "eni-1", in_use_by=("i-gone",)),
             res("ec2:instance", "i-1", state="running"),
             res("ec2:security-group", "sg-1", in_use_by=("i-1", "eni-1", "sg-1"))]
    plan = plan_reap(found, NOW)
    assert [d.resource.id for d in plan.deletions] == ["i-1", "eni-1", "sg-1"]
    assert "i-gone" not in {a.resource.id for a in plan.assessments}  # terminated: not counted as found


def test_managed_instances_go_with_their_node_group_and_are_not_priced_twice():
    found = [res("ec2:instance", "i-1", state="running", instance_type="p5.48xlarge", managed_by="ng"),
             res("eks:nodegroup", "ng", state="ACTIVE", instance_type="p5.48xlarge", instance_count=2),
             res("eks:cluster", "c", state="ACTIVE", in_use_by=("ng",))]
    plan = plan_reap(found, NOW)
    assert [(d.resource.id, d.action) for d in plan.deletions] == [("ng", "delete"), ("c", "delete"),
                                                                   ("i-1", "with-manager")]
    assert plan.usd_per_hour_stopped == pytest.approx(2 * 55.04)


def test_deletion_already_under_way_is_waited_for_not_repeated():
    plan = plan_reap([res("ec2:instance", "i-1", state="shutting-down", instance_type="p5.48xlarge"),
                      res("eks:nodegroup", "ng", state="DELETING")], NOW)
    assert {d.resource.id: d.action for d in plan.deletions} == {"i-1": "wait", "ng": "wait"}
    assert plan.usd_per_hour_stopped == 0


# ---- order -----------------------------------------------------------------------------------------------------

EVERY_KIND = [
    res("ec2:security-group", "sg-api", in_use_by=("i-1", "arn:lb", "arn:cluster")),
    res("ec2:security-group", "sg-nodes", in_use_by=("eni-2", "vpce-ssm")),
    res("ec2:placement-group", "pg-1", in_use_by=("i-1",)),
    res("ec2:launch-template", "lt-1", in_use_by=("arn:ng",)),
    res("ec2:volume", "vol-1", in_use_by=("i-1",)),
    res("ec2:network-interface", "eni-2", in_use_by=("i-1",)),
    res("ec2:instance", "i-1", state="running", instance_type="p5.48xlarge"),
    res("elbv2:load-balancer", "arn:lb", state="active"),
    res("eks:cluster", "arn:cluster", state="ACTIVE", in_use_by=("arn:ng",)),
    res("eks:nodegroup", "arn:ng", state="ACTIVE", instance_type="p5.48xlarge", instance_count=2),
    res("sagemaker:model", "arn:model", in_use_by=("arn:cfg",)),
    res("sagemaker:endpoint-config", "arn:cfg", in_use_by=("arn:ep",)),
    res("sagemaker:endpoint", "arn:ep", state="InService", instance_type="ml.p5en.48xlarge", instance_count=1),
    res("application-autoscaling:scalable-target", "arn:target"),
    # a stack's network, as gather links it
    res("ec2:natgateway", "nat-1", state="available"),
    res("ec2:elastic-ip", "eipalloc-1", in_use_by=("nat-1",)),
    res("ec2:vpc-endpoint", "vpce-ssm", state="available", instance_count=1, attributes={"endpoint_type": "Interface"}),
    res("ec2:vpc-endpoint", "vpce-s3", state="available", instance_count=0, attributes={"endpoint_type": "Gateway"}),
    res("ec2:internet-gateway", "igw-1", in_use_by=("nat-1",), attached_to=("vpc-1",)),
    res("ec2:route-table", "rtb-private", in_use_by=("vpce-s3",), attached_to=("subnet-private",)),
    res("ec2:subnet", "subnet-private", in_use_by=("i-1", "vpce-ssm")),
    res("ec2:subnet", "subnet-public", in_use_by=("nat-1",)),
    res("ec2:vpc", "vpc-1", in_use_by=("subnet-private", "subnet-public", "sg-nodes", "igw-1", "rtb-private")),
    res("secretsmanager:secret", "arn:secret"),
    res("iam:instance-profile", "arn:profile", attributes={"roles": ("role",)}),
    res("iam:role", "arn:role", in_use_by=("arn:profile",)),
    res("budgets:budget", "arn:budget", in_use_by=("i-1", "vpc-1", "arn:role", "arn:secret", "arn:ep")),
]
NETWORK_USD_PER_HOUR = 0.045 + 0.005 + 0.01  # NAT gateway, Elastic IP, one interface endpoint in one zone


def test_every_kind_in_dependency_order():
    plan = plan_reap(EVERY_KIND, NOW)
    kinds = [d.resource.kind for d in plan.deletions]
    assert [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k] == list(KIND_ORDER)
    actions = {d.resource.id: d.action for d in plan.deletions}
    assert [d.action for d in plan.deletions][:1] == ["deregister"]
    assert actions["i-1"] == "terminate" and actions["eipalloc-1"] == "release"
    assert actions["igw-1"] == "detach+delete" and actions["rtb-private"] == "disassociate+delete"
    assert actions["arn:secret"] == "force-delete" and actions["arn:role"] == "detach-policies+delete"
    assert plan.deletions[-1].resource.id == "arn:budget"
    assert plan.usd_per_hour_stopped == pytest.approx(55.04 + 2 * 55.04 + 79.13 + NETWORK_USD_PER_HOUR)
    steps = plan.steps()
    assert ("ec2:security-group", 2) in [(s[1], len(s[3])) for s in steps]


@given(st.permutations(EVERY_KIND))
def test_order_does_not_depend_on_listing_order_and_holders_go_first(found):
    plan = plan_reap(found, NOW)
    order = [d.resource.id for d in plan.deletions]
    assert order == [d.resource.id for d in plan_reap(EVERY_KIND, NOW).deletions]
    position = {rid: i for i, rid in enumerate(order)}
    for d in plan.deletions:
        for holder in d.resource.in_use_by:
            assert position[holder] < position[d.resource.id]


def test_attached_to_orders_nothing_but_keeps_what_a_foreign_resource_is_attached_to():
    subnet = res("ec2:subnet", "subnet-1")
    table = res("ec2:route-table", "rtb-1", attached_to=("subnet-1",))
    assert [d.resource.id for d in plan_reap([subnet, table], NOW).deletions] == ["rtb-1", "subnet-1"]
    plan = plan_reap([res("ec2:route-table", "rtb-1", attached_to=("subnet-foreign",)),
                      res("ec2:internet-gateway", "igw-1", attached_to=("vpc-live",)),
                      res("ec2:vpc", "vpc-live", expires=FUTURE)], NOW)
    assert plan.deletions == ()
    assert {b.resource.id: b.reason for b in plan.blocked} == {
        "rtb-1": "attached to subnet-foreign, which is not being deleted",
        "igw-1": "attached to vpc-live, which is not being deleted"}


def test_main_route_table_and_default_security_group_go_with_their_vpc():
    found = [res("ec2:vpc", "vpc-1", in_use_by=("subnet-1",)), res("ec2:subnet", "subnet-1"),
             res("ec2:route-table", "rtb-main", managed_by="vpc-1"),
             res("ec2:security-group", "sg-default", managed_by="vpc-1")]
    plan = plan_reap(found, NOW)
    assert [(d.resource.id, d.action) for d in plan.deletions] == [
        ("subnet-1", "delete"), ("vpc-1", "delete"), ("sg-default", "with-manager"), ("rtb-main", "with-manager")]
    # a VPC that stays keeps them (a tagged default group of someone else's VPC is not deleted either)
    plan = plan_reap([res("ec2:security-group", "sg-default", managed_by="vpc-foreign")], NOW)
    assert plan.deletions == () and "managed by vpc-foreign" in plan.blocked[0].reason


def test_a_default_vpc_is_never_deleted_whatever_its_tags():
    plan = plan_reap([res("ec2:vpc", "vpc-default", keep="the region's default VPC: never deleted"),
                      res("ec2:subnet", "subnet-1")], NOW)
    assert [d.resource.id for d in plan.deletions] == ["subnet-1"]
    assert plan.blocked[0].reason == "the region's default VPC: never deleted"


def test_a_budget_goes_last_and_stays_while_anything_of_its_stack_stays():
    holders = tuple(f"vol-{i}" for i in range(5))
    found = [res("budgets:budget", "arn:budget", in_use_by=holders), *(res("ec2:volume", v) for v in holders)]
    assert plan_reap(found, NOW).deletions[-1].resource.id == "arn:budget"
    live = [res("budgets:budget", "arn:budget", in_use_by=holders),
            *(res("ec2:volume", v, expires=FUTURE) for v in holders)]
    plan = plan_reap(live, NOW)
    assert plan.deletions == ()
    assert plan.blocked[0].reason == "in use by vol-0, vol-1, vol-2 and 2 more, which is not being deleted"


def test_holders_go_first_even_against_kind_order():
    # an instance holding a scalable target is nonsense in AWS, but the edge must still win over the kind order
    plan = plan_reap([res("application-autoscaling:scalable-target", "t", in_use_by=("i-1",)),
                      res("ec2:instance", "i-1", state="running")], NOW)
    assert [d.resource.id for d in plan.deletions] == ["i-1", "t"]


def test_a_cycle_of_holders_still_plans_every_resource():
    plan = plan_reap([res("ec2:security-group", "sg-b", in_use_by=("sg-a",)),
                      res("ec2:security-group", "sg-a", in_use_by=("sg-b",))], NOW)
    assert [d.resource.id for d in plan.deletions] == ["sg-a", "sg-b"]


# ---- price -----------------------------------------------------------------------------------------------------

PRICE_CASES = [
    ("running p5", res("ec2:instance", "i", state="running", instance_type="p5.48xlarge"), 55.04),
    ("pending p5en", res("ec2:instance", "i", state="pending", instance_type="p5en.48xlarge"), 63.30),
    ("stopped instance bills no compute", res("ec2:instance", "i", state="stopped", instance_type="p5.48xlarge"),
     0.0),
    ("type without a catalogue price", res("ec2:instance", "i", state="running", instance_type="p3.16xlarge"), None),
    ("catalogue type without a price", res("ec2:instance", "i", state="running", instance_type="p5e.48xlarge"),
     None),
    ("endpoint with two instances", res("sagemaker:endpoint", "e", state="InService",
                                        instance_type="ml.p5en.48xlarge", instance_count=2), 2 * 79.13),
    ("node group scaled to zero", res("eks:nodegroup", "n", state="ACTIVE", instance_type="p5.48xlarge",
                                      instance_count=0), 0.0),
    ("security group", res("ec2:security-group", "sg"), 0.0),
    ("NAT gateway", res("ec2:natgateway", "nat", state="available"), 0.045),
    ("NAT gateway being deleted", res("ec2:natgateway", "nat", state="deleting"), 0.0),
    ("interface endpoint in two zones", res("ec2:vpc-endpoint", "vpce", state="available", instance_count=2,
                                            attributes={"endpoint_type": "Interface"}), 0.02),
    ("S3 gateway endpoint", res("ec2:vpc-endpoint", "vpce", state="available",
                                attributes={"endpoint_type": "Gateway"}), 0.0),
    ("Elastic IP, associated or not", res("ec2:elastic-ip", "eipalloc"), 0.005),
    ("budget", res("budgets:budget", "arn:budget"), 0.0),
    ("IAM role", res("iam:role", "arn:role"), 0.0),
]


@pytest.mark.parametrize(("case", "resource", "price"), PRICE_CASES, ids=[c[0] for c in PRICE_CASES])
def test_price(case, resource, price):
    assert usd_per_hour(resource) == (None if price is None else pytest.approx(price))


def test_unknown_prices_are_listed_not_summed():
    plan = plan_reap([res("ec2:instance", "i-known", state="running", instance_type="p5.48xlarge"),
                      res("ec2:instance", "i-unknown", state="running", instance_type="p3.16xlarge")], NOW)
    assert plan.usd_per_hour_stopped == pytest.approx(55.04)
    assert plan.unpriced == ("i-unknown",)
    assert plan.to_json()["deletions"][1]["usd_per_hour"] is None
