"""The model's own metrics on EKS (vLLM or NIM): the stack's CloudWatch agent (planner/targets/eks_metrics.py)
declared through pulumi_kubernetes, with its log group and its IAM role through EKS Pod Identity."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.eks_cluster import service_trust
from planner.observability import ENGINE_METRICS, prometheus_log_group
from planner.plan import StackPlan
from planner.targets.eks import LOG_RETENTION_DAYS, render_manifests
from planner.targets.eks_metrics import agent_name, agent_policy_statements, log_group_arn

# The agent's objects as planner/targets/eks_metrics.py renders them, by kind: the typed resource, its Pulumi name
# suffix, and its fields besides metadata (manifest key -> argument).
_KINDS = {
    "ServiceAccount": (k8s.core.v1.ServiceAccount, "service-account",
                       {"automountServiceAccountToken": "automount_service_account_token"}),
    "Role": (k8s.rbac.v1.Role, "pod-reader", {"rules": "rules"}),
    "RoleBinding": (k8s.rbac.v1.RoleBinding, "pod-reader-binding", {"subjects": "subjects", "roleRef": "role_ref"}),
    "ConfigMap": (k8s.core.v1.ConfigMap, "config", {"data": "data"}),  # <what>-config: prometheus, cwagent
    "Deployment": (k8s.apps.v1.Deployment, "agent", {"spec": "spec"}),
    "NetworkPolicy": (k8s.networking.v1.NetworkPolicy, "no-ingress", {"spec": "spec"}),
}


@dataclass(frozen=True)
class EksMetricsArgs:
    """`cluster_name`: the cluster's name as the EksCluster component outputs it; `tags`: the stack's tags."""

    plan: StackPlan
    cluster_name: pulumi.Input[str]
    tags: dict[str, str]


class EksMetrics(pulumi.ComponentResource):
    """For an eks stack, vLLM or NIM: the prometheus log group (7 days, the stack's tags), an IAM role trusted by
    EKS Pod Identity with one inline policy (PutMetricData into the stack's namespace; log streams and events in that
    log group; nothing else), the Pod Identity association of the agent's service account, and the agent's
    Kubernetes objects (service account, Role and RoleBinding, the two ConfigMaps, the Deployment, its NetworkPolicy).
    Pass the Kubernetes provider in `providers` and depend on the workload (its namespace, and on vLLM the Secret the
    agent reads the API key from; NIM's agent mounts no Secret)."""

    def __init__(self, name: str, args: EksMetricsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:EksMetrics", name, None, opts)
        plan, tags = args.plan, dict(args.tags)
        if plan.eks is None:
            raise ValueError(f"{plan.stack}: EksMetrics serves fitted eks plans, not {plan.target}")
        documents = render_manifests(plan, plan.eks).metrics_agent
        self._declare_agent(name, plan, documents, args.cluster_name, tags)
        self.register_outputs({})

    def _declare_agent(self, name: str, plan: StackPlan, documents: tuple[dict, ...],
                       cluster_name: pulumi.Input[str], tags: dict[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        group = aws.cloudwatch.LogGroup(f"{name}-prometheus-log", name=prometheus_log_group(plan.stack),
                                        retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=child)
        engine = ENGINE_METRICS[plan.engine].engine
        role = aws.iam.Role(
            f"{name}-role", description=f"nemotron-deploy {plan.stack}: {engine} metrics agent", tags=tags, opts=child,
            assume_role_policy=service_trust("pods.eks.amazonaws.com", tag_session=True))
        policy = aws.iam.RolePolicy(
            f"{name}-policy", role=role.id, opts=child,
            policy=pulumi.Output.from_input(partition).apply(lambda p: json.dumps({
                "Version": "2012-10-17",
                "Statement": agent_policy_statements(plan, log_group_arn(p, plan.region, plan.stack))})))
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity", cluster_name=cluster_name, namespace=plan.eks.names.namespace,
            service_account=agent_name(plan.eks.names.app), role_arn=role.arn, tags=tags, opts=child)

        base = agent_name(plan.eks.names.app)
        declared: list[pulumi.Resource] = []
        for manifest in documents:
            cls, suffix, fields = _KINDS[manifest["kind"]]
            if manifest["kind"] == "ConfigMap":
                suffix = f"{manifest['metadata']['name'].removeprefix(f'{base}-')}-{suffix}"
            # The pod starts once everything it reads exists: its API rights and configs, its log group, its IAM
            # policy and the Pod Identity association (read when a pod is created: a later one reaches only pods
            # created after it).
            after = [*declared, group, policy, association] if manifest["kind"] == "Deployment" else []
            declared.append(cls(f"{name}-{suffix}", metadata=manifest["metadata"],
                                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
                                **{argument: manifest[key] for key, argument in fields.items()}))
