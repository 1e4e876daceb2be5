"""One or several GPU servers behind a closed security group, launched from one template, each with its boot script."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.network import ANY_IPV4
from planner.observability import log_group_prefix, stack_namespace
from planner.plan import StackPlan
from planner.references import managed_policy_arn
from planner.serving import VllmCommand
from planner.startup import S3Location, prefix_grant
from planner.targets.ec2 import render_user_data, user_data_base64

SSM_CORE_POLICY = "AmazonSSMManagedInstanceCore"


@dataclass(frozen=True)
class GpuServerGroupArgs:
    """The plan decides the shape (instance type, node count, EFA cards, capacity target, allowed CIDRs) and its EC2
    plan (`plan.ec2`) the boot image, node roles, startup budget and weights mirror; the rest are ids from the network
    and the secret."""

    plan: StackPlan
    vpc_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    secret_arn: pulumi.Input[str]
    tags: Mapping[str, str]


class GpuServerGroup(pulumi.ComponentResource):
    """The servers of one stack: cluster placement group, security group, instance role, launch template, instances.

    Ingress is closed except the API port from the stack's allowedCidrs (none by default: access is through SSM
    port forwarding); members of the group reach each other on every port (EFA, NCCL, Ray). The role can use
    Session Manager and read exactly the stack's secret and weights prefix; the CloudWatch agent may put metrics into
    the stack's namespace and logs into its log groups, and read its config parameter (declared here). The launch
    template requires IMDSv2, exposes instance tags to the dead-man switch, encrypts the gp3 root volume, attaches one
    EFA interface per network card and makes an OS shutdown terminate the instance.
    """

    instance_ids: pulumi.Output[list[str]]
    private_ips: pulumi.Output[list[str]]

    def __init__(self, name: str, args: GpuServerGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:GpuServerGroup", name, None, opts)
        plan, ec2 = args.plan, args.plan.ec2
        if ec2 is None or not isinstance(plan.serving, VllmCommand):
            raise ValueError(f"{plan.stack}: GpuServerGroup serves fitted ec2 plans with vLLM, not {plan.target}")
        if plan.instance.efa_cards < 1:
            raise ValueError(f"{plan.stack}: {plan.instance.name} has no EFA network card")
        child = pulumi.ResourceOptions(parent=self)
        tags, config, port = dict(args.tags), plan.config, plan.serving.port

        placement = None
        if not config.capacity_block:  # a Capacity Block is already placed together; a group can only fail it
            placement = aws.ec2.PlacementGroup(f"{name}-placement", strategy="cluster", tags=tags, opts=child)

        group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, tags=tags, opts=child,
            description="nemotron-deploy: vLLM API from allowed CIDRs only; all traffic between members")
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-members-in", security_group_id=group.id, ip_protocol="-1", referenced_security_group_id=group.id,
            description="EFA, NCCL and Ray between the servers", tags=tags, opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-members-out", security_group_id=group.id, ip_protocol="-1", referenced_security_group_id=group.id,
            description="EFA, NCCL and Ray between the servers", tags=tags, opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-https-out", security_group_id=group.id, ip_protocol="tcp", from_port=443, to_port=443,
            cidr_ipv4=ANY_IPV4, description="HTTPS to AWS endpoints, the image registry and Hugging Face",
            tags=tags, opts=child)
        for index, cidr in enumerate(config.allowed_cidrs):
            family = "cidr_ipv6" if ipaddress.ip_network(cidr).version == 6 else "cidr_ipv4"
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-api-in-{index}", security_group_id=group.id, ip_protocol="tcp", from_port=port,
                to_port=port, description="vLLM API (key required)", tags=tags, opts=child, **{family: cidr})

        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        role = aws.iam.Role(
            f"{name}-role", description=f"nemotron-deploy {plan.stack}: GPU servers", tags=tags, opts=child,
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
        aws.iam.RolePolicyAttachment(
            f"{name}-ssm-core", role=role.name, opts=child,
            policy_arn=pulumi.Output.from_input(partition).apply(lambda p: managed_policy_arn(SSM_CORE_POLICY, p)))
        agent_config = aws.ssm.Parameter(
            f"{name}-agent-config", name=ec2.agent_parameter, type="String", value=ec2.agent_config,
            description=f"nemotron-deploy {plan.stack}: CloudWatch agent config of the GPU servers", tags=tags,
            opts=child)
        aws.iam.RolePolicy(f"{name}-cloudwatch-agent", role=role.id, opts=child,
                           policy=_agent_policy(plan, partition, agent_config.arn))
        aws.iam.RolePolicy(f"{name}-access", role=role.id, opts=child,
                           policy=_access_policy(ec2.weights, partition, args.secret_arn, ec2.compile_cache))
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, tags=tags, opts=child)

        image = ec2.boot_image
        ami = aws.ssm.get_parameter_output(name=image.ssm_parameter,
                                           opts=pulumi.InvokeOutputOptions(parent=self)).insecure_value
        shared = gpu_launch_settings(plan, [group.id], root_device=image.root_device,
                                     root_volume_gib=image.root_volume_gib, subnet_id=args.subnet_id,
                                     secondary_device_index=0)
        metadata = shared["metadata_options"]
        launch = {
            "instance_type": plan.instance.name,
            "iam_instance_profile": {"arn": profile.arn},
            "instance_initiated_shutdown_behavior": "terminate",
            "metadata_options": metadata,
            "block_device_mappings": shared["block_device_mappings"],
            "network_interfaces": shared["network_interfaces"],
        }
        if placement is not None:
            launch["placement"] = {"group_name": placement.name}
        launch |= {key: shared[key] for key in ("capacity_reservation_specification", "instance_market_options")
                   if key in shared}
        template = aws.ec2.LaunchTemplate(
            f"{name}-template", image_id=ami, update_default_version=True, tags=tags, opts=child,
            tag_specifications=[{"resource_type": kind, "tags": tags}
                                for kind in ("instance", "volume", "network-interface")],
            **launch)

        # A renewed expiry tag or a newer DLAMI only makes a new template version, which running servers ignore;
        # what a server is (type, network cards, subnet, group, role, volume, capacity target) replaces it.
        shape = pulumi.Output.json_dumps(launch).apply(lambda text: hashlib.sha256(text.encode()).hexdigest())
        server_opts = pulumi.ResourceOptions(parent=self, ignore_changes=["launchTemplate"], replacement_trigger=shape,
                                             depends_on=[agent_config])
        servers: list[aws.ec2.Instance] = []
        for index in range(config.nodes):
            if ec2.roles[index] == "worker":
                user_data = pulumi.Output.all(args.secret_arn, servers[0].private_ip).apply(
                    lambda values, i=index: user_data_base64(render_user_data(plan, ec2, i, values[0],
                                                                              head_ip=values[1])))
            else:
                user_data = pulumi.Output.from_input(args.secret_arn).apply(
                    lambda arn, i=index: user_data_base64(render_user_data(plan, ec2, i, arn)))
            servers.append(aws.ec2.Instance(
                f"{name}-node-{index}", opts=server_opts,
                launch_template={"id": template.id, "version": template.latest_version.apply(str)},
                user_data_base64=user_data, user_data_replace_on_change=True,
                # Stated again on the instance: an explicit setting survives a template change, and checks that see
                # the instance alone see it.
                metadata_options=metadata, root_block_device={
                    "volume_size": image.root_volume_gib, "volume_type": "gp3", "encrypted": True,
                    "delete_on_termination": True},
                tags=tags | {"Name": f"{plan.stack}-node-{index}"}, volume_tags=tags))

        self.instance_ids = pulumi.Output.all(*(server.id for server in servers))
        self.private_ips = pulumi.Output.all(*(server.private_ip for server in servers))
        self.register_outputs({"instance_ids": self.instance_ids, "private_ips": self.private_ips})


# IMDSv2 only; instance tags readable from IMDS (the EC2 dead-man switch reads its expiry there); one hop, so
# containers on a bridge network cannot reach the node's credentials (host-network containers need no hop).
IMDSV2_ONLY = {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1,
               "instance_metadata_tags": "enabled"}


def gpu_launch_settings(plan: StackPlan, security_group_ids: list[pulumi.Input[str]], *, root_device: str,
                        root_volume_gib: int, subnet_id: pulumi.Input[str] | None = None,
                        secondary_device_index: int = 1) -> dict:
    """Launch-template settings every GPU node of the toolkit shares (EC2 servers and EKS nodes): IMDSv2 only, an
    encrypted gp3 root volume, one EFA interface per network card (EFA with ENA on card 0, EFA-only on the others)
    and the stack's capacity target (a reservation, and the capacity-block market for a Capacity Block).

    `subnet_id` is None for an EKS node group, which places interfaces in its own subnets. AWS recommends device
    index 1 for the interfaces on cards after the first (EC2 user guide, "Maximize network bandwidth on instances
    with multiple network cards"); the EC2 servers still pass 0, which their tests pin.
    """
    config = plan.config
    interfaces = []
    for card in range(plan.instance.efa_cards):
        interface = {"network_card_index": card, "device_index": 0 if card == 0 else secondary_device_index,
                     "interface_type": "efa" if card == 0 else "efa-only"}
        if subnet_id is not None:
            interface["subnet_id"] = subnet_id
        interfaces.append(interface | {"security_groups": list(security_group_ids), "delete_on_termination": "true"})
    settings = {
        "metadata_options": dict(IMDSV2_ONLY),
        "block_device_mappings": [{"device_name": root_device, "ebs": {
            "volume_size": root_volume_gib, "volume_type": "gp3", "encrypted": "true",
            "delete_on_termination": "true"}}],
        "network_interfaces": interfaces,
    }
    if config.capacity_reservation_id:
        settings["capacity_reservation_specification"] = {
            "capacity_reservation_target": {"capacity_reservation_id": config.capacity_reservation_id}}
    if config.capacity_block:
        settings["instance_market_options"] = {"market_type": "capacity-block"}
    return settings


def _agent_policy(plan: StackPlan, partition: pulumi.Input[str],
                  parameter_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """What the CloudWatch agent needs, narrower than CloudWatchAgentServerPolicy: metrics into the stack's namespace
    only, log events into the stack's log groups only, and its own config parameter."""
    groups = pulumi.Output.concat("arn:", partition, f":logs:{plan.region}:*:log-group:{log_group_prefix(plan.stack)}*")
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "StackMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": stack_namespace(plan.stack)}}},
        {"Sid": "StackLogs", "Effect": "Allow", "Resource": [groups, pulumi.Output.concat(groups, ":log-stream:*")],
         "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]},
        {"Sid": "AgentConfig", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": parameter_arn},
    ]})


def _access_policy(mirror: S3Location | None, partition: pulumi.Input[str], secret_arn: pulumi.Input[str],
                   compile_cache: S3Location | None = None) -> pulumi.Output[str]:
    """Read exactly the stack's secret and, with a weights mirror, exactly its prefix; read and write exactly the
    compile cache's prefix for this layout (no delete); no wildcard action."""
    def document(values: list[str]) -> str:
        p, secret = values
        statements: list[dict] = [{"Sid": "StackSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                   "Resource": secret}]
        if mirror is not None:
            statements += prefix_grant("Weights", mirror, p)
        if compile_cache is not None:
            statements += prefix_grant("CompileCache", compile_cache, p, write=True)
        return json.dumps({"Version": "2012-10-17", "Statement": statements})

    return pulumi.Output.all(partition, secret_arn).apply(document)
