"""The GPU node pool of an EKS stack: a managed node group of p5-class nodes with EFA, tainted for GPU pods only."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.eks_cluster import eks_node_role
from components.gpu_servers import gpu_launch_settings
from planner.plan import StackPlan
from planner.tags import TAG_EXPIRES_AT
from planner.targets.eks import NODE_INSTANCE_METADATA_TAGS, NODE_ROOT_DEVICE, node_user_data

EXPIRY_ACTION = "nemotron-deploy-expiry"


@dataclass(frozen=True)
class GpuNodePoolArgs:
    """The plan decides the shape; the cluster gives its name and security group; the nodes go in one subnet (one
    zone: the placement group and EFA need it)."""

    plan: StackPlan
    cluster_name: pulumi.Input[str]
    cluster_security_group_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    tags: Mapping[str, str]


class GpuNodePool(pulumi.ComponentResource):
    """Node role, cluster placement group, launch template, managed node group, and a scale-to-zero at expiry.

    The launch template is the EC2 servers' (components.gpu_servers.gpu_launch_settings): IMDSv2 only, encrypted gp3
    root, one EFA interface per network card in the cluster security group (which admits all traffic between its
    members, as EFA requires), the Capacity Block market and reservation when configured. It names no AMI: the node
    group's AMI type (AL2023 NVIDIA) picks EKS's GPU image and EKS adds the bootstrap. Nodes carry the
    `nvidia.com/gpu=present:NoSchedule` taint and the labels the workload selects on. At the stack's expiry an
    Auto Scaling schedule takes the node group to zero, so the GPUs stop even when nobody runs `pulumi destroy`.
    """

    node_group_name: pulumi.Output[str]
    autoscaling_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:GpuNodePool", name, None, opts)
        plan = args.plan
        if plan.eks is None:
            raise ValueError(f"{plan.stack}: GpuNodePool serves fitted eks plans, not {plan.target}")
        pool = plan.eks.gpu_pool
        if pool.efa_cards < 1:
            raise ValueError(f"{plan.stack}: {plan.instance.name} has no EFA network card")
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        role = eks_node_role(name, plan, tags, partition, self)

        launch = gpu_launch_settings(plan, [args.cluster_security_group_id], root_device=NODE_ROOT_DEVICE,
                                     root_volume_gib=pool.root_volume_gib)
        # The EC2 servers' settings enable instance tags in IMDS; EKS nodes carry tag keys with "/" (see the constant).
        launch["metadata_options"] |= {"instance_metadata_tags": NODE_INSTANCE_METADATA_TAGS}
        user_data = node_user_data(pool)  # the instance store as one RAID0 under the kubelet (the model cache)
        if user_data is not None:
            launch["user_data"] = base64.b64encode(user_data.encode()).decode()
        if not plan.config.capacity_block:  # a Capacity Block is already placed together; a group can only fail it
            placement = aws.ec2.PlacementGroup(f"{name}-placement", strategy="cluster", tags=tags, opts=child)
            launch["placement"] = {"group_name": placement.name}
        template = aws.ec2.LaunchTemplate(
            f"{name}-template", update_default_version=True, tags=tags, opts=child,
            description=f"nemotron-deploy {plan.stack}: EKS GPU nodes",
            tag_specifications=[{"resource_type": kind, "tags": tags}
                                for kind in ("instance", "volume", "network-interface")],
            **launch)
        # A renewed expiry retags the template (a new version) on every `pulumi up`; rolling GPU nodes for it would
        # restart the model. The group keeps its version and is replaced (old one first: its GPUs are the capacity)
        # only when what a node is changes: the template's settings other than tags.
        group = aws.eks.NodeGroup(
            f"{name}-nodes", cluster_name=args.cluster_name, node_role_arn=role.arn,
            subnet_ids=[args.subnet_id], instance_types=[pool.instance_type], ami_type=pool.ami_type,
            capacity_type=pool.capacity_type, labels=pool.labels, taints=[dict(t) for t in pool.taints],
            scaling_config={"min_size": pool.min_size, "max_size": pool.max_size, "desired_size": pool.desired_size},
            update_config={"max_unavailable": 1},
            # The workload's PodDisruptionBudget stops drains by people and autoscalers, not a deliberate update.
            force_update_version=True,
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            tags=tags, opts=pulumi.ResourceOptions(
                parent=self, depends_on=role.attachments, ignore_changes=["launchTemplate"],
                replacement_trigger=launch_shape(launch), delete_before_replace=True))
        asg_name = group.resources.apply(lambda resources: resources[0].autoscaling_groups[0].name)
        aws.autoscaling.Schedule(
            f"{name}-expiry", autoscaling_group_name=asg_name, scheduled_action_name=EXPIRY_ACTION,
            start_time=plan.tags[TAG_EXPIRES_AT], min_size=0, desired_capacity=0, opts=child)

        self.node_group_name = group.node_group_name
        self.autoscaling_group_name = asg_name
        self.register_outputs({"node_group_name": self.node_group_name,
                               "autoscaling_group_name": self.autoscaling_group_name})


def launch_shape(settings: dict) -> pulumi.Output[str]:
    """A digest of launch-template settings (tags excluded): what makes a node group's nodes what they are."""
    return pulumi.Output.json_dumps(settings).apply(lambda text: hashlib.sha256(text.encode()).hexdigest())
