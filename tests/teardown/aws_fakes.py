"""What the teardown tests add to moto: the APIs moto lacks (placement groups; tags on Application Auto Scaling
targets and on budgets), answered client-side through botocore's before-call event, an API-call counter, and a
populated account.

A before-call handler that returns (http_response, parsed) short-circuits the request, as moto's own mock does, so
the production code calls the real API names with real parameters and never knows.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import boto3
from botocore import xform_name
from botocore.awsrequest import AWSResponse

from planner.tags import TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK

ROLE = "arn:aws:iam::123456789012:role/test"
REGION = "us-east-1"


def _answer(status: int, parsed: dict):
    return AWSResponse("https://fake.invalid/", status, {}, None), parsed


def _error(code: str, message: str):
    return _answer(400, {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}})


class _ApiParams:
    """Keeps each call's API parameters in its context (before-call only sees the serialized request)."""

    @staticmethod
    def stash(params, context, **_):
        context["api_params"] = dict(params)


@dataclass
class PlacementGroups:
    """EC2 placement groups, which moto 5.2 does not implement: create (with tags), describe (tag-key filter), delete.

    Deleting a group that a listed instance still uses answers InvalidPlacementGroup.InUse, as EC2 does.
    """

    groups: dict[str, dict] = field(default_factory=dict)
    in_use: dict[str, set[str]] = field(default_factory=dict)  # name -> instance ids still in it
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def install(self, session: boto3.Session) -> None:
        for op in ("CreatePlacementGroup", "DescribePlacementGroups", "DeletePlacementGroup", "DescribeInstances"):
            session.events.register(f"before-parameter-build.ec2.{op}", _ApiParams.stash)
            session.events.register(f"before-call.ec2.{op}", getattr(self, "_" + op))

    def _DescribeInstances(self, context, **_):  # noqa: N802
        """Answer the placement-group-name filter (moto has neither the filter nor the placement); else pass."""
        filters = {f["Name"]: f["Values"] for f in context["api_params"].get("Filters", ())}
        if "placement-group-name" not in filters:
            return None
        members = {i: name for name in filters["placement-group-name"] for i in self.in_use.get(name, ())}
        if not members:
            return _answer(200, {"Reservations": []})
        plain = boto3.client("ec2", region_name=REGION)  # no hooks: moto answers
        reservations = plain.describe_instances(InstanceIds=sorted(members))["Reservations"]
        for reservation in reservations:
            for inst in reservation["Instances"]:
                inst["Placement"]["GroupName"] = members[inst["InstanceId"]]
        return _answer(200, {"Reservations": reservations})

    def _CreatePlacementGroup(self, context, **_):  # noqa: N802 - named after the API operation
        p = context["api_params"]
        tags = [t for spec in p.get("TagSpecifications", ()) for t in spec.get("Tags", ())]
        group = {"GroupName": p["GroupName"], "GroupId": f"pg-{next(self.counter):017x}", "State": "available",
                 "Strategy": p.get("Strategy", "cluster"), "Tags": tags}
        self.groups[p["GroupName"]] = group
        return _answer(200, {"PlacementGroup": group})

    def _DescribePlacementGroups(self, context, **_):  # noqa: N802
        p = context["api_params"]
        groups = list(self.groups.values())
        for f in p.get("Filters", ()):
            if f["Name"] == "tag-key":
                groups = [g for g in groups if any(t["Key"] in f["Values"] for t in g["Tags"])]
        return _answer(200, {"PlacementGroups": groups})

    def _DeletePlacementGroup(self, context, **_):  # noqa: N802
        name = context["api_params"]["GroupName"]
        if name not in self.groups:
            return _error("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
        if self.in_use.get(name):
            return _error("InvalidPlacementGroup.InUse", f"The placement group '{name}' is in use.")
        del self.groups[name]
        return _answer(200, {})


@dataclass
class ScalableTargetTags:
    """Tags on Application Auto Scaling scalable targets (moto stores none): ListTagsForResource by ARN."""

    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def install(self, session: boto3.Session) -> None:
        session.events.register("before-parameter-build.application-autoscaling.ListTagsForResource",
                                _ApiParams.stash)
        session.events.register("before-call.application-autoscaling.ListTagsForResource", self._list)

    def _list(self, context, **_):
        return _answer(200, {"Tags": self.tags.get(context["api_params"]["ResourceARN"], {})})


@dataclass
class BudgetTags:
    """Tags on AWS Budgets (moto 5.2 ignores CreateBudget's ResourceTags and has no ListTagsForResource): kept by
    budget ARN from CreateBudget, answered by ListTagsForResource, dropped by DeleteBudget."""

    tags: dict[str, list[dict]] = field(default_factory=dict)

    def install(self, session: boto3.Session) -> None:
        for op in ("CreateBudget", "ListTagsForResource", "DeleteBudget"):
            session.events.register(f"before-parameter-build.budgets.{op}", _ApiParams.stash)
        session.events.register("after-call.budgets.CreateBudget", self._created)
        session.events.register("after-call.budgets.DeleteBudget", self._deleted)
        session.events.register("before-call.budgets.ListTagsForResource", self._list)

    @staticmethod
    def arn(account: str, name: str) -> str:
        return f"arn:aws:budgets::{account}:budget/{name}"

    def _created(self, context, **_):
        p = context["api_params"]
        self.tags[self.arn(p["AccountId"], p["Budget"]["BudgetName"])] = list(p.get("ResourceTags", ()))

    def _deleted(self, context, **_):
        p = context["api_params"]
        self.tags.pop(self.arn(p["AccountId"], p["BudgetName"]), None)

    def _list(self, context, **_):
        arn = context["api_params"]["ResourceARN"]
        if arn not in self.tags:
            return _error("NotFoundException", f"{arn} not found")
        return _answer(200, {"ResourceTags": self.tags[arn]})


class Paging:
    """Real EC2 pages its describe answers (MaxResults, NextToken); moto answers everything at once. This pages
    moto's answer for the listed operations, so a test can count the pages the code asks for."""

    ITEMS = {"DescribeVolumes": "Volumes", "DescribeSecurityGroups": "SecurityGroups",
             "DescribeNetworkInterfaces": "NetworkInterfaces", "DescribeLaunchTemplates": "LaunchTemplates",
             "DescribeInstances": "Reservations", "DescribeVpcs": "Vpcs", "DescribeSubnets": "Subnets",
             "DescribeRouteTables": "RouteTables", "DescribeInternetGateways": "InternetGateways",
             "DescribeNatGateways": "NatGateways", "DescribeVpcEndpoints": "VpcEndpoints"}

    def __init__(self, session: boto3.Session):
        self._plain = None
        self._snapshots: dict[str, list] = {}  # one full answer per listing, sliced into its pages
        for op in self.ITEMS:
            session.events.register(f"before-parameter-build.ec2.{op}", _ApiParams.stash)
            session.events.register(f"before-call.ec2.{op}", self._page)

    def _page(self, model, context, **_):
        params = dict(context["api_params"])
        size = params.pop("MaxResults", None)
        offset = int(params.pop("NextToken", None) or 0)
        if size is None:
            return None
        if self._plain is None:
            self._plain = boto3.client("ec2", region_name=REGION)  # no hooks: moto answers
        key = self.ITEMS[model.name]
        snapshot = f"{model.name} {params!r}"
        if offset == 0 or snapshot not in self._snapshots:
            items = getattr(self._plain, xform_name(model.name))(**params)[key]
            if key == "Reservations":  # page by instance, as EC2 does
                items = [{**r, "Instances": [i]} for r in items for i in r["Instances"]]
            self._snapshots[snapshot] = items
        items = self._snapshots[snapshot]
        page = items[offset:offset + size]
        parsed = {key: page}
        if offset + size < len(items):
            parsed["NextToken"] = str(offset + size)
        return _answer(200, parsed)


class CallCounter:
    """Counts API operations by name across every client of a session (after-call fires once per request)."""

    def __init__(self, session: boto3.Session):
        self.calls: Counter[str] = Counter()
        session.events.register("after-call", self._count)

    def _count(self, model, **_):
        self.calls[model.name] += 1

    def listing_calls(self) -> int:
        return sum(n for op, n in self.calls.items() if op.startswith(("Describe", "List", "Get")))

    def reset(self) -> None:
        self.calls.clear()


def toolkit_tags(stack: str, expires: datetime | str, owner: str = "platform-team") -> list[dict]:
    value = expires if isinstance(expires, str) else expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [{"Key": TAG_STACK, "Value": stack}, {"Key": TAG_OWNER, "Value": owner},
            {"Key": TAG_EXPIRES_AT, "Value": value}]


def spec(resource_type: str, tags: list[dict]) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": tags}]


@dataclass
class Account:
    """A populated test account: what should go and what must stay."""

    session: boto3.Session
    placement_groups: PlacementGroups
    target_tags: ScalableTargetTags
    budget_tags: BudgetTags
    doomed: dict[str, str] = field(default_factory=dict)  # id -> kind, expected deleted by --expired
    kept: dict[str, str] = field(default_factory=dict)  # id -> kind, must survive
    live: dict[str, str] = field(default_factory=dict)  # id -> kind, stack beta's (among kept)

    def client(self, service: str):
        return self.session.client(service, region_name=REGION)


def fake_session(placement_groups: PlacementGroups | None = None, target_tags: ScalableTargetTags | None = None,
                 budget_tags: BudgetTags | None = None) -> tuple[boto3.Session, PlacementGroups, ScalableTargetTags,
                                                                 BudgetTags]:
    session = boto3.Session(region_name=REGION)
    placement_groups = placement_groups or PlacementGroups()
    target_tags = target_tags or ScalableTargetTags()
    budget_tags = budget_tags or BudgetTags()
    placement_groups.install(session)
    target_tags.install(session)
    budget_tags.install(session)
    return session, placement_groups, target_tags, budget_tags


def populate(now: datetime, session: boto3.Session | None = None) -> Account:
    """Stack alpha (expired) with one of every kind the reaper handles, stack beta (live), and foreign resources:
    untagged, with only some toolkit tags, with look-alike tag keys, and with an unreadable expiry."""
    if session is None:
        session, pgs, target_tags, budget_tags = fake_session()
    else:
        pgs, target_tags, budget_tags = PlacementGroups(), ScalableTargetTags(), BudgetTags()
        pgs.install(session)
        target_tags.install(session)
        budget_tags.install(session)
    account = Account(session, pgs, target_tags, budget_tags)
    past, future = now - timedelta(hours=1), now + timedelta(hours=5)
    alpha, beta = toolkit_tags("alpha", past), toolkit_tags("beta", future)
    ec2, sm, eks = account.client("ec2"), account.client("sagemaker"), account.client("eks")
    elbv2, aas = account.client("elbv2"), account.client("application-autoscaling")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]

    # --- alpha: expired, everything goes
    sg_a = ec2.create_security_group(GroupName="alpha-api", Description="a", VpcId=vpc,
                                     TagSpecifications=spec("security-group", alpha))["GroupId"]
    sg_b = ec2.create_security_group(GroupName="alpha-nodes", Description="b", VpcId=vpc,
                                     TagSpecifications=spec("security-group", alpha))["GroupId"]
    for source, target in ((sg_a, sg_b), (sg_b, sg_a)):  # each references the other: revoke before delete
        ec2.authorize_security_group_ingress(GroupId=target, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8000, "UserIdGroupPairs": [{"GroupId": source}]}])
    pg = ec2.create_placement_group(GroupName="alpha-cluster", Strategy="cluster",
                                    TagSpecifications=spec("placement-group", alpha))["PlacementGroup"]
    instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5.48xlarge",
                                 SubnetId=subnets[0], SecurityGroupIds=[sg_a],
                                 TagSpecifications=spec("instance", alpha))["Instances"][0]["InstanceId"]
    volume = ec2.create_volume(Size=100, AvailabilityZone=f"{REGION}a",
                               TagSpecifications=spec("volume", alpha))["VolumeId"]
    eni = ec2.create_network_interface(SubnetId=subnets[0], Groups=[sg_b], TagSpecifications=spec(
        "network-interface", alpha))["NetworkInterface"]["NetworkInterfaceId"]
    template = ec2.create_launch_template(LaunchTemplateName="alpha-nodes", LaunchTemplateData={},
                                          TagSpecifications=spec("launch-template", alpha)
                                          )["LaunchTemplate"]["LaunchTemplateId"]
    lb = elbv2.create_load_balancer(Name="alpha-api", Subnets=subnets, SecurityGroups=[sg_a], Scheme="internal",
                                    Tags=alpha)["LoadBalancers"][0]["LoadBalancerArn"]
    sm.create_model(ModelName="alpha-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"}, Tags=alpha)
    sm.create_endpoint_config(EndpointConfigName="alpha-config", Tags=alpha, ProductionVariants=[{
        "VariantName": "main", "ModelName": "alpha-model", "InstanceType": "ml.p5en.48xlarge",
        "InitialInstanceCount": 1}])
    endpoint = sm.create_endpoint(EndpointName="alpha-endpoint", EndpointConfigName="alpha-config",
                                  Tags=alpha)["EndpointArn"]
    aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId="endpoint/alpha-endpoint/variant/main",
                                 ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=1,
                                 MaxCapacity=2)
    target = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0]["ScalableTargetARN"]
    target_tags.tags[target] = {t["Key"]: t["Value"] for t in alpha}
    cluster = eks.create_cluster(name="alpha-eks", roleArn=ROLE, resourcesVpcConfig={"subnetIds": subnets},
                                 tags={t["Key"]: t["Value"] for t in alpha})["cluster"]["arn"]
    nodegroup = eks.create_nodegroup(clusterName="alpha-eks", nodegroupName="alpha-gpu", nodeRole=ROLE,
                                     subnets=subnets, instanceTypes=["p5.48xlarge"],
                                     scalingConfig={"minSize": 0, "maxSize": 2, "desiredSize": 2},
                                     tags={t["Key"]: t["Value"] for t in alpha})["nodegroup"]["nodegroupArn"]
    account.doomed.update({
        sg_a: "ec2:security-group", sg_b: "ec2:security-group", pg["GroupId"]: "ec2:placement-group",
        instance: "ec2:instance", volume: "ec2:volume", eni: "ec2:network-interface",
        template: "ec2:launch-template", lb: "elbv2:load-balancer", endpoint: "sagemaker:endpoint",
        "alpha-config": "sagemaker:endpoint-config", "alpha-model": "sagemaker:model",
        target: "application-autoscaling:scalable-target", cluster: "eks:cluster", nodegroup: "eks:nodegroup"})

    # --- beta: live, everything stays
    sg_beta = ec2.create_security_group(GroupName="beta-api", Description="b", VpcId=vpc,
                                        TagSpecifications=spec("security-group", beta))["GroupId"]
    beta_instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5en.48xlarge",
                                      SubnetId=subnets[0], SecurityGroupIds=[sg_beta],
                                      TagSpecifications=spec("instance", beta))["Instances"][0]["InstanceId"]
    sm.create_model(ModelName="beta-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"}, Tags=beta)
    account.live.update({sg_beta: "ec2:security-group", beta_instance: "ec2:instance", "beta-model": "sagemaker:model"})

    # --- foreign: never touched, whatever their expiry says
    untagged = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                                 InstanceType="m5.large")["Instances"][0]["InstanceId"]
    partial = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5.48xlarge",
                                TagSpecifications=spec("instance", [t for t in alpha if t["Key"] != TAG_OWNER])
                                )["Instances"][0]["InstanceId"]
    lookalike = ec2.create_volume(Size=1, AvailabilityZone=f"{REGION}a", TagSpecifications=spec("volume", [
        {"Key": "Nemotron-Deploy:stack", "Value": "alpha"}, {"Key": "nemotron-deploy:owner", "Value": "x"},
        {"Key": "nemotron-deploy:expires-at ", "Value": "2020-01-01T00:00:00Z"},
        {"Key": TAG_EXPIRES_AT.replace("-at", "_at"), "Value": "2020-01-01T00:00:00Z"}]))["VolumeId"]
    only_expiry = ec2.create_volume(Size=1, AvailabilityZone=f"{REGION}a", TagSpecifications=spec("volume", [
        {"Key": TAG_EXPIRES_AT, "Value": "2020-01-01T00:00:00Z"}]))["VolumeId"]
    malformed = ec2.create_security_group(GroupName="odd-expiry", Description="m", VpcId=vpc, TagSpecifications=spec(
        "security-group", toolkit_tags("alpha", "tomorrow evening")))["GroupId"]
    naive = ec2.create_launch_template(LaunchTemplateName="naive-expiry", LaunchTemplateData={},
                                       TagSpecifications=spec("launch-template", toolkit_tags(
                                           "alpha", "2020-01-01T00:00:00")))["LaunchTemplate"]["LaunchTemplateId"]
    sm.create_model(ModelName="foreign-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"},
                    Tags=[t for t in alpha if t["Key"] != TAG_STACK])
    account.kept.update({untagged: "ec2:instance", partial: "ec2:instance", lookalike: "ec2:volume",
                         only_expiry: "ec2:volume", malformed: "ec2:security-group", naive: "ec2:launch-template",
                         "foreign-model": "sagemaker:model"})
    populate_network(account, alpha, beta)
    populate_global(account, alpha, beta)
    account.kept.update(account.live)
    return account


def private_network(ec2, tags: list[dict], cidr: str = "10.64") -> dict[str, str]:
    """What components/network.py declares, with these tags: VPC (its default security group tagged), private and
    public subnets, internet gateway, route tables with their associations, Elastic IP and NAT gateway, S3 gateway
    endpoint, interface endpoints with their security group. Returns id -> kind."""
    vpc = ec2.create_vpc(CidrBlock=f"{cidr}.0.0/16", TagSpecifications=spec("vpc", tags))["Vpc"]["VpcId"]
    default_sg = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                       {"Name": "group-name", "Values": ["default"]}])
    default_sg = default_sg["SecurityGroups"][0]["GroupId"]
    ec2.create_tags(Resources=[default_sg], Tags=tags)  # aws.ec2.DefaultSecurityGroup tags it
    private = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{cidr}.0.0/20", AvailabilityZone=f"{REGION}a",
                                TagSpecifications=spec("subnet", tags))["Subnet"]["SubnetId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{cidr}.16.0/24", AvailabilityZone=f"{REGION}a",
                               TagSpecifications=spec("subnet", tags))["Subnet"]["SubnetId"]
    gateway = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway", tags)
                                          )["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    public_routes = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec("route-table", tags)
                                           )["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_routes, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    ec2.associate_route_table(RouteTableId=public_routes, SubnetId=public)
    allocation = ec2.allocate_address(Domain="vpc", TagSpecifications=spec("elastic-ip", tags))["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=allocation, TagSpecifications=spec(
        "natgateway", tags))["NatGateway"]["NatGatewayId"]
    private_routes = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec("route-table", tags)
                                            )["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=private_routes, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    ec2.associate_route_table(RouteTableId=private_routes, SubnetId=private)
    s3 = ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.s3", VpcEndpointType="Gateway",
                                 RouteTableIds=[private_routes], TagSpecifications=spec("vpc-endpoint", tags)
                                 )["VpcEndpoint"]["VpcEndpointId"]
    endpoints_sg = ec2.create_security_group(GroupName="endpoints", Description="https from the vpc", VpcId=vpc,
                                             TagSpecifications=spec("security-group", tags))["GroupId"]
    found = {vpc: "ec2:vpc", default_sg: "ec2:security-group", private: "ec2:subnet", public: "ec2:subnet",
             gateway: "ec2:internet-gateway", public_routes: "ec2:route-table", private_routes: "ec2:route-table",
             allocation: "ec2:elastic-ip", nat: "ec2:natgateway", s3: "ec2:vpc-endpoint",
             endpoints_sg: "ec2:security-group"}
    for service in ("ssm", "ssmmessages", "ec2messages", "secretsmanager"):
        endpoint = ec2.create_vpc_endpoint(
            VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.{service}", VpcEndpointType="Interface",
            SubnetIds=[private], SecurityGroupIds=[endpoints_sg], PrivateDnsEnabled=True,
            TagSpecifications=spec("vpc-endpoint", tags))["VpcEndpoint"]["VpcEndpointId"]
        found[endpoint] = "ec2:vpc-endpoint"
    return found


def populate_network(account: Account, alpha: list[dict], beta: list[dict]) -> None:
    """Alpha's own private network with a server in it (expired: all of it goes), beta's (live: it stays)."""
    ec2 = account.client("ec2")
    network = private_network(ec2, alpha)
    private = next(i for i, k in network.items() if k == "ec2:subnet")
    vpc = next(i for i, k in network.items() if k == "ec2:vpc")
    servers_sg = ec2.create_security_group(GroupName="alpha-servers", Description="s", VpcId=vpc,
                                           TagSpecifications=spec("security-group", alpha))["GroupId"]
    server = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5.48xlarge",
                               SubnetId=private, SecurityGroupIds=[servers_sg],
                               TagSpecifications=spec("instance", alpha))["Instances"][0]["InstanceId"]
    account.doomed.update({**network, servers_sg: "ec2:security-group", server: "ec2:instance"})
    account.live.update(private_network(ec2, beta, cidr="10.65"))


def populate_global(account: Account, alpha: list[dict], beta: list[dict]) -> None:
    """Secrets, IAM roles and instance profiles, budgets: alpha's go; beta's, foreign and look-alikes stay."""
    sm, iam, budgets = account.client("secretsmanager"), account.client("iam"), account.client("budgets")
    trust = '{"Version": "2012-10-17", "Statement": []}'
    read = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}'
    policy = iam.create_policy(PolicyName="nemotron-ssm-core", PolicyDocument=read)["Policy"]["Arn"]
    for stack, tags, bucket in (("alpha", alpha, account.doomed), ("beta", beta, account.live)):
        secret = sm.create_secret(Name=f"{stack}-serving-secret", SecretString="{}", Tags=tags)["ARN"]
        role = iam.create_role(RoleName=f"{stack}-servers-role-0a1b2c3", AssumeRolePolicyDocument=trust,
                               Description=f"nemotron-deploy {stack}: GPU servers", Tags=tags)["Role"]["Arn"]
        iam.put_role_policy(RoleName=f"{stack}-servers-role-0a1b2c3", PolicyName="access", PolicyDocument=read)
        iam.attach_role_policy(RoleName=f"{stack}-servers-role-0a1b2c3", PolicyArn=policy)
        profile = iam.create_instance_profile(InstanceProfileName=f"{stack}-servers-profile-4d5e6f7",
                                              Tags=tags)["InstanceProfile"]["Arn"]
        iam.add_role_to_instance_profile(InstanceProfileName=f"{stack}-servers-profile-4d5e6f7",
                                         RoleName=f"{stack}-servers-role-0a1b2c3")
        budget = create_budget(budgets, f"nemotron-deploy-{stack}", tags)
        bucket.update({secret: "secretsmanager:secret", role: "iam:role", profile: "iam:instance-profile",
                       budget: "budgets:budget"})
    partial = [t for t in alpha if t["Key"] != TAG_OWNER]
    foreign_secret = sm.create_secret(Name="alpha-lookalike", SecretString="{}", Tags=partial)["ARN"]
    foreign_role = iam.create_role(RoleName="alpha-servers-role-foreign", AssumeRolePolicyDocument=trust,
                                   Description="nemotron-deploy alpha: not ours", Tags=partial)["Role"]["Arn"]
    untagged_role = iam.create_role(RoleName="alpha-untagged", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    foreign_budget = create_budget(budgets, "nemotron-deploy-gamma", partial)
    other_budget = create_budget(budgets, "finance-monthly", alpha)  # not named like ours: never read
    account.kept.update({foreign_secret: "secretsmanager:secret", foreign_role: "iam:role",
                         untagged_role: "iam:role", foreign_budget: "budgets:budget", other_budget: "budgets:budget"})


def create_budget(budgets, name: str, tags: list[dict], account_id: str = "123456789012") -> str:
    budgets.create_budget(AccountId=account_id, ResourceTags=tags, Budget={
        "BudgetName": name, "BudgetLimit": {"Amount": "441", "Unit": "USD"}, "TimeUnit": "MONTHLY",
        "BudgetType": "COST"})
    return BudgetTags.arn(account_id, name)


def existing(account: Account) -> dict[str, str]:
    """Every resource of the kinds in play that still exists (instances: not terminated), id -> kind."""
    ec2, sm, eks = account.client("ec2"), account.client("sagemaker"), account.client("eks")
    aas, elbv2 = account.client("application-autoscaling"), account.client("elbv2")
    found: dict[str, str] = {}
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] not in ("terminated", "shutting-down"):
                found[i["InstanceId"]] = "ec2:instance"
    found.update({g["GroupId"]: "ec2:security-group" for g in ec2.describe_security_groups()["SecurityGroups"]})
    found.update({v["VolumeId"]: "ec2:volume" for v in ec2.describe_volumes()["Volumes"]})
    found.update({n["NetworkInterfaceId"]: "ec2:network-interface"
                  for n in ec2.describe_network_interfaces()["NetworkInterfaces"]})
    found.update({t["LaunchTemplateId"]: "ec2:launch-template"
                  for t in ec2.describe_launch_templates()["LaunchTemplates"]})
    found.update({g["GroupId"]: "ec2:placement-group" for g in account.placement_groups.groups.values()})
    found.update({lb["LoadBalancerArn"]: "elbv2:load-balancer"
                  for lb in elbv2.describe_load_balancers()["LoadBalancers"]})
    found.update({e["EndpointArn"]: "sagemaker:endpoint" for e in sm.list_endpoints()["Endpoints"]})
    found.update({c["EndpointConfigName"]: "sagemaker:endpoint-config"
                  for c in sm.list_endpoint_configs()["EndpointConfigs"]})
    found.update({m["ModelName"]: "sagemaker:model" for m in sm.list_models()["Models"]})
    found.update({t["ScalableTargetARN"]: "application-autoscaling:scalable-target"
                  for t in aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]})
    for name in eks.list_clusters()["clusters"]:
        found[eks.describe_cluster(name=name)["cluster"]["arn"]] = "eks:cluster"
        for ng in eks.list_nodegroups(clusterName=name)["nodegroups"]:
            found[eks.describe_nodegroup(clusterName=name, nodegroupName=ng)["nodegroup"]["nodegroupArn"]] = \
                "eks:nodegroup"
    found.update({v["VpcId"]: "ec2:vpc" for v in ec2.describe_vpcs()["Vpcs"]})
    found.update({s["SubnetId"]: "ec2:subnet" for s in ec2.describe_subnets()["Subnets"]})
    found.update({t["RouteTableId"]: "ec2:route-table" for t in ec2.describe_route_tables()["RouteTables"]})
    found.update({g["InternetGatewayId"]: "ec2:internet-gateway"
                  for g in ec2.describe_internet_gateways()["InternetGateways"]})
    found.update({n["NatGatewayId"]: "ec2:natgateway" for n in ec2.describe_nat_gateways()["NatGateways"]
                  if n["State"] != "deleted"})
    found.update({a["AllocationId"]: "ec2:elastic-ip" for a in ec2.describe_addresses()["Addresses"]})
    found.update({e["VpcEndpointId"]: "ec2:vpc-endpoint" for e in ec2.describe_vpc_endpoints()["VpcEndpoints"]
                  if e["State"] != "deleted"})
    sm, iam = account.client("secretsmanager"), account.client("iam")
    secrets = sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]
    found.update({s["ARN"]: "secretsmanager:secret" for s in secrets})
    found.update({r["Arn"]: "iam:role" for r in iam.list_roles()["Roles"]})
    found.update({p["Arn"]: "iam:instance-profile" for p in iam.list_instance_profiles()["InstanceProfiles"]})
    found.update({BudgetTags.arn("123456789012", b["BudgetName"]): "budgets:budget"
                  for b in account.client("budgets").describe_budgets(AccountId="123456789012")["Budgets"]})
    return found


def at_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
