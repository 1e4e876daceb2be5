"""The EKS cluster a stack deploys onto: a new private one from pulumi_aws primitives, or an existing one by name."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.gpu_servers import IMDSV2_ONLY
from planner.plan import StackPlan
from planner.references import managed_policy_arn
from planner.targets.eks import (
    CLOUDWATCH_ADDON,
    CLOUDWATCH_ADDON_CONFIGURATION,
    CLOUDWATCH_AGENT_POLICY,
    CLOUDWATCH_AGENT_SERVICE_ACCOUNT,
    CLUSTER_POLICIES,
    CONTROL_PLANE_LOG_TYPES,
    EBS_CSI_POLICY,
    LOG_RETENTION_DAYS,
    NODE_INSTANCE_METADATA_TAGS,
    NODE_POLICIES,
    NODE_ROOT_DEVICE,
    EksPlan,
    HelmRelease,
    container_insights_log_groups,
    kubeconfig,
)

CONTROL_PLANE_SUBNET_CIDR = "10.64.32.0/20"  # inside PrivateNetwork's 10.64.0.0/16, clear of its subnets
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
# VPC CNI enforces NetworkPolicy only when told to (its network-policy agent runs on every node).
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}


@dataclass(frozen=True)
class EksClusterArgs:
    """`control_plane_subnet_ids`: two or more subnets in different zones, or None to add one next to the nodes'
    subnet (a created network); `node_zone` is that subnet's zone. Both ignored for an existing cluster."""

    plan: StackPlan
    vpc_id: pulumi.Input[str]
    node_subnet_id: pulumi.Input[str]
    node_zone: pulumi.Input[str] | None
    control_plane_subnet_ids: Sequence[str] | None
    tags: Mapping[str, str]


class EksCluster(pulumi.ComponentResource):
    """The cluster, private by default, or an existing one looked up by name (eks.clusterName) with nothing created.

    A new cluster: its IAM role (AmazonEKSClusterPolicy only), a control-plane log group with a retention (created
    first, so EKS does not create one that outlives the stack), API, audit and authenticator logs, a private API
    endpoint (public only to eks.publicAccessCidrs), access entries (authentication mode API; the identity that runs
    `pulumi up` is the cluster admin), two small untainted system nodes from an IMDSv2 / encrypted launch template,
    and the add-ons the workload relies on: VPC CNI with NetworkPolicy enforcement, EKS Pod Identity, the EBS CSI
    driver with its own role, and CloudWatch Observability (Container Insights with GPU metrics, the stack
    dashboard's source) with its own role and a log group that expires. `kubeconfig` authenticates with
    `aws eks get-token`, never a stored credential.
    """

    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:EksCluster", name, None, opts)
        plan, decided = args.plan, args.plan.eks
        if decided is None:
            raise ValueError(f"{plan.stack}: EksCluster serves fitted eks plans, not {plan.target}")
        eks = decided.settings
        if eks.cluster_name is not None:
            found = aws.eks.get_cluster_output(name=eks.cluster_name, opts=pulumi.InvokeOutputOptions(parent=self))
            self.name = found.name
            self.endpoint = found.endpoint
            self.certificate_authority = found.certificate_authorities.apply(lambda cas: cas[0].data)
            self.security_group_id = found.vpc_config.cluster_security_group_id
        else:
            self._create(name, plan, decided, args)
        self.kubeconfig = pulumi.Output.all(self.name, self.endpoint, self.certificate_authority).apply(
            lambda values: kubeconfig(values[0], values[1], values[2], plan.region))
        self.register_outputs({"name": self.name, "endpoint": self.endpoint,
                               "security_group_id": self.security_group_id})

    def _create(self, name: str, plan: StackPlan, decided: EksPlan, args: EksClusterArgs) -> None:
        eks, tags = decided.settings, dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        cluster_id = decided.cluster_name

        subnet_ids: list[pulumi.Input[str]] = list(args.control_plane_subnet_ids or [])
        if not subnet_ids:
            zone = _second_zone(args.node_zone, eks.system_instance_type, self)
            extra = aws.ec2.Subnet(f"{name}-control-plane-subnet", vpc_id=args.vpc_id,
                                   cidr_block=CONTROL_PLANE_SUBNET_CIDR, availability_zone=zone,
                                   map_public_ip_on_launch=False, tags=tags, opts=child)
            subnet_ids = [args.node_subnet_id, extra.id]

        role = aws.iam.Role(
            f"{name}-role", description=f"nemotron-deploy {plan.stack}: EKS control plane", tags=tags, opts=child,
            assume_role_policy=service_trust("eks.amazonaws.com", tag_session=True))
        attachments = [aws.iam.RolePolicyAttachment(
            f"{name}-{policy.lower().replace('_', '-')}", role=role.name, opts=child,
            policy_arn=_managed_policy(partition, policy)) for policy in CLUSTER_POLICIES]
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/eks/{cluster_id}/cluster",
                                       retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=child)
        vpc_config: dict = {"subnet_ids": subnet_ids, "endpoint_private_access": True,
                            "endpoint_public_access": bool(eks.public_access_cidrs)}
        if eks.public_access_cidrs:
            vpc_config["public_access_cidrs"] = list(eks.public_access_cidrs)
        cluster = aws.eks.Cluster(
            f"{name}-cluster", name=cluster_id, role_arn=role.arn, version=eks.kubernetes_version,
            vpc_config=vpc_config, enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            tags=tags, opts=pulumi.ResourceOptions(parent=self, depends_on=[logs, *attachments]))

        system_role = eks_node_role(f"{name}-system-nodes", plan, tags, partition, self)
        pool = decided.system_pool
        launch = {"metadata_options": dict(IMDSV2_ONLY) | {"instance_metadata_tags": NODE_INSTANCE_METADATA_TAGS},
                  "block_device_mappings": [{"device_name": NODE_ROOT_DEVICE, "ebs": {
                      "volume_size": pool.root_volume_gib, "volume_type": "gp3", "encrypted": "true",
                      "delete_on_termination": "true"}}]}
        template = aws.ec2.LaunchTemplate(
            f"{name}-system-template", update_default_version=True, tags=tags, opts=child,
            description=f"nemotron-deploy {plan.stack}: EKS system nodes",
            tag_specifications=[{"resource_type": kind, "tags": tags}
                                for kind in ("instance", "volume", "network-interface")], **launch)
        # As for the GPU nodes: a renewed expiry does not roll the nodes (components.gpu_node_pool).
        system_nodes = aws.eks.NodeGroup(
            f"{name}-system-nodes", cluster_name=cluster.name, node_role_arn=system_role.arn,
            subnet_ids=[args.node_subnet_id], instance_types=[pool.instance_type], ami_type=pool.ami_type,
            capacity_type=pool.capacity_type, labels=pool.labels,
            scaling_config={"min_size": pool.min_size, "max_size": pool.max_size, "desired_size": pool.desired_size},
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            tags=tags, opts=pulumi.ResourceOptions(
                parent=self, depends_on=system_role.attachments, ignore_changes=["launchTemplate"],
                replacement_trigger=_launch_shape(launch)))

        addon_opts = pulumi.ResourceOptions(parent=self, depends_on=[system_nodes])
        aws.eks.Addon(f"{name}-vpc-cni", cluster_name=cluster.name, addon_name="vpc-cni",
                      configuration_values=json.dumps(VPC_CNI_CONFIGURATION), resolve_conflicts_on_create="OVERWRITE",
                      resolve_conflicts_on_update="OVERWRITE", tags=tags, opts=child)
        pod_identity = aws.eks.Addon(f"{name}-pod-identity-agent", cluster_name=cluster.name,
                                     addon_name="eks-pod-identity-agent", tags=tags, opts=addon_opts)
        csi_role = aws.iam.Role(
            f"{name}-ebs-csi-role", description=f"nemotron-deploy {plan.stack}: EBS CSI controller", tags=tags,
            opts=child, assume_role_policy=service_trust("pods.eks.amazonaws.com", tag_session=True))
        csi_policy = aws.iam.RolePolicyAttachment(f"{name}-ebs-csi-policy", role=csi_role.name, opts=child,
                                                  policy_arn=_managed_policy(partition, EBS_CSI_POLICY))
        aws.eks.Addon(f"{name}-ebs-csi-driver", cluster_name=cluster.name, addon_name="aws-ebs-csi-driver",
                      pod_identity_associations=[{"role_arn": csi_role.arn,
                                                  "service_account": EBS_CSI_SERVICE_ACCOUNT}],
                      tags=tags, opts=pulumi.ResourceOptions(parent=self,
                                                             depends_on=[system_nodes, pod_identity, csi_policy]))

        # Container Insights (GPU metrics for the stack's dashboard): the agent's log group first, with retention
        # and tags, then the add-on with its Pod Identity association made at once (the agent never starts without).
        insights_logs = [aws.cloudwatch.LogGroup(
            f"{name}-container-insights-{group.rsplit('/', 1)[-1]}-logs", name=group,
            retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=child)
            for group in container_insights_log_groups(cluster_id)]
        agent_role = aws.iam.Role(
            f"{name}-cloudwatch-agent-role", description=f"nemotron-deploy {plan.stack}: CloudWatch agent",
            tags=tags, opts=child, assume_role_policy=service_trust("pods.eks.amazonaws.com", tag_session=True))
        agent_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch-agent-policy", role=agent_role.name, opts=child,
            policy_arn=_managed_policy(partition, CLOUDWATCH_AGENT_POLICY))
        aws.eks.Addon(f"{name}-cloudwatch-observability", cluster_name=cluster.name,
                      addon_name=CLOUDWATCH_ADDON.name, addon_version=CLOUDWATCH_ADDON.version,
                      configuration_values=json.dumps(CLOUDWATCH_ADDON_CONFIGURATION),
                      pod_identity_associations=[{"role_arn": agent_role.arn,
                                                  "service_account": CLOUDWATCH_AGENT_SERVICE_ACCOUNT}],
                      tags=tags, opts=pulumi.ResourceOptions(
                          parent=self, depends_on=[system_nodes, pod_identity, agent_policy, *insights_logs]))

        self.name = cluster.name
        self.endpoint = cluster.endpoint
        self.certificate_authority = cluster.certificate_authority.apply(lambda ca: ca.data)
        self.security_group_id = cluster.vpc_config.apply(lambda vpc: vpc.cluster_security_group_id)


class EksNodeRole:
    """A node role with exactly the managed policies a node needs (planner.targets.eks.NODE_POLICIES)."""

    def __init__(self, role: aws.iam.Role, attachments: list[aws.iam.RolePolicyAttachment]):
        self.role = role
        self.arn = role.arn
        self.attachments = attachments


def eks_node_role(name: str, plan: StackPlan, tags: Mapping[str, str], partition: pulumi.Input[str],
                  parent: pulumi.Resource) -> EksNodeRole:
    """Declare `{name}-role` for EC2 nodes of an EKS cluster and its policy attachments, as children of `parent`."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(f"{name}-role", description=f"nemotron-deploy {plan.stack}: EKS nodes", tags=dict(tags),
                        opts=child, assume_role_policy=service_trust("ec2.amazonaws.com"))
    attachments = [aws.iam.RolePolicyAttachment(
        f"{name}-{policy.lower().replace('_', '-')}", role=role.name, opts=child,
        policy_arn=_managed_policy(partition, policy)) for policy in NODE_POLICIES]
    return EksNodeRole(role, attachments)


@dataclass(frozen=True)
class ClusterAddonsArgs:
    """The planner's pinned releases (`plan.eks.addons`, planner/targets/eks.py)."""

    releases: Sequence[HelmRelease]


class ClusterAddons(pulumi.ComponentResource):
    """Pinned Helm releases of the device plugins (and the LeaderWorkerSet controller) through the stack's
    Kubernetes provider, handed in by the caller (`providers=[...]` in opts)."""

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:ClusterAddons", name, None, opts)
        for release in args.releases:
            extra = {"repository_opts": {"repo": release.repository}} if release.repository else {}
            k8s.helm.v3.Release(
                f"{name}-{release.name}", name=release.name, chart=release.chart, version=release.version,
                namespace=release.namespace, create_namespace=release.namespace != "kube-system",
                values=release.values, opts=pulumi.ResourceOptions(parent=self), **extra)
        self.register_outputs({})


def _launch_shape(settings: dict) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps(settings).apply(lambda text: hashlib.sha256(text.encode()).hexdigest())


def service_trust(service: str, tag_session: bool = False) -> str:
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": actions}]})


def _managed_policy(partition: pulumi.Input[str], policy: str) -> pulumi.Output[str]:
    """The registered ARN of an AWS managed policy (some live under a path, e.g. service-role/) in the partition."""
    return pulumi.Output.from_input(partition).apply(lambda p: managed_policy_arn(policy, p))


def _second_zone(node_zone: pulumi.Input[str] | None, instance_type: str,
                 parent: pulumi.Resource) -> pulumi.Output[str]:
    """A zone other than the nodes' for the control plane's second subnet (EKS needs two), chosen among the zones
    that offer the system node type."""
    offerings = aws.ec2.get_instance_type_offerings_output(
        location_type="availability-zone", filters=[{"name": "instance-type", "values": [instance_type]}],
        opts=pulumi.InvokeOutputOptions(parent=parent))

    def pick(values: list) -> str:
        taken, zones = values[0], sorted(set(values[1]))
        others = [zone for zone in zones if zone != taken]
        if not others:
            raise ValueError(f"EKS needs subnets in two Availability Zones; no zone other than {taken} offers "
                             f"{instance_type}: set eks.controlPlaneSubnetIds with network, or another region")
        return others[0]

    return pulumi.Output.all(node_zone, offerings.locations).apply(pick)
