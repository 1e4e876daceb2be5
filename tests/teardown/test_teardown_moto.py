"""scripts/teardown/ against moto: only expired toolkit resources go, in dependency order; nothing foreign is
touched; a second run finds nothing; retries and waits are bounded; listing calls grow with pages, not resources."""

from __future__ import annotations

import json
import math
import os
from datetime import timedelta

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.parsers import ResponseParserError

from planner.tags import TAG_EXPIRES_AT
from scripts import teardown
from scripts.aws import AwsClients
from tests.moto_server import running_moto_server
from tests.teardown.aws_fakes import (
    REGION,
    CallCounter,
    Paging,
    at_now,
    create_budget,
    existing,
    fake_session,
    populate,
    spec,
    toolkit_tags,
)

# alpha's $/hour: two p5.48xlarge servers, an ml.p5en.48xlarge endpoint, a node group of 2 x p5.48xlarge, and its
# network: NAT gateway $0.045, Elastic IP $0.005, four interface endpoints in one zone at $0.01 (S3 gateway: free)
ALPHA_USD_PER_HOUR = 2 * 55.04 + 79.13 + 2 * 55.04 + 0.045 + 0.005 + 4 * 0.01


def run(capsys, argv, **kwargs):
    code = teardown.main([*argv, "--json"], **kwargs)
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def doomed_key(deletion: dict) -> str:
    """How aws_fakes.Account names a resource: SageMaker configs and models by name, the rest by id or ARN."""
    return deletion["label"] if deletion["kind"] in ("sagemaker:endpoint-config", "sagemaker:model") \
        else deletion["id"]


class CallLog:
    """The order of API operations (and the parameters of each), to check the order of deletions."""

    def __init__(self, session):
        self.operations: list[str] = []
        self.params: list[dict] = []
        session.events.register("provide-client-params", lambda params, **_: self.params.append(dict(params)))
        session.events.register("after-call", lambda model, **_: self.operations.append(model.name))

    def index(self, operation: str, after: str) -> int:
        return self.operations.index(operation, self.first(after))

    def parameters(self, operation: str) -> list[dict]:
        return [p for op, p in zip(self.operations, self.params, strict=True) if op == operation]

    def first(self, operation: str) -> int:
        return self.operations.index(operation)

    def last(self, operation: str) -> int:
        return len(self.operations) - 1 - self.operations[::-1].index(operation)


def test_dry_run_lists_prices_and_changes_nothing(aws, capsys):
    account = populate(at_now())
    before = existing(account)
    counter = CallCounter(account.session)
    code, report, _ = run(capsys, ["--expired"], session=account.session)
    assert code == 0 and report["dry_run"] is True
    assert {doomed_key(d): d["kind"] for d in report["deletions"]} == account.doomed
    assert all(d["outcome"].startswith("would ") for d in report["deletions"])
    assert report["usd_per_hour_stopped"] == pytest.approx(ALPHA_USD_PER_HOUR)
    assert report["found"]["malformed"] == 2 and len(report["malformed"]) == 2
    assert existing(account) == before
    assert not [op for op in counter.calls if not op.startswith(("Describe", "List", "Get"))]


def test_expired_sweep_deletes_only_expired_toolkit_resources_in_order(aws, capsys, policy):
    account = populate(at_now())
    log = CallLog(account.session)
    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    assert code == 0, report["left"]
    after = existing(account)
    assert not set(account.doomed) & set(after), "expired toolkit resources left"
    assert set(account.kept) <= set(after), "a live or foreign resource was touched"
    outcomes = {d["id"]: d["outcome"] for d in report["deletions"]}
    default_sg = next(d["id"] for d in report["deletions"] if d["action"] == "with-manager")
    assert outcomes.pop(default_sg) == "removed with manager"  # the VPC's default security group went with it
    assert set(outcomes.values()) == {"deleted"}
    assert report["usd_per_hour_stopped"] == pytest.approx(ALPHA_USD_PER_HOUR) and report["left"] == []
    # dependency order as the API saw it
    assert log.last("DeregisterScalableTarget") < log.first("DeleteEndpoint") < log.first("DeleteEndpointConfig") \
        < log.first("DeleteModel")
    assert log.last("DeleteNodegroup") < log.first("DeleteCluster")
    assert log.last("TerminateInstances") < log.first("DeleteNetworkInterface")
    assert log.last("DeleteLoadBalancer") < log.first("DeleteSecurityGroup")
    assert log.last("DeletePlacementGroup") < log.first("DeleteSecurityGroup")
    assert log.first("RevokeSecurityGroupIngress") < log.first("DeleteSecurityGroup")
    # the network: NAT gateway (waited for) -> its Elastic IP -> endpoints (waited for) -> security groups ->
    # internet gateway -> route tables -> subnets -> VPC; then secrets, IAM, and the budget last of all
    assert log.last("TerminateInstances") < log.first("DeleteNatGateway") < log.first("ReleaseAddress")
    assert log.first("DeleteNatGateway") < log.index("DescribeNatGateways", after="DeleteNatGateway") \
        < log.first("ReleaseAddress")
    assert log.last("ReleaseAddress") < log.first("DeleteVpcEndpoints") < log.last("DeleteVpcEndpoints") \
        < log.first("DeleteSecurityGroup")
    assert log.last("DeleteSecurityGroup") < log.first("DetachInternetGateway") < log.first("DeleteInternetGateway") \
        < log.first("DisassociateRouteTable") < log.first("DeleteRouteTable") < log.first("DeleteSubnet") \
        < log.last("DeleteSubnet") < log.first("DeleteVpc")
    assert log.last("DeleteVpc") < log.first("DeleteSecret")
    assert log.first("RemoveRoleFromInstanceProfile") < log.first("DeleteInstanceProfile") \
        < log.first("DetachRolePolicy") < log.first("DeleteRole")
    assert log.first("DeleteRolePolicy") < log.first("DeleteRole") < log.first("DeleteBudget")
    assert log.operations.count("DeleteBudget") == 1 and log.last("DeleteBudget") == max(
        i for i, op in enumerate(log.operations) if op.startswith(("Delete", "Terminate", "Release")))
    assert log.parameters("DeleteSecret") == [{"SecretId": next(i for i, k in account.doomed.items()
                                                                if k == "secretsmanager:secret"),
                                               "ForceDeleteWithoutRecovery": True}]

    code, again, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    assert code == 0 and again["deletions"] == [] and again["found"]["expired"] == 0
    assert set(account.kept) <= set(existing(account))


def test_cross_referencing_security_groups_lose_only_their_own_rules(aws, capsys, policy):
    account = populate(at_now())
    ec2 = account.client("ec2")
    keeper = ec2.create_security_group(GroupName="foreign", Description="f")["GroupId"]
    doomed_sg = next(i for i, k in account.doomed.items() if k == "ec2:security-group")
    ec2.authorize_security_group_ingress(GroupId=keeper, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22,
                                                                         "ToPort": 22, "IpRanges": [
                                                                             {"CidrIp": "10.0.0.0/8"}]}])
    run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    rules = ec2.describe_security_groups(GroupIds=[keeper])["SecurityGroups"][0]["IpPermissions"]
    assert rules and rules[0]["IpRanges"] == [{"CidrIp": "10.0.0.0/8"}]  # the foreign group's rules are intact
    assert doomed_sg not in existing(account)


def test_what_stays_holds_what_expired_and_yes_exits_1(aws, capsys, policy):
    now = at_now()
    account = populate(now)
    ec2 = account.client("ec2")
    expired, live = toolkit_tags("gamma", now - timedelta(hours=2)), toolkit_tags("beta", now + timedelta(hours=3))
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    gamma_sg = ec2.create_security_group(GroupName="gamma", Description="g",
                                         TagSpecifications=spec("security-group", expired))["GroupId"]
    ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5.48xlarge", SubnetId=subnet,
                      SecurityGroupIds=[gamma_sg], TagSpecifications=spec("instance", live))
    foreign = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="m5.large",
                                SubnetId=subnet)["Instances"][0]["InstanceId"]
    gamma_eni = ec2.create_network_interface(SubnetId=subnet, TagSpecifications=spec("network-interface", expired)
                                             )["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=gamma_eni, InstanceId=foreign, DeviceIndex=1)
    gamma_pg = ec2.create_placement_group(GroupName="gamma-pg", Strategy="cluster", TagSpecifications=spec(
        "placement-group", expired))["PlacementGroup"]["GroupId"]
    account.placement_groups.in_use["gamma-pg"] = {foreign}

    code, dry, _ = run(capsys, ["--expired"], session=account.session)
    assert code == 0  # a dry run lists; it does not judge
    blocked = {b["id"]: b["reason"] for b in dry["blocked"]}
    assert set(blocked) == {gamma_sg, gamma_eni, gamma_pg}
    assert foreign in blocked[gamma_eni] and foreign in blocked[gamma_pg]

    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    assert code == 1
    assert {item["id"] for item in report["left"]} == {gamma_sg, gamma_eni, gamma_pg}
    after = existing(account)
    assert {gamma_sg, gamma_eni, gamma_pg, foreign} <= set(after)
    assert not set(account.doomed) & set(after)


def test_a_network_iam_role_and_budget_with_foreign_parts_are_left_with_the_reason(aws, capsys, policy):
    now = at_now()
    account = populate(now)
    ec2, iam = account.client("ec2"), account.client("iam")
    delta = toolkit_tags("delta", now - timedelta(hours=2))
    vpc = ec2.create_vpc(CidrBlock="10.70.0.0/16", TagSpecifications=spec("vpc", delta))["Vpc"]["VpcId"]
    foreign_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.70.1.0/24")["Subnet"]["SubnetId"]  # untagged
    table = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec("route-table", delta))["RouteTable"][
        "RouteTableId"]
    ec2.associate_route_table(RouteTableId=table, SubnetId=foreign_subnet)
    foreign_vpc = ec2.create_vpc(CidrBlock="10.71.0.0/16")["Vpc"]["VpcId"]
    gateway = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway", delta))["InternetGateway"][
        "InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=foreign_vpc)
    foreign_instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="m5.large",
                                         SubnetId=foreign_subnet)["Instances"][0]["InstanceId"]
    address = ec2.allocate_address(Domain="vpc", TagSpecifications=spec("elastic-ip", delta))["AllocationId"]
    ec2.associate_address(AllocationId=address, InstanceId=foreign_instance)
    role = iam.create_role(RoleName="delta-role", AssumeRolePolicyDocument="{}", Tags=delta)["Role"]["Arn"]
    iam.create_instance_profile(InstanceProfileName="someone-elses-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="someone-elses-profile", RoleName="delta-role")
    budget = create_budget(account.client("budgets"), "nemotron-deploy-delta", delta)

    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    blocked = {b["id"]: b["reason"] for b in report["blocked"]}
    assert code == 1 and set(blocked) == {vpc, table, gateway, address, role, budget}
    assert foreign_subnet in blocked[vpc] and blocked[table].startswith(f"attached to {foreign_subnet}")
    assert blocked[gateway].startswith(f"attached to {foreign_vpc}") and foreign_instance in blocked[address]
    assert "someone-elses-profile" in blocked[role] and blocked[budget].startswith("in use by ")
    assert {item["id"] for item in report["left"]} == set(blocked)
    after = existing(account)
    assert {vpc, table, gateway, address, role, budget, foreign_subnet, foreign_vpc, foreign_instance} <= set(after)
    assert ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Associations"]  # still associated
    assert not set(account.doomed) & set(after)


def test_stack_mode_sweeps_one_stack_and_says_pulumi_was_skipped(aws, capsys, policy, monkeypatch, tmp_path):
    account = populate(at_now())
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi here
    code, report, _ = run(capsys, ["--stack", "beta", "--region", REGION, "--yes"], session=account.session,
                          policy=policy)
    assert code == 0
    assert "not on PATH" in report["pulumi"]["note"] and report["pulumi"]["ran"] is False
    assert {d["stack"] for d in report["deletions"]} == {"beta"}
    beta = {doomed_key(d): d["kind"] for d in report["deletions"]}
    assert beta == account.live
    after = existing(account)
    assert not set(beta) & set(after)  # live, but the stack was named: gone
    assert set(account.doomed) <= set(after)  # alpha is expired but not this stack: untouched


@pytest.mark.parametrize(("pulumi_status", "expected"), [(0, 0), (3, 1)])
def test_stack_mode_runs_pulumi_destroy_first(aws, capsys, policy, monkeypatch, tmp_path, pulumi_status, expected):
    account = populate(at_now())
    calls = tmp_path / "pulumi-argv"
    fake = tmp_path / "pulumi"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexit {pulumi_status}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    code, report, _ = run(capsys, ["--stack", "h100-pilot", "--yes"], session=account.session, policy=policy)
    assert calls.read_text().split() == ["destroy", "--yes", "--non-interactive", "-s", "h100-pilot"]
    assert code == expected and report["pulumi"]["exit_code"] == pulumi_status
    assert report["regions"] == ["us-east-1"]  # from the stack's aws:region
    code, _, _ = run(capsys, ["--stack", "h100-pilot"], session=account.session, policy=policy)
    assert code == 0 and len(calls.read_text().splitlines()) == 1  # a dry run never runs pulumi


def _fail_times(session, operation: str, code: str, times: int):
    """Make `operation` answer `code` the first `times` calls (then let moto answer)."""
    remaining = {"n": times}

    def answer(**_):
        if remaining["n"] == 0:
            return None
        remaining["n"] -= 1
        return AWSResponse("https://fake.invalid/", 400, {}, None), {
            "Error": {"Code": code, "Message": "resource has a dependent object"},
            "ResponseMetadata": {"HTTPStatusCode": 400}}

    session.events.register(f"before-call.ec2.{operation}", answer)


def test_dependency_violation_is_retried_with_bounded_backoff(aws, capsys, policy, sleeps):
    account = populate(at_now())
    _fail_times(account.session, "DeleteSecurityGroup", "DependencyViolation", 2)
    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    assert code == 0
    assert sleeps[:2] == [2.0, 4.0]  # two refusals, two growing pauses, then success


def test_a_dependency_that_never_clears_is_reported_not_retried_forever(aws, capsys, policy, sleeps):
    account = populate(at_now())
    _fail_times(account.session, "DeleteVolume", "DependencyViolation", 1000)
    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    volume = next(d for d in report["deletions"] if d["kind"] == "ec2:volume")
    assert code == 1 and volume["outcome"] == "failed" and "after 6 attempts" in volume["detail"]
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 30.0]  # bounded: 5 pauses, capped at 30 s
    # the stack's budget stays while something of its stack does: not tried, and left with the volume
    budget = next(d for d in report["deletions"] if d["kind"] == "budgets:budget")
    assert budget["outcome"] == "not tried" and volume["id"] in budget["detail"]
    assert {item["id"] for item in report["left"]} == {volume["id"], budget["id"]}


def test_a_deletion_that_never_finishes_times_out_at_the_bound(aws, capsys, policy, sleeps):
    account = populate(at_now())
    # the API accepts the delete but the endpoint stays (as a stuck endpoint does)
    account.session.events.register("before-call.sagemaker.DeleteEndpoint", lambda **_: (
        AWSResponse("https://fake.invalid/", 200, {}, None), {}))
    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    endpoint = next(d for d in report["deletions"] if d["kind"] == "sagemaker:endpoint")
    assert code == 1 and endpoint["outcome"] == "timed out waiting"
    assert sum(sleeps) <= policy.wait_timeout_s + policy.poll_interval_s


def test_a_failed_listing_is_reported_and_the_rest_still_reaped(aws, capsys, policy):
    account = populate(at_now())
    denied = {"eks": True}
    account.session.events.register("before-call.eks.ListClusters", lambda **_: (
        AWSResponse("https://fake.invalid/", 403, {}, None),
        {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"},
         "ResponseMetadata": {"HTTPStatusCode": 403}}) if denied["eks"] else None)
    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    denied["eks"] = False
    assert code == 1
    assert any("eks:cluster, eks:nodegroup: AccessDeniedException" in e for e in report["listing_errors"])
    left = existing(account)
    assert {i for i, k in account.doomed.items() if k.startswith("eks:")} <= set(left)
    # the budget stays: what the failed listing missed may still be running
    assert not {i for i, k in account.doomed.items() if not k.startswith(("eks:", "budgets:"))} & set(left)
    budget = next(i for i, k in account.doomed.items() if k == "budgets:budget")
    assert budget in left and "a listing failed" in {b["id"]: b["reason"] for b in report["blocked"]}[budget]


# ---- scale: listing calls grow with pages, not resources -------------------------------------------------------

def _fill(session, now, scale: int) -> dict[str, int]:
    """About 50 x `scale` resources of every kind the reaper lists, half expired, some foreign; returns how many
    each tag-filtered listing should find."""
    ec2 = session.client("ec2", region_name=REGION)
    past, future = toolkit_tags("bulk", now - timedelta(hours=1)), toolkit_tags("bulk", now + timedelta(hours=1))
    only_expiry = [t for t in past if t["Key"] == TAG_EXPIRES_AT]
    n = {"instances": 6 * scale, "volumes": 13 * scale, "groups": 6 * scale, "vpcs": scale, "subnets": 4 * scale,
         "route_tables": 4 * scale, "gateways": scale, "addresses": 2 * scale, "nats": scale, "endpoints": 4 * scale,
         "secrets": 3 * scale, "roles": 2 * scale, "profiles": 2 * scale, "budgets": scale}
    half = n["instances"] // 2
    for count, tags in ((half, past), (n["instances"] - half, future)):
        ec2.run_instances(ImageId="ami-12345678", MinCount=count, MaxCount=count, InstanceType="p5.48xlarge",
                          TagSpecifications=spec("instance", tags))
    for i in range(n["volumes"]):
        ec2.create_volume(Size=1, AvailabilityZone=f"{REGION}a",
                          TagSpecifications=spec("volume", past if i % 2 else only_expiry))
    for i in range(n["groups"]):
        ec2.create_security_group(GroupName=f"bulk-{i}", Description="b",
                                  TagSpecifications=spec("security-group", future if i % 3 else past))
    for v in range(n["vpcs"]):
        tags = past if v % 2 else future
        vpc = ec2.create_vpc(CidrBlock=f"10.{v}.0.0/16", TagSpecifications=spec("vpc", tags))["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{v}.{s}.0/24", TagSpecifications=spec(
            "subnet", tags))["Subnet"]["SubnetId"] for s in range(4)]
        tables = [ec2.create_route_table(VpcId=vpc, TagSpecifications=spec("route-table", tags))["RouteTable"][
            "RouteTableId"] for _ in range(4)]
        for table, subnet in zip(tables, subnets, strict=True):
            ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
        gateway = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway", tags))["InternetGateway"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc)
        addresses = [ec2.allocate_address(Domain="vpc", TagSpecifications=spec("elastic-ip", tags))["AllocationId"]
                     for _ in range(2)]
        ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=addresses[0],
                               TagSpecifications=spec("natgateway", tags))
        for service in ("ssm", "ssmmessages", "ec2messages"):
            ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.{service}",
                                    VpcEndpointType="Interface", SubnetIds=[subnets[1]],
                                    TagSpecifications=spec("vpc-endpoint", tags))
        ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.s3", VpcEndpointType="Gateway",
                                RouteTableIds=[tables[1]], TagSpecifications=spec("vpc-endpoint", tags))
    sm = session.client("secretsmanager", region_name=REGION)
    for i in range(n["secrets"]):
        sm.create_secret(Name=f"bulk-{i}", SecretString="{}", Tags=past if i % 2 else future)
    sm.create_secret(Name="not-ours", SecretString="{}")
    iam, budgets = session.client("iam"), session.client("budgets")
    for i in range(n["roles"]):
        tags = past if i % 2 else future
        iam.create_role(RoleName=f"bulk-role-{i}", AssumeRolePolicyDocument="{}", Tags=tags)
        iam.create_instance_profile(InstanceProfileName=f"bulk-profile-{i}", Tags=tags)
        iam.add_role_to_instance_profile(InstanceProfileName=f"bulk-profile-{i}", RoleName=f"bulk-role-{i}")
    for i in range(5 * scale):  # the account's other roles: read in the same pages, never one by one
        iam.create_role(RoleName=f"someone-else-{i}", AssumeRolePolicyDocument="{}")
    for i in range(n["budgets"]):
        create_budget(budgets, f"nemotron-deploy-bulk-{i}", past if i % 2 else future)
    create_budget(budgets, "finance-monthly", [])  # not named like ours: no tag call
    return n


def _listing_calls(scale, page_size):
    session, *_ = fake_session()
    n = _fill(session, at_now(), scale)
    Paging(session)
    counter = CallCounter(session)
    inventory = teardown.gather(AwsClients(session), [REGION], page_size=page_size)
    assert inventory.listing_errors == []
    assert len(inventory.resources) == sum(n.values())
    return counter.listing_calls(), dict(counter.calls), n


def test_listing_calls_grow_with_pages_not_resources(aws_env):
    """At page size 50, ten times the resources take a handful more calls: one more page per listing that grew
    past a page, plus one ListTagsForResource per toolkit budget (AWS Budgets has no tag filter; one budget per
    stack). IAM is read in pages (GetAccountAuthorizationDetails), never role by role."""
    page = 50
    from moto import mock_aws

    with mock_aws():
        small, small_by_operation, n_small = _listing_calls(1, page)
    with mock_aws():
        large, by_operation, n = _listing_calls(10, page)
    assert sum(n.values()) == 500 and sum(n_small.values()) == 50
    # one page per 50 found, per tag-filtered listing (EC2 pages by instance; DescribeRouteTables holds 100 at most)
    pages = {"DescribeInstances": math.ceil(n["instances"] / page), "DescribeVolumes": math.ceil(n["volumes"] / page),
             "DescribeVpcs": math.ceil(n["vpcs"] / page), "DescribeSubnets": math.ceil(n["subnets"] / page),
             "DescribeRouteTables": math.ceil(n["route_tables"] / page),
             "DescribeInternetGateways": math.ceil(n["gateways"] / page),
             "DescribeNatGateways": math.ceil(n["nats"] / page),
             "DescribeVpcEndpoints": math.ceil(n["endpoints"] / page),
             "ListSecrets": math.ceil(n["secrets"] / page)}
    for operation, expected in pages.items():
        assert by_operation[operation] >= expected, (operation, by_operation)
    assert by_operation["DescribeVolumes"] == 3 and by_operation["DescribeAddresses"] == 1  # it did page
    assert by_operation["ListTagsForResource"] == n["budgets"]  # one per toolkit-named budget, none for the rest
    assert by_operation["GetAccountAuthorizationDetails"] == small_by_operation["GetAccountAuthorizationDetails"]
    assert not {"ListRoleTags", "GetRole", "GetInstanceProfile", "ListInstanceProfileTags"} & set(by_operation)
    # link listings (who uses the security groups, subnets and VPCs) are filtered by the ids found: pages too
    link_pages = math.ceil((n["groups"] + 2 * n["vpcs"]) / page) + math.ceil(n["subnets"] / page) * 2 + \
        math.ceil(n["route_tables"] / page) + math.ceil(n["gateways"] / page)
    fixed = 12  # one call each: launch templates, placement groups, addresses, tagging API, EKS clusters, caller
    #             identity, budgets, instance profiles, IAM, and the first page of the link listings
    assert large <= sum(pages.values()) + link_pages + fixed + n["budgets"], by_operation
    growth = large - small - (n["budgets"] - n_small["budgets"])
    assert growth <= sum(pages.values()) + link_pages, (small, large, by_operation)
    print(f"\nlisting calls: 50 resources -> {small}, 500 resources -> {large} (page size {page}): {by_operation}")


# ---- endpoint and input ----------------------------------------------------------------------------------------

def test_aws_endpoint_url_is_honoured(aws_env, capsys, monkeypatch, policy):
    with running_moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        account = populate(at_now())  # the same client chain the CLI uses, so it lands on the server
        assert AwsClients(account.session)("ec2", REGION).meta.endpoint_url == url
        code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
        assert code == 0 and report["left"] == []
        assert not set(account.doomed) & set(existing(account))


BAD_INPUT = [
    (["--expired", "--region", "mars-1"], "--region: 'mars-1' is not valid; allowed: an AWS region name"),
    (["--expired", "--now", "2026-06-01T12:00:00"], "--now: '2026-06-01T12:00:00' is not valid; allowed: an ISO"),
    (["--expired", "--wait-timeout", "0"], "--wait-timeout: 0 is not valid"),
    (["--stack", "nope"], "--stack: 'nope' is not valid; allowed: b200-nvfp4, b300-bf16, eks-nim"),
    (["--region", "us-east-1"], "one of the arguments --stack --expired is required"),
    (["--stack", "h100-pilot", "--expired"], "not allowed with argument"),
    (["--expired", "--yes", "--wait-timeout", "soon"], "--wait-timeout: 'soon' is not valid; allowed: a number"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_calls_nothing(aws, capsys, argv, message):
    session = boto3.Session(region_name=REGION)
    counter = CallCounter(session)
    try:
        code = teardown.main(argv, session=session)
    except SystemExit as exited:
        code = exited.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sum(counter.calls.values()) == 0


def test_no_region_anywhere_is_bad_input(aws, capsys, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    code = teardown.main(["--expired"], session=boto3.Session())
    assert code == 2 and "--region: None is not valid" in capsys.readouterr().err


def test_a_stack_gone_from_stacks_dir_can_be_swept_by_region(aws, capsys, policy):
    account = populate(at_now())
    code, report, _ = run(capsys, ["--stack", "alpha", "--region", REGION], session=account.session, policy=policy)
    assert code == 0 and len(report["deletions"]) == len(account.doomed)


def test_node_group_instances_go_with_their_node_group_not_by_terminate(aws, capsys, policy):
    now = at_now()
    account = populate(now)
    ec2 = account.client("ec2")
    node = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5.48xlarge",
                             TagSpecifications=spec("instance", toolkit_tags("alpha", now - timedelta(hours=1)) + [
                                 {"Key": "eks:cluster-name", "Value": "alpha-eks"},
                                 {"Key": "eks:nodegroup-name", "Value": "alpha-gpu"}]))["Instances"][0]["InstanceId"]
    terminated: list[str] = []
    account.session.events.register("before-parameter-build.ec2.TerminateInstances",
                                    lambda params, **_: terminated.extend(params["InstanceIds"]))

    def eks_terminates_its_nodes(**_):  # what EKS does on DeleteNodegroup, and moto does not
        boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[node])

    account.session.events.register("after-call.eks.DeleteNodegroup", eks_terminates_its_nodes)
    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    entry = next(d for d in report["deletions"] if d["id"] == node)
    assert code == 0 and entry["outcome"] == "removed with manager" and entry["usd_per_hour"] == 0
    assert node not in terminated  # the node group's own instances are never terminated behind its back
    assert report["usd_per_hour_stopped"] == pytest.approx(ALPHA_USD_PER_HOUR)  # priced once, with the node group


# ---- one kind's failure hides only that kind (issue 13) --------------------------------------------------------

def test_an_api_moto_lacks_hides_only_its_own_kind(aws, capsys):
    """Plain moto (no placement-group fake) cannot answer DescribePlacementGroups: the expired p5 next to it must
    still be found, and only ec2:placement-group reported as not listed."""
    now = at_now()
    session = boto3.Session(region_name=REGION)
    ec2 = session.client("ec2")
    p5 = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5.48xlarge",
                           TagSpecifications=spec("instance", toolkit_tags("alpha", now - timedelta(hours=1)))
                           )["Instances"][0]["InstanceId"]
    code, report, _ = run(capsys, ["--expired"], session=session)
    assert code == 1
    assert [d["id"] for d in report["deletions"]] == [p5]
    assert len(report["listing_errors"]) == 1 and report["listing_errors"][0].startswith(
        "us-east-1 ec2:placement-group: ")


def _raise_on(session, operation: str, error: Exception) -> dict[str, bool]:
    """Make `operation` raise `error` while the returned switch is on."""
    switch = {"on": True}

    def fail(**_):
        if switch["on"]:
            raise error
    session.events.register(f"before-call.ec2.{operation}", fail)
    return switch


@pytest.mark.parametrize("error", [
    ResponseParserError("Unable to parse response, invalid XML received:\nb'<!doctype html><html>oops</html>'"),
    KeyError("Reservations"),
    RuntimeError("something nobody expected"),
], ids=["unreadable answer", "KeyError", "RuntimeError"])
def test_any_failure_of_a_listing_is_recorded_against_its_kind_and_the_rest_reaped(aws, capsys, policy, error):
    account = populate(at_now())
    switch = _raise_on(account.session, "DescribeVolumes", error)
    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    switch["on"] = False
    assert code == 1
    volumes = {i for i, k in account.doomed.items() if k == "ec2:volume"}
    first = [e for e in report["listing_errors"] if not e.startswith("(verify)")]
    assert len(first) == 1 and first[0].startswith("us-east-1 ec2:volume: ") and "<" not in first[0], first
    after = existing(account)
    assert volumes <= set(after)  # unlisted: untouched
    budget = {i for i, k in account.doomed.items() if k == "budgets:budget"}
    assert not (set(account.doomed) - volumes - budget) & set(after)  # everything else expired went
    assert budget <= set(after)  # the budget stays while the view is incomplete


def test_a_failed_endpoint_listing_keeps_the_configs_and_models_it_would_have_shown_in_use(aws, capsys, policy):
    account = populate(at_now())
    denied = {"on": True}
    account.session.events.register("before-call.sagemaker.ListEndpoints", lambda **_: (
        AWSResponse("https://fake.invalid/", 403, {}, None),
        {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"},
         "ResponseMetadata": {"HTTPStatusCode": 403}}) if denied["on"] else None)
    code, report, _ = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    denied["on"] = False
    assert code == 1
    blocked = {b["kind"]: b["reason"] for b in report["blocked"]}
    assert blocked["sagemaker:endpoint-config"].startswith("sagemaker:endpoint could not be listed")
    assert blocked["sagemaker:model"].startswith("sagemaker:endpoint could not be listed")
    assert {"alpha-config", "alpha-model"} <= set(existing(account))


# ---- progress while waiting (issue 13) -------------------------------------------------------------------------

def test_waits_say_what_they_wait_for_and_how_long_at_most_every_n_seconds(aws, capsys, sleeps):
    account = populate(at_now())
    account.session.events.register("before-call.sagemaker.DeleteEndpoint", lambda **_: (
        AWSResponse("https://fake.invalid/", 200, {}, None), {}))  # accepted, never finishes
    policy = teardown.RetryPolicy(sleep=sleeps, clock=sleeps.clock, wait_timeout_s=300, poll_interval_s=10,
                                  progress_every_s=60)
    code, report, err = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    assert code == 1
    lines = [line for line in err.splitlines() if "waiting for" in line]
    endpoint_lines = [line for line in lines if "sagemaker:endpoint" in line]
    assert [line.split(": ", 2)[-1] for line in endpoint_lines] == [
        f"{waited} s of at most 300 s" for waited in (0, 60, 120, 180, 240)], lines
    assert endpoint_lines[0].startswith("python -m scripts.teardown: waiting for 1 sagemaker:endpoint in us-east-1 "
                                        "to go (arn:aws:sagemaker:")
    assert len(sleeps) >= 29  # polled every 10 s, reported every 60 s


def test_an_unexpected_failure_of_one_delete_fails_that_resource_not_the_run(aws, capsys, policy):
    account = populate(at_now())
    _raise_on(account.session, "DeleteVolume", RuntimeError("connection pool is closed"))
    code, report, err = run(capsys, ["--expired", "--yes"], session=account.session, policy=policy)
    volume = next(d for d in report["deletions"] if d["kind"] == "ec2:volume")
    assert code == 1 and "Traceback" not in err
    assert (volume["outcome"], volume["detail"]) == ("failed", "RuntimeError: connection pool is closed")
    assert {item["id"] for item in report["left"]} == {volume["id"], next(
        d["id"] for d in report["deletions"] if d["kind"] == "budgets:budget")}
