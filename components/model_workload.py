"""The model server on Kubernetes: the planner's manifests (planner/targets/eks.py) declared through
pulumi_kubernetes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.eks_cluster import service_trust
from components.secrets import GENERATED_KEY_LENGTH
from planner.plan import StackPlan
from planner.startup import prefix_grant
from planner.targets.eks import API_KEY_SECRET_KEY, HF_SECRET_KEY, NGC_SECRET_KEY, docker_config_json, render_manifests

ROLLOUT_MARGIN_MIN = 30  # a GPU node joining the cluster and pulling a ~20 GiB image
SKIP_AWAIT = "pulumi.com/skipAwait"


@dataclass(frozen=True)
class ModelWorkloadArgs:
    """Secrets as Pulumi secrets (config get_secret): the API key is generated when None; NIM needs the NGC key;
    the HF token is optional (vLLM)."""

    plan: StackPlan
    api_key: pulumi.Input[str] | None
    ngc_api_key: pulumi.Input[str] | None
    hf_token: pulumi.Input[str] | None
    cluster_name: pulumi.Input[str] | None = None  # for the Pod Identity association of a vLLM stack streaming S3


class ModelWorkload(pulumi.ComponentResource):
    """Namespace, encrypted gp3 StorageClass, serving Secret (and the nvcr.io pull secret and auth-proxy config for
    NIM; the serving-modules ConfigMap, the API-key middleware, for vLLM), model-cache volume, the Deployment or
    LeaderWorkerSet, a ClusterIP Service, a NetworkPolicy admitting only labelled clients and a PodDisruptionBudget.
    Secret values only ever travel as Pulumi secrets into Kubernetes Secrets; the pods read them through secretKeyRef.
    Pass the Kubernetes provider in `providers` and depend on the cluster add-ons (the
    LeaderWorkerSet CRD must exist first)."""

    api_key: pulumi.Output[str]
    service_host: pulumi.Output[str]

    def __init__(self, name: str, args: ModelWorkloadArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:ModelWorkload", name, None, opts)
        plan = args.plan
        if plan.engine == "nim" and args.ngc_api_key is None:
            raise ValueError(f"{plan.stack}: engine nim needs ngcApiKey (pulumi config set --secret ngcApiKey ...)")
        child = pulumi.ResourceOptions(parent=self)
        manifests = render_manifests(plan, plan.eks, hf_token=args.hf_token is not None)  # raises without an EksPlan
        n = plan.eks.names

        api_key = args.api_key
        if api_key is None:
            api_key = random.RandomPassword(f"{name}-api-key", length=GENERATED_KEY_LENGTH, special=False,
                                            opts=child).result
        values: dict[str, pulumi.Input[str]] = {API_KEY_SECRET_KEY: api_key}
        if args.ngc_api_key is not None:
            values[NGC_SECRET_KEY] = args.ngc_api_key
        if args.hf_token is not None and plan.engine == "vllm":
            values[HF_SECRET_KEY] = args.hf_token

        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata=manifests.namespace["metadata"], opts=child)
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        # Its parameters carry the expiry tag and cannot change in place: a renewed expiry replaces it (bound volumes
        # keep theirs), deleting the old one first because the name is fixed.
        storage = None if manifests.storage_class is None else _declare(
            f"{name}-storage-class", manifests.storage_class,
            pulumi.ResourceOptions(parent=self, delete_before_replace=True))
        secret = k8s.core.v1.Secret(
            f"{name}-serving-secret", metadata=manifests.serving_secret["metadata"], type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in values.items()}, opts=in_namespace)
        ready = [r for r in (namespace, storage, secret) if r is not None]
        if manifests.pull_secret is not None:
            ready.append(k8s.core.v1.Secret(
                f"{name}-pull-secret", metadata=manifests.pull_secret["metadata"],
                type=manifests.pull_secret["type"],
                string_data={".dockerconfigjson": pulumi.Output.secret(args.ngc_api_key).apply(docker_config_json)},
                opts=in_namespace))
        if manifests.auth_proxy_config is not None:
            ready.append(_declare(f"{name}-auth-proxy", manifests.auth_proxy_config, in_namespace))
        if manifests.serving_modules is not None:
            ready.append(_declare(f"{name}-serving-modules", manifests.serving_modules, in_namespace))
        if manifests.model_service_account is not None:
            ready += self._weights_reader(name, plan, manifests.model_service_account, args.cluster_name,
                                          in_namespace)
        if manifests.model_cache is not None:
            # Bound only once the pod is scheduled (WaitForFirstConsumer): the workload must not wait for it.
            ready.append(_declare(f"{name}-model-cache", _skip_await(manifests.model_cache),
                                  pulumi.ResourceOptions(parent=self, depends_on=ready[:-1])))
        # `pulumi up` returns once the model serves: node start and image pull, then the startup budget.
        wait = f"{ROLLOUT_MARGIN_MIN + math.ceil(plan.eks.sizing.probe.allowed_s / 60)}m"
        server = _declare(f"{name}-server", manifests.workload, pulumi.ResourceOptions(
            parent=self, depends_on=ready, custom_timeouts=pulumi.CustomTimeouts(create=wait, update=wait)))
        # A Service is ready when it has endpoints, i.e. when the model is: no second wait on it.
        _declare(f"{name}-service", _skip_await(manifests.service), in_namespace)
        _declare(f"{name}-clients-only", manifests.network_policy, in_namespace)
        _declare(f"{name}-disruption-budget", manifests.disruption_budget,
                 pulumi.ResourceOptions(parent=self, depends_on=[namespace, server]))

        self.api_key = pulumi.Output.secret(api_key)
        self.service_host = pulumi.Output.from_input(f"{n.app}.{n.namespace}.svc.cluster.local")
        self.register_outputs({"service_host": self.service_host})

    def _weights_reader(self, name: str, plan: StackPlan, account: dict, cluster_name: pulumi.Input[str] | None,
                        in_namespace: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The model pods' ServiceAccount and, through EKS Pod Identity, a role that reads the staged weights only."""
        if cluster_name is None:
            raise ValueError(f"{plan.stack}: streaming the staged weights needs the cluster's name (Pod Identity)")
        child, tags = pulumi.ResourceOptions(parent=self), dict(plan.tags)
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        role = aws.iam.Role(f"{name}-weights-role", description=f"nemotron-deploy {plan.stack}: model pods read the "
                            "staged weights", tags=tags, opts=child,
                            assume_role_policy=service_trust("pods.eks.amazonaws.com", tag_session=True))
        policy = aws.iam.RolePolicy(f"{name}-weights-read", role=role.id, opts=child,
                                    policy=partition.apply(
                                        lambda p: _weights_policy(plan.eks.weights, plan.eks.compile_cache, p)))
        # Read when a pod is created: the association exists before the workload's first pod.
        association = aws.eks.PodIdentityAssociation(
            f"{name}-weights-pod-identity", cluster_name=cluster_name, namespace=plan.eks.names.namespace,
            service_account=plan.eks.names.model_service_account, role_arn=role.arn, tags=tags, opts=child)
        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-model-service-account", metadata=account["metadata"],
            automount_service_account_token=account["automountServiceAccountToken"], opts=in_namespace)
        return [service_account, policy, association]


_KINDS = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "Service"): k8s.core.v1.Service,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
}
_TOP_LEVEL = {"metadata": "metadata", "spec": "spec", "data": "data", "provisioner": "provisioner",
              "parameters": "parameters", "reclaimPolicy": "reclaim_policy",
              "volumeBindingMode": "volume_binding_mode", "allowVolumeExpansion": "allow_volume_expansion"}


def _weights_policy(weights, compile_cache, partition: str) -> str:
    """List and read exactly the staged copy's prefix; with a compile cache, list, read and write exactly its prefix
    (no delete); nothing else."""
    statements = prefix_grant("Weights", weights, partition)
    if compile_cache is not None:
        statements += prefix_grant("CompileCache", compile_cache, partition, write=True)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _skip_await(manifest: dict) -> dict:
    """The manifest with pulumi-kubernetes' annotation that declares it without waiting for it to become ready."""
    metadata = manifest["metadata"]
    metadata = metadata | {"annotations": metadata.get("annotations", {}) | {SKIP_AWAIT: "true"}}
    return manifest | {"metadata": metadata}


def _declare(name: str, manifest: dict, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """A typed pulumi_kubernetes resource with the manifest's fields as its inputs (custom resources generic)."""
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    fields = {_TOP_LEVEL[key]: value for key, value in manifest.items() if key not in ("apiVersion", "kind")}
    cls = _KINDS.get((api_version, kind))
    if cls is None:
        return k8s.apiextensions.CustomResource(name, api_version=api_version, kind=kind, opts=opts, **fields)
    return cls(name, opts=opts, **fields)
