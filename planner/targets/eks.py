"""The EKS target: its plan (EksPlan, computed once by `plan_eks`) and what the stack puts on Kubernetes, rendered
from the plan as plain dicts: pure, schema-validated, snapshot-tested.

The components hand these manifests to pulumi_kubernetes unchanged, so what the tests validate against the Kubernetes
schemas is what `pulumi up` applies. Also here: the node pool's shape (instance type, AMI type, taint, labels, scaling),
the pinned Helm releases of the cluster add-ons, the kubeconfig the Kubernetes provider uses and the cluster's IAM
policy lists: every number and name an EKS stack decides, in one place.

Sizes and why:
- GPUs per pod = the layout's GPUs per node; pods = nodes (one per GPU node, so a pod owns its node's NVLink domain).
- /dev/shm = 1/32 of the node's memory, at most 64 GiB: NCCL's shared-memory transport, vLLM's shared-memory
  broadcast queues and Ray's object store live there; the container runtime's 64 MiB default makes NCCL fail.
- Model cache = weights x 1.25, rounded up to 64 GiB: one full copy plus partial downloads, tokenizer and config files,
  and NIM's engine files. On the GPU node's instance-store NVMe when it has enough (p5: 8 x 3.8 TB): the node's
  bootstrap (AL2023 nodeadm, `localStorage: RAID0`) assembles the disks into one array under the kubelet's and
  containerd's directories, so the cache is an emptyDir on the array (kept across container restarts, gone with the
  pod). Only an instance type without enough instance storage falls back to an encrypted gp3 volume at 16,000 IOPS /
  1,000 MiB/s (docs/sources.md#eks-local-storage).
- vLLM's API key on every path: the planner's `--middleware` module (vLLM checks the key only under /v1) ships in
  a ConfigMap (source code, no secret: the key comes from the Secret), mounted read-only into the serving container
  (the Deployment's, or the LeaderWorkerSet leader's; workers only run Ray) and put on PYTHONPATH. NIM instead sits
  behind the auth-proxy sidecar.
- Startup probe = the planner's startup timeout (planner/startup.py: the modelled cold start x 1.5, capped at the
  TTL), in 30-second periods.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shlex
from dataclasses import dataclass, field

from planner.core import CorePlan
from planner.errors import PlanInputError
from planner.hardware import GIB, instance_store_gb
from planner.references import ref, reference
from planner.serving import API_KEY_GUARD, AUTH_MODULE_DIR, NimEnvironment, VllmCommand
from planner.stack_config import PROJECT, EksConfig, StackConfig
from planner.startup import (
    RAY_PORT,
    S3Location,
    StartupBudget,
    compile_cache_uri,
    s3_location,
    startup_budget,
    weights_loader,
)
from planner.tags import TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK
from planner.targets.eks_metrics import ModelTarget, model_ingress, render_metrics_agent

# --------------------------------------------------------------------------------------------- cluster and nodes

# Control-plane log types sent to CloudWatch: who called the API, what changed, who authenticated.
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator")
LOG_RETENTION_DAYS = 7
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
# What the kubelet, the VPC CNI and image pulls from ECR need; nothing else runs with the node's credentials
# (no AmazonSSMManagedInstanceCore: nodes are reached through the Kubernetes API, `kubectl debug node/...`).
# Image pulls need only the pull actions: AmazonEC2ContainerRegistryPullOnly, not the wider ReadOnly policy.
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryPullOnly")
EBS_CSI_POLICY = "AmazonEBSCSIDriverPolicy"  # for the EBS CSI controller only, through EKS Pod Identity
# Container Insights with NVIDIA GPU metrics (docs/sources.md#cloudwatch-observability-addon): the add-on's agent gets
# AWS's agent policy through EKS Pod Identity, for its own service account only. Its agent and Fluent Bit (the
# containers' output: the GPU-error alarm reads it) write to log groups the stack declares beforehand, with the
# cluster's retention and the stack's tags, so none is created without an expiry.
CLOUDWATCH_ADDON = reference("cloudwatch-observability-addon")
CLOUDWATCH_AGENT_POLICY = "CloudWatchAgentServerPolicy"
CLOUDWATCH_AGENT_SERVICE_ACCOUNT = "cloudwatch-agent"
CLOUDWATCH_ADDON_CONFIGURATION = {"containerLogs": {"enabled": True}}
CONTAINER_INSIGHTS_LOG_KINDS = ("performance", "application", "dataplane", "host")


def container_insights_log_groups(cluster: str) -> tuple[str, ...]:
    """The log groups the add-on writes for `cluster`: the agent's Container Insights events (performance) and
    Fluent Bit's containers' output (application), Kubernetes components (dataplane) and node logs (host)."""
    return tuple(f"/aws/containerinsights/{cluster}/{kind}" for kind in CONTAINER_INSIGHTS_LOG_KINDS)
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"  # EKS-optimized Amazon Linux 2023 with the NVIDIA driver and toolkit
SYSTEM_AMI_TYPE = "AL2023_x86_64_STANDARD"
NODE_ROOT_DEVICE = "/dev/xvda"  # the EKS AL2023 AMIs' root device
NODE_ROOT_VOLUME_GIB = 200  # images (NIM ~20 GiB, vLLM ~10 GiB) and logs, before the instance store takes them
SYSTEM_NODES = 2  # CoreDNS, the EBS CSI controller and the LWS controller: the GPU taint keeps them off GPU nodes
SYSTEM_ROOT_VOLUME_GIB = 50
# Instance tags in IMDS stay off on EKS nodes, stated explicitly so an account default cannot turn them on: with them
# on, EC2 refuses tag keys holding "/", and EKS puts kubernetes.io/cluster/<name> and k8s.io/cluster-autoscaler/...
# on every node of a managed node group, so launches fail ("... is not a valid tag key") or EKS drops the setting.
NODE_INSTANCE_METADATA_TAGS = "disabled"
LOCAL_STORAGE_STRATEGY = "RAID0"  # nodeadm: one array of every instance-store disk (docs/sources.md#eks-local-storage)
MIME_BOUNDARY = "nemotron-deploy"

GPU_TAINT_KEY = "nvidia.com/gpu"
POOL_LABEL = f"{PROJECT}/pool"
CLIENT_LABEL = f"{PROJECT}/client"
ROLE_LABEL = f"{PROJECT}/role"
# The NVIDIA device plugin chart's default node affinity matches this label (or NFD's PCI labels, not installed).
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class NodePool:
    """A managed node group as EKS's API takes it: taints in the API's spelling (NO_SCHEDULE)."""

    instance_type: str
    ami_type: str
    capacity_type: str  # ON_DEMAND or CAPACITY_BLOCK
    min_size: int
    max_size: int
    desired_size: int
    labels: dict[str, str]
    taints: tuple[dict[str, str], ...]
    efa_cards: int
    root_volume_gib: int
    local_storage: str | None = None  # nodeadm's instance.localStorage.strategy (RAID0), None: no instance store


@dataclass(frozen=True)
class EksPlan:
    """What the EKS target decides for a fitted eks stack, once: the components and the manifests read it."""

    settings: EksConfig  # the stack's eks section, or its defaults
    cluster_name: str  # the configured existing cluster, or the one the stack creates
    names: Names  # Kubernetes object names
    gpu_pool: NodePool
    system_pool: NodePool  # the untainted nodes of a new cluster (unused with an existing one)
    addons: tuple[HelmRelease, ...]  # pinned Helm releases; empty with installAddons: false
    multi_node: bool  # a LeaderWorkerSet with Ray instead of a Deployment
    startup: StartupBudget
    sizing: WorkloadSizing
    weights: S3Location | None = None  # vLLM streams the staged copy (weightsS3Uri): what its pods may read
    compile_cache: S3Location | None = None  # one-node vLLM with a staged copy: vLLM's compile cache, read and written


def plan_eks(plan: CorePlan) -> EksPlan:
    """The EKS plan of a fitted eks stack (called by planner/plan.py only)."""
    _require_eks(plan)
    settings, startup = eks_settings(plan.config), startup_budget(plan)
    return EksPlan(settings=settings, cluster_name=cluster_name(plan, settings), names=names(plan, settings),
                   gpu_pool=gpu_node_pool(plan, settings), system_pool=system_node_pool(plan, settings),
                   addons=cluster_addons(plan, settings), multi_node=multi_node(plan), startup=startup,
                   sizing=workload_sizing(plan, startup), weights=streamed_weights(plan),
                   compile_cache=compile_cache_location(plan))


def compile_cache_location(plan: CorePlan) -> S3Location | None:
    """Where a one-node vLLM stack with a staged copy persists vLLM's compile cache (as on EC2; a LeaderWorkerSet's
    ranks compile on every node, which this does not cover)."""
    if streamed_weights(plan) is None or multi_node(plan):
        return None
    return s3_location(compile_cache_uri(plan, plan.serving.image))


def streamed_weights(plan: CorePlan) -> S3Location | None:
    """The staged copy a vLLM stack streams from S3 into GPU memory (no download into the cache), or None."""
    if not isinstance(plan.serving, VllmCommand) or weights_loader(plan) != "stream":
        return None
    return s3_location(plan.config.weights_s3_uri)


def eks_settings(config: StackConfig) -> EksConfig:
    """The stack's eks section, or its defaults when the stack has none."""
    return config.eks or EksConfig()


def cluster_name(plan: CorePlan, settings: EksConfig) -> str:
    """The EKS cluster the stack uses: the configured existing one, or the one it creates."""
    return settings.cluster_name or f"{PROJECT}-{plan.stack}"


def gpu_node_pool(plan: CorePlan, settings: EksConfig) -> NodePool:
    """The GPU node group: the plan's instance type and node count, the GPU taint, labels the workload selects on."""
    nodes = plan.config.nodes
    return NodePool(
        instance_type=plan.instance.name, ami_type=GPU_AMI_TYPE,
        capacity_type="CAPACITY_BLOCK" if plan.config.capacity_block else "ON_DEMAND",
        min_size=nodes if settings.min_nodes is None else settings.min_nodes,
        max_size=nodes if settings.max_nodes is None else settings.max_nodes, desired_size=nodes,
        labels={POOL_LABEL: "gpu", GPU_PRESENT_LABEL: "true", f"{PROJECT}/stack": plan.stack},
        taints=({"key": GPU_TAINT_KEY, "value": "present", "effect": "NO_SCHEDULE"},),
        efa_cards=plan.instance.efa_cards, root_volume_gib=NODE_ROOT_VOLUME_GIB,
        local_storage=LOCAL_STORAGE_STRATEGY if cache_on_nvme(plan, settings) else None)


def cache_on_nvme(plan: CorePlan, settings: EksConfig) -> bool:
    """Whether the GPU node's instance-store NVMe holds the model cache: asked for (eks.modelCache, the default) and
    large enough; else the gp3 fallback."""
    return (settings.model_cache == "instance-store"
            and instance_store_gb(plan.instance) * 1e9 >= model_cache_gib(plan) * GIB)


def model_cache_gib(plan: CorePlan) -> int:
    """One full copy of the weights plus partial downloads and engine files, in steps of CACHE_STEP_GIB."""
    return math.ceil(plan.fit.weights_gib * CACHE_HEADROOM / CACHE_STEP_GIB) * CACHE_STEP_GIB


def node_user_data(pool: NodePool) -> str | None:
    """The GPU nodes' launch-template user data: a MIME part EKS merges with its own bootstrap, holding the nodeadm
    NodeConfig that assembles the instance store into one RAID0 under the kubelet and containerd (None: nothing)."""
    if pool.local_storage is None:
        return None
    config = {"apiVersion": "node.eks.aws/v1alpha1", "kind": "NodeConfig",
              "spec": {"instance": {"localStorage": {"strategy": pool.local_storage}}}}
    return "\n".join([
        "MIME-Version: 1.0", f'Content-Type: multipart/mixed; boundary="{MIME_BOUNDARY}"', "",
        f"--{MIME_BOUNDARY}", "Content-Type: application/node.eks.aws", "", "---",
        json.dumps(config, indent=1), "", f"--{MIME_BOUNDARY}--", ""])


def system_node_pool(plan: CorePlan, settings: EksConfig) -> NodePool:
    """The small untainted node group of a new cluster, for what must not wait for (or sit on) a GPU node."""
    return NodePool(
        instance_type=settings.system_instance_type, ami_type=SYSTEM_AMI_TYPE, capacity_type="ON_DEMAND",
        min_size=SYSTEM_NODES, max_size=SYSTEM_NODES, desired_size=SYSTEM_NODES,
        labels={POOL_LABEL: "system", f"{PROJECT}/stack": plan.stack}, taints=(), efa_cards=0,
        root_volume_gib=SYSTEM_ROOT_VOLUME_GIB)


def kubeconfig(name: str, endpoint: str, certificate_authority: str, region: str, profile: str | None = None) -> str:
    """A kubeconfig for the cluster that authenticates with `aws eks get-token`: no static credential in it."""
    env = [{"name": "AWS_PROFILE", "value": profile}] if profile else None
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
                     "args": ["--region", region, "eks", "get-token", "--cluster-name", name, "--output", "json"],
                     "interactiveMode": "Never"}}
    if env:
        user["exec"]["env"] = env
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": endpoint,
                                                "certificate-authority-data": certificate_authority}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "users": [{"name": name, "user": user}],
    }, indent=2)


# --------------------------------------------------------------------------------------------- cluster add-ons


@dataclass(frozen=True)
class HelmRelease:
    """A pinned Helm chart: `chart` is an oci:// reference when `repository` is None."""

    name: str
    chart: str
    version: str
    repository: str | None
    namespace: str
    values: dict = field(default_factory=dict)


NVIDIA_DEVICE_PLUGIN = reference("nvidia-device-plugin-chart")
EFA_DEVICE_PLUGIN = reference("efa-device-plugin-chart")
LWS_CHART = reference("lws-chart")  # volumeClaimTemplates in leaderWorkerTemplate first appear in LWS 0.8.0
GPU_TOLERATIONS = [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                   {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]


def cluster_addons(plan: CorePlan, settings: EksConfig) -> tuple[HelmRelease, ...]:
    """The Helm releases a GPU workload needs on the cluster, pinned: device plugins always, LWS when multi-node.

    Empty when the stack says the cluster already runs them (installAddons: false, e.g. the GPU Operator).
    """
    if not settings.install_addons:
        return ()
    releases = [
        HelmRelease("nvidia-device-plugin", NVIDIA_DEVICE_PLUGIN.name, NVIDIA_DEVICE_PLUGIN.version,
                    NVIDIA_DEVICE_PLUGIN.repository, "kube-system",
                    {"tolerations": GPU_TOLERATIONS}),
        HelmRelease("aws-efa-k8s-device-plugin", EFA_DEVICE_PLUGIN.name, EFA_DEVICE_PLUGIN.version,
                    EFA_DEVICE_PLUGIN.repository, "kube-system",
                    {"tolerations": GPU_TOLERATIONS,
                     "supportedInstanceLabels": {"keys": ["node.kubernetes.io/instance-type"],
                                                 "values": [plan.instance.name]}}),
    ]
    if multi_node(plan):
        releases.append(HelmRelease("lws", f"{LWS_CHART.repository}/{LWS_CHART.name}", LWS_CHART.version, None,
                                    "lws-system"))
    return tuple(releases)


# --------------------------------------------------------------------------------------------- workload sizing

SHM_MAX_GIB = 64
CACHE_HEADROOM = 1.25
CACHE_STEP_GIB = 64
PROBE_PERIOD_S = 30
MODEL_CACHE_MOUNT = "/models"
HF_HOME = f"{MODEL_CACHE_MOUNT}/hf"
# vLLM's compile cache on the model cache, restored from S3 before the server starts and saved once it is healthy by
# two small containers of the AWS CLI image (docs/sources.md#compile-cache-eks)
VLLM_CACHE_ROOT = f"{MODEL_CACHE_MOUNT}/vllm-cache"
CACHE_RESTORED = f"{MODEL_CACHE_MOUNT}/.compile-cache-restored"  # outside the cache, so never uploaded
AWS_CLI_IMAGE = ref("aws-cli-image")
AWS_CLI_HOME = "/home/aws"  # the CLI's only writable place (its cache), an emptyDir under a read-only root
SHM_MOUNT = "/dev/shm"  # noqa: S108 - the pod's own memory-backed volume, not a shared temporary directory
AUTH_PROXY_PORT = 8080
AUTH_PROXY_IMAGE = ref("nim-auth-proxy-image")
NIM_USER = 1000  # the NIM container's user (as NVIDIA's nim-llm chart runs it)
# vLLM's pods are hardened as NIM's: no privilege escalation, every capability dropped, the runtime's seccomp profile.
# - One node: a non-root user. The vllm/vllm-openai image defines none (it runs as root, HOME=/root), so the pod names
#   a high uid of its own; USER answers getpass (torch's inductor cache, Ray) for a uid the image's /etc/passwd lacks,
#   and HOME is an emptyDir it can write: vLLM's cache and config roots, torch.compile, Triton, FlashInfer's JIT and
#   CUDA's compute cache all live under it. fsGroup makes the model-cache volume group-writable for that uid;
#   OnRootMismatch chowns it only when its top directory does not match (once, for a volume a root pod filled).
# - EFA pods (several nodes) run as root with IPC_LOCK, and no other capability: libfabric's EFA provider registers
#   (pins) host memory for the NIC, which the kernel counts against RLIMIT_MEMLOCK unless the process holds
#   CAP_IPC_LOCK, and nothing on the AL2023 nodes promises containers an unlimited memlock limit (nodeadm's base
#   runtime spec sets only RLIMIT_NOFILE; the EC2 servers pass `--ulimit memlock=-1` to docker for the same reason).
#   An added capability never reaches a non-root container's process (Kubernetes sets no ambient capabilities; exec
#   as non-root clears the effective set), so IPC_LOCK works for root only. Root without the other capabilities cannot
#   bypass file permissions, change ownership, use raw sockets or load modules.
# - The root filesystem stays writable: Ray's session directory (/tmp/ray), torch's inductor cache
#   (/tmp/torchinductor_*), Python's temporary files and kernel JIT paths are written outside HOME, and a path missed
#   by a read-only root would only fail after the hour-long download and load on a GPU node.
VLLM_USER = 10001  # >= 10000: no clash with a uid of the host's own users
VLLM_HOME = "/home/vllm"
VLLM_HOME_GIB = 32  # compiled kernels and graphs (a few GiB), with room; on the node's 200 GiB root volume
EFA_CAPABILITIES = ("IPC_LOCK",)
STORAGE_PARAMETERS = {"type": "gp3", "encrypted": "true", "iops": "16000", "throughput": "1000"}


@dataclass(frozen=True)
class ProbeBudget:
    """The startup probe that lets a pod take the planner's startup budget, and no longer."""

    budget: StartupBudget
    period_s: int = PROBE_PERIOD_S

    @property
    def failure_threshold(self) -> int:
        return math.ceil(self.budget.timeout_s / self.period_s)

    @property
    def allowed_s(self) -> int:
        return self.failure_threshold * self.period_s

    def describe(self) -> str:
        return f"{self.failure_threshold} x {self.period_s} s = {self.allowed_s} s >= {self.budget.describe()}"


@dataclass(frozen=True)
class WorkloadSizing:
    """Every size the workload's manifests use, from the plan."""

    pods: int
    gpus_per_pod: int
    efa_per_pod: int  # EFA devices a pod takes; 0 on one node (no traffic leaves it)
    shm_gib: int
    cache_gib: int
    cache_on_nvme: bool  # an emptyDir on the node's instance-store RAID0; False: a gp3 volume
    cpu_request: int
    memory_request_gib: int
    probe: ProbeBudget


def multi_node(plan: CorePlan) -> bool:
    """Whether the layout spans nodes (a LeaderWorkerSet with Ray instead of a Deployment)."""
    return plan.fit.layout.nodes > 1


def workload_sizing(plan: CorePlan, startup: StartupBudget) -> WorkloadSizing:
    """GPUs from the layout, /dev/shm and cache from the node and the weights, the probe from the startup budget."""
    layout, instance = plan.fit.layout, plan.instance
    return WorkloadSizing(
        pods=layout.nodes, gpus_per_pod=layout.gpus_per_node,
        efa_per_pod=instance.efa_cards if layout.nodes > 1 else 0,
        shm_gib=min(SHM_MAX_GIB, instance.memory_gib // 32), cache_gib=model_cache_gib(plan),
        cache_on_nvme=cache_on_nvme(plan, eks_settings(plan.config)),
        # Requests keep other pods off the node's CPUs and memory without limits that would throttle tokenization
        # or OOM-kill the loader.
        cpu_request=instance.vcpus // 4, memory_request_gib=instance.memory_gib // 8,
        probe=ProbeBudget(startup))


# --------------------------------------------------------------------------------------------- names and labels


@dataclass(frozen=True)
class Names:
    """Kubernetes object names of one stack (DNS labels derived from the stack name)."""

    app: str
    namespace: str

    @property
    def serving_secret(self) -> str:
        return f"{self.app}-serving"

    @property
    def pull_secret(self) -> str:
        return f"{self.app}-nvcr"

    @property
    def storage_class(self) -> str:
        return f"{self.app}-model-cache"

    @property
    def model_service_account(self) -> str:
        """The model pods' ServiceAccount: EKS Pod Identity gives it read access to the staged weights."""
        return f"{self.app}-model"

    @property
    def model_cache(self) -> str:
        return f"{self.app}-model-cache"

    @property
    def auth_proxy(self) -> str:
        return f"{self.app}-auth-proxy"

    @property
    def serving_modules(self) -> str:
        return f"{self.app}-serving-modules"

    @property
    def leader_worker_set(self) -> str:
        """Not `app`: the LWS controller names its headless Service (the pods' DNS subdomain, which
        LWS_LEADER_ADDRESS resolves through) after the LeaderWorkerSet and reuses any Service of that name, so the
        set must not share its name with the client Service."""
        return f"{self.app}-group"


# Keys of the serving Secret and the variables that read them.
API_KEY_SECRET_KEY = "API_KEY"  # noqa: S105 - key names, not values
NGC_SECRET_KEY = "NGC_API_KEY"  # noqa: S105
HF_SECRET_KEY = "HF_TOKEN"  # noqa: S105


def names(plan: CorePlan, settings: EksConfig) -> Names:
    """Object names: the stack name as a DNS label (lower case, other characters to '-', at most 40 characters)."""
    app = re.sub(r"[^a-z0-9-]+", "-", plan.stack.lower()).strip("-")[:40].strip("-") or "nemotron"
    return Names(app, settings.namespace)


def selector_labels(plan: CorePlan, eks: EksPlan) -> dict[str, str]:
    """The labels that pick the stack's model pods (Service, NetworkPolicy, PodDisruptionBudget, selector)."""
    return {"app.kubernetes.io/name": "nemotron", "app.kubernetes.io/instance": eks.names.app}


def labels(plan: CorePlan, eks: EksPlan) -> dict[str, str]:
    """Every object's labels: the selector labels plus component, manager, stack and engine."""
    return selector_labels(plan, eks) | {"app.kubernetes.io/component": "model-server",
                                         "app.kubernetes.io/managed-by": "pulumi",
                                         f"{PROJECT}/stack": eks.names.app, f"{PROJECT}/engine": plan.engine}


def annotations(plan: CorePlan) -> dict[str, str]:
    """The stack's tags that label values cannot hold (':' and spaces), for people and the reaper."""
    return {TAG_STACK.replace(":", "/"): plan.tags[TAG_STACK], TAG_OWNER.replace(":", "/"): plan.tags[TAG_OWNER],
            TAG_EXPIRES_AT.replace(":", "/"): plan.tags[TAG_EXPIRES_AT]}


def _metadata(plan: CorePlan, eks: EksPlan, name: str, namespaced: bool = True) -> dict:
    meta = {"name": name, "labels": labels(plan, eks), "annotations": annotations(plan)}
    if namespaced:
        meta["namespace"] = eks.names.namespace
    return meta


# --------------------------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class Manifests:
    """Every Kubernetes object the workload declares, in apply order. Secrets carry their keys, not their values."""

    namespace: dict
    storage_class: dict | None  # the gp3 fallback's, when the instance store cannot hold the cache
    serving_secret: dict
    pull_secret: dict | None  # NIM: nvcr.io credentials
    auth_proxy_config: dict | None  # NIM: the API-key proxy's nginx template
    serving_modules: dict | None  # vLLM: the planner's Python modules (the API-key middleware) as a ConfigMap
    model_cache: dict | None  # gp3 fallback on one node: a PVC (several: the LeaderWorkerSet's claim templates)
    workload: dict  # Deployment, or LeaderWorkerSet when the layout spans nodes
    service: dict
    network_policy: dict
    disruption_budget: dict
    # the stack's metrics agent, vLLM or NIM (planner/targets/eks_metrics.py), declared by components/eks_metrics.py
    metrics_agent: tuple[dict, ...] = ()
    # vLLM streaming its staged copy: the model pods' ServiceAccount, which EKS Pod Identity maps to the read role
    model_service_account: dict | None = None

    def all(self) -> list[dict]:
        return [m for m in (self.namespace, self.storage_class, self.serving_secret, self.pull_secret,
                            self.auth_proxy_config, self.serving_modules, self.model_cache, self.workload,
                            self.service,
                            self.network_policy, self.disruption_budget, self.model_service_account)
                if m is not None] + list(self.metrics_agent)


def serving_secret_keys(plan: CorePlan, hf_token: bool) -> tuple[str, ...]:
    """Keys the serving Secret holds: the API key always, the NGC key for NIM, the HF token when configured."""
    keys = [API_KEY_SECRET_KEY]
    if plan.engine == "nim":
        keys.append(NGC_SECRET_KEY)
    if hf_token and plan.engine == "vllm":
        keys.append(HF_SECRET_KEY)
    return tuple(keys)


def required_secret_keys(config: StackConfig) -> tuple[str, ...]:
    """Stack-config secrets an EKS stack cannot deploy without: NIM pulls its image and weights with the NGC key."""
    return ("ngcApiKey",) if config.target == "eks" and config.engine == "nim" else ()


# Why each required secret is required, for the message that asks for it.
REQUIRED_SECRET_REASONS = {"ngcApiKey": "NIM pulls its image and weights from NGC with it"}


def missing_required_secrets(config: StackConfig) -> tuple[str, ...]:
    """Required secrets the stack file does not hold (no `secure:` value): `pulumi up` would fail with them missing,
    and only after the network and cluster had started. Decided from the file alone, before any placeholder the
    offline engine fills in."""
    held = {"apiKey": config.api_key, "hfToken": config.hf_token, "ngcApiKey": config.ngc_api_key}
    return tuple(key for key in required_secret_keys(config) if held[key] is None)


def missing_secret_message(stack: str, key: str) -> str:
    """One line naming the missing key, why the stack needs it and the command that sets it."""
    return (f"{PROJECT}:{key} is not set: stack {stack} cannot deploy without it "
            f"({REQUIRED_SECRET_REASONS.get(key, 'the program reads it')}); set it with "
            f"`pulumi config set --secret {key} ... -s {stack}`")


def render_manifests(plan: CorePlan, eks: EksPlan | None, hf_token: bool = False) -> Manifests:
    """The workload's manifests for a fitted EKS plan: NIM on one node, or vLLM on one node or a LeaderWorkerSet."""
    _require_eks(plan)
    if eks is None:
        raise PlanInputError("plan", plan.stack, "a fitted eks plan (vllm or nim) with its EksPlan")
    n, size = eks.names, eks.sizing
    nim = isinstance(plan.serving, NimEnvironment)
    secret_keys = serving_secret_keys(plan, hf_token)
    storage_class = None if size.cache_on_nvme else {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": _metadata(plan, eks, n.storage_class, False),
        "provisioner": "ebs.csi.aws.com", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
        # The EBS CSI driver tags the volumes it creates, so the reaper finds what a lost cluster left behind.
        "parameters": STORAGE_PARAMETERS | {f"tagSpecification_{i}": f"{key}={value}"
                                            for i, (key, value) in enumerate(plan.tags.items(), start=1)},
    }
    cache_claim_spec = {"accessModes": ["ReadWriteOnce"], "storageClassName": n.storage_class,
                        "resources": {"requests": {"storage": f"{size.cache_gib}Gi"}}}
    model_cache = None
    if not eks.multi_node and not size.cache_on_nvme:
        model_cache = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                       "metadata": _metadata(plan, eks, n.model_cache), "spec": cache_claim_spec}
    if eks.multi_node:
        workload = _leader_worker_set(plan, eks, size, cache_claim_spec)
    else:
        workload = _deployment(plan, eks, size, nim)
    api_port = AUTH_PROXY_PORT if nim else plan.serving.port
    service_selector = selector_labels(plan, eks)
    if eks.multi_node:
        service_selector = service_selector | {"leaderworkerset.sigs.k8s.io/worker-index": "0"}
    ingress = [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}}],
                "ports": [{"protocol": "TCP", "port": api_port}]}]
    if eks.multi_node:
        # Ray, NCCL bootstrap and Gloo between the pods of the group, on any port (EFA traffic bypasses the kernel).
        ingress.append({"from": [{"podSelector": {"matchLabels": selector_labels(plan, eks)}}]})
    # The stack's metrics agent (planner/targets/eks_metrics.py) scrapes the model's own port: vLLM's /metrics on the
    # api port, NIM's /v1/metrics on the NIM container's port (serving.port, never the auth proxy's); it alone may
    # reach that port besides the clients' rule above.
    scraped = ModelTarget(app=n.app, namespace=n.namespace, cluster_name=eks.cluster_name,
                          serving_secret=n.serving_secret, api_key_item=API_KEY_SECRET_KEY,
                          selector=selector_labels(plan, eks), annotations=annotations(plan),
                          serving_port=plan.serving.port, multi_node=eks.multi_node,
                          node_selector={POOL_LABEL: "system"} if eks.settings.cluster_name is None else None)
    ingress += model_ingress(plan, scraped)
    agent = render_metrics_agent(plan, scraped)
    return Manifests(
        namespace={"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": n.namespace, "labels": {f"{PROJECT}/stack": n.app}}},
        storage_class=storage_class,
        serving_secret={"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(plan, eks, n.serving_secret),
                        "type": "Opaque", "stringData": {key: "(from a Pulumi secret)" for key in secret_keys}},
        pull_secret={"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(plan, eks, n.pull_secret),
                     "type": "kubernetes.io/dockerconfigjson",
                     "stringData": {".dockerconfigjson": "(from the NGC key)"}} if nim else None,
        auth_proxy_config={"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(plan, eks, n.auth_proxy),
                           "data": {"default.conf.template": auth_proxy_template(plan.serving.port)}}
        if nim else None,
        serving_modules=None if nim else {"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": _metadata(plan, eks, n.serving_modules),
                                          "data": dict(_vllm(plan).modules)},
        model_cache=model_cache,
        workload=workload,
        service={"apiVersion": "v1", "kind": "Service", "metadata": _metadata(plan, eks, n.app),
                 "spec": {"type": "ClusterIP", "selector": service_selector,
                          "ports": [{"name": "http", "port": plan.serving.port, "targetPort": "api",
                                     "protocol": "TCP"}]}},
        network_policy={"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": _metadata(plan, eks, n.app),
                        "spec": {"podSelector": {"matchLabels": selector_labels(plan, eks)},
                                 "policyTypes": ["Ingress"], "ingress": ingress}},
        # No voluntary eviction (drain, autoscaler) of a pod that took an hour to warm up; a pod that is not
        # ready may still be evicted, so a broken one never blocks a node upgrade.
        disruption_budget={"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                           "metadata": _metadata(plan, eks, n.app),
                           "spec": {"maxUnavailable": 0, "selector": {"matchLabels": selector_labels(plan, eks)},
                                    "unhealthyPodEvictionPolicy": "AlwaysAllow"}},
        metrics_agent=tuple(agent.all()) if agent is not None else (),
        model_service_account=None if eks.weights is None else {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(plan, eks, n.model_service_account),
            "automountServiceAccountToken": False},
    )


def pod_templates(workload: dict) -> list[dict]:
    """The pod templates inside a Deployment or LeaderWorkerSet (leader first)."""
    if workload["kind"] == "Deployment":
        return [workload["spec"]["template"]]
    template = workload["spec"]["leaderWorkerTemplate"]
    return [template["leaderTemplate"], template["workerTemplate"]]


def auth_proxy_template(upstream_port: int) -> str:
    """nginx config (the image's envsubst template) that lets only `Authorization: Bearer $NEMOTRON_API_KEY` through.

    NIM has no API-key setting of its own; the key stays in the Secret and reaches nginx as an environment variable.
    Health checks pass without a key; streamed responses are not buffered.
    """
    upstream = f"http://127.0.0.1:{upstream_port}"
    return "\n".join([
        "map $http_authorization $nemotron_key_ok {",
        "    default 0;",
        '    "Bearer ${NEMOTRON_API_KEY}" 1;',
        "}",
        "server {",
        f"    listen {AUTH_PROXY_PORT};",
        "    client_max_body_size 64m;",
        "    location ~ ^/v1/health/(ready|live)$ {",
        f"        proxy_pass {upstream};",
        "    }",
        "    location / {",
        "        if ($nemotron_key_ok = 0) {",
        "            return 401;",
        "        }",
        f"        proxy_pass {upstream};",
        "        proxy_http_version 1.1;",
        "        proxy_buffering off;",
        "        proxy_read_timeout 3600s;",
        "    }",
        "}",
        "",
    ])


def docker_config_json(ngc_api_key: str) -> str:
    """The image pull secret's .dockerconfigjson for nvcr.io (user `$oauthtoken`, password the NGC key)."""
    auth = base64.b64encode(f"$oauthtoken:{ngc_api_key}".encode()).decode()
    return json.dumps({"auths": {"nvcr.io": {"username": "$oauthtoken", "password": ngc_api_key, "auth": auth}}})


# --------------------------------------------------------------------------------------------- pods


def _secret_env(plan: CorePlan, eks: EksPlan, env_name: str, key: str, optional: bool = False) -> dict:
    ref = {"name": eks.names.serving_secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": env_name, "valueFrom": {"secretKeyRef": ref}}


def _plain_env(values: dict[str, str]) -> list[dict]:
    return [{"name": name, "value": value} for name, value in values.items()]


def _probes(path_ready: str, path_live: str, port: int | str, probe: ProbeBudget) -> dict:
    def http(path: str) -> dict:
        return {"path": path, "port": port}

    return {
        "startupProbe": {"httpGet": http(path_ready), "periodSeconds": probe.period_s,
                         "failureThreshold": probe.failure_threshold, "timeoutSeconds": 5},
        "readinessProbe": {"httpGet": http(path_ready), "periodSeconds": 10, "failureThreshold": 3,
                           "timeoutSeconds": 5},
        "livenessProbe": {"httpGet": http(path_live), "periodSeconds": 30, "failureThreshold": 5,
                          "timeoutSeconds": 10},
    }


def _resources(plan: CorePlan, size: WorkloadSizing) -> dict:
    devices = {GPU_RESOURCE: str(size.gpus_per_pod)}
    if size.efa_per_pod:
        devices[EFA_RESOURCE] = str(size.efa_per_pod)
    return {"requests": {"cpu": str(size.cpu_request), "memory": f"{size.memory_request_gib}Gi"} | devices,
            "limits": dict(devices)}


def _pod_spec(plan: CorePlan, eks: EksPlan, size: WorkloadSizing, containers: list[dict], volumes: list[dict],
              nim: bool) -> dict:
    spec = {
        "nodeSelector": {POOL_LABEL: "gpu", "node.kubernetes.io/instance-type": plan.instance.name},
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "automountServiceAccountToken": False,  # EKS Pod Identity mounts its own token, for AWS only
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{size.shm_gib}Gi"}}] + volumes,
    }
    if nim:
        # OnRootMismatch: a restart must not chown hundreds of GiB of cache file by file.
        spec["securityContext"] |= {"runAsUser": NIM_USER, "runAsGroup": NIM_USER, "fsGroup": NIM_USER,
                                    "fsGroupChangePolicy": "OnRootMismatch", "runAsNonRoot": True}
        spec["imagePullSecrets"] = [{"name": eks.names.pull_secret}]
    else:
        spec["securityContext"] |= _vllm_pod_security(size)
        spec["volumes"].append({"name": "home", "emptyDir": {"sizeLimit": f"{VLLM_HOME_GIB}Gi"}})
        if eks.weights is not None:  # the staged copy, read with the model role through EKS Pod Identity
            spec["serviceAccountName"] = eks.names.model_service_account
    return spec


def _vllm_pod_security(size: WorkloadSizing) -> dict:
    """vLLM's user: VLLM_USER, owning the model cache through fsGroup; root on EFA pods (see VLLM_USER)."""
    if size.efa_per_pod:
        return {"runAsUser": 0}  # stated: IPC_LOCK is useless to any other user
    return {"runAsUser": VLLM_USER, "runAsGroup": VLLM_USER, "fsGroup": VLLM_USER,
            "fsGroupChangePolicy": "OnRootMismatch", "runAsNonRoot": True}


def _vllm_security_context(size: WorkloadSizing) -> dict:
    """No escalation, no capability but IPC_LOCK on EFA pods, a writable root filesystem (see VLLM_USER)."""
    capabilities: dict[str, list[str]] = {"drop": ["ALL"]}
    if size.efa_per_pod:
        capabilities["add"] = list(EFA_CAPABILITIES)
    return {"allowPrivilegeEscalation": False, "capabilities": capabilities, "readOnlyRootFilesystem": False}


def _deployment(plan: CorePlan, eks: EksPlan, size: WorkloadSizing, nim: bool) -> dict:
    n = eks.names
    cache_volume = (_nvme_cache_volume(size) if size.cache_on_nvme
                    else {"name": "model-cache", "persistentVolumeClaim": {"claimName": n.model_cache}})
    if nim:
        containers = [_nim_container(plan, eks, size), _auth_proxy_container(plan, eks)]
        volumes = [cache_volume, {"name": "auth-proxy", "configMap": {"name": n.auth_proxy}}]
    else:
        containers = [_vllm_container(plan, eks, size, ["bash", "-c", _vllm(plan).launch()], probes=True)]
        volumes = [cache_volume, _serving_modules_volume(plan, eks)]
        if eks.compile_cache is not None:
            containers.append(_compile_cache_container(plan, "compile-cache-save",
                                                       compile_cache_save_script(plan, eks)))
            volumes.append({"name": "aws-cli-tmp", "emptyDir": {"sizeLimit": "1Gi"}})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(plan, eks, n.app),
        "spec": {
            "replicas": 1,
            # One GPU node, one ReadWriteOnce volume: the old pod goes before the new one starts.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(plan, eks)},
            # No expiry annotation on the pod template: a renewed expiry must not restart the model.
            "template": {"metadata": {"labels": labels(plan, eks) | {ROLE_LABEL: "server"}},
                         "spec": _pod_spec(plan, eks, size, containers, volumes, nim)
                         | _compile_cache_restore(plan, eks)},
        },
    }


def _compile_cache_restore(plan: CorePlan, eks: EksPlan) -> dict:
    """The init container that restores vLLM's compile cache (nothing without one)."""
    if eks.compile_cache is None:
        return {}
    return {"initContainers": [_compile_cache_container(plan, "compile-cache-restore",
                                                        compile_cache_restore_script(eks))]}


def compile_cache_restore_script(eks: EksPlan) -> str:
    """Before vLLM starts: its compile cache from S3 onto the model cache, when an earlier start saved one; never fails
    the pod (vLLM then compiles from scratch)."""
    uri = f"s3://{eks.compile_cache.bucket}/{eks.compile_cache.prefix}/"
    return "\n".join([
        "set -u",
        f'mkdir -p {VLLM_CACHE_ROOT}',
        f'if aws s3 sync --only-show-errors {uri} {VLLM_CACHE_ROOT}; then',
        f'  if [ -n "$(ls -A {VLLM_CACHE_ROOT})" ]; then',
        f'    touch {CACHE_RESTORED}; echo "compile cache restored from {uri}"',
        f'  else echo "no compile cache yet at {uri}"; fi',
        'else echo "compile cache not restored: vLLM compiles from scratch" >&2; fi',
        "exit 0",
    ])


def compile_cache_save_script(plan: CorePlan, eks: EksPlan) -> str:
    """Beside vLLM: once it answers /health (within the startup timeout), its compile cache to S3, unless it was
    restored at the start; then idle. A failed upload is a log line: the next start compiles again."""
    uri = f"s3://{eks.compile_cache.bucket}/{eks.compile_cache.prefix}/"
    port, budget = plan.serving.port, eks.startup.timeout_s
    healthy = (f"(exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && "
               "head -n 1 <&3 | grep -q ' 200 ')")
    return "\n".join([
        "set -u",
        f"until {healthy} 2>/dev/null; do",
        f'  if (( SECONDS > {budget} )); then',
        f'    echo "no healthy server after {budget} s: compile cache not saved" >&2; exec sleep infinity',
        "  fi",
        f"  sleep {PROBE_PERIOD_S}",
        "done",
        f'if [ -f {CACHE_RESTORED} ]; then echo "compile cache restored at the start: not saved again"',
        f'elif aws s3 sync --only-show-errors {VLLM_CACHE_ROOT} {uri}; then',
        f'  touch {CACHE_RESTORED}; echo "compile cache saved to {uri}"',
        'else echo "compile cache not saved: the next start compiles again" >&2; fi',
        "exec sleep infinity",
    ])


def _compile_cache_container(plan: CorePlan, name: str, script: str) -> dict:
    """A small AWS CLI container on the model cache, as vLLM's user, reading S3 through the pod's Pod Identity."""
    return {
        "name": name, "image": AWS_CLI_IMAGE, "command": ["bash", "-c", script],
        "env": _plain_env({"AWS_REGION": plan.region, "HOME": AWS_CLI_HOME}),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "volumeMounts": [{"name": "model-cache", "mountPath": MODEL_CACHE_MOUNT},
                         {"name": "aws-cli-tmp", "mountPath": AWS_CLI_HOME}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": VLLM_USER,
                            "runAsGroup": VLLM_USER},
    }


def _nvme_cache_volume(size: WorkloadSizing) -> dict:
    """The model cache on the node's instance-store RAID0 (the kubelet's directory lives there)."""
    return {"name": "model-cache", "emptyDir": {"sizeLimit": f"{size.cache_gib}Gi"}}


def _nim_container(plan: CorePlan, eks: EksPlan, size: WorkloadSizing) -> dict:
    serving = plan.serving
    assert isinstance(serving, NimEnvironment)
    return {
        "name": "nim", "image": serving.image,
        "env": _plain_env(serving.env) + [_secret_env(plan, eks, "NGC_API_KEY", NGC_SECRET_KEY)],
        # Not exposed by the Service: clients go through the auth proxy on "api".
        "ports": [{"name": "nim", "containerPort": serving.port, "protocol": "TCP"}],
        "resources": _resources(plan, size),
        "volumeMounts": [{"name": "dshm", "mountPath": SHM_MOUNT},
                         {"name": "model-cache", "mountPath": serving.env["NIM_CACHE_PATH"]}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    } | _probes("/v1/health/ready", "/v1/health/live", "nim", size.probe)


def _auth_proxy_container(plan: CorePlan, eks: EksPlan) -> dict:
    return {
        "name": "auth-proxy", "image": AUTH_PROXY_IMAGE,
        "env": [_secret_env(plan, eks, "NEMOTRON_API_KEY", API_KEY_SECRET_KEY)],
        "ports": [{"name": "api", "containerPort": AUTH_PROXY_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}},
        "volumeMounts": [{"name": "auth-proxy", "mountPath": "/etc/nginx/templates", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "runAsUser": 101, "runAsGroup": 101},
        "readinessProbe": {"tcpSocket": {"port": "api"}, "periodSeconds": 10},
    }


def _vllm(plan: CorePlan) -> VllmCommand:
    assert isinstance(plan.serving, VllmCommand)
    return plan.serving


def _serving_modules_volume(plan: CorePlan, eks: EksPlan) -> dict:
    return {"name": "serving-modules", "configMap": {"name": eks.names.serving_modules, "defaultMode": 0o444}}


def _vllm_env(plan: CorePlan, eks: EksPlan, leader: bool) -> list[dict]:
    serving = _vllm(plan)
    env = _plain_env({"HF_HOME": HF_HOME, "HOME": VLLM_HOME, "USER": "vllm"} | serving.env
                     | ({"AWS_REGION": plan.region} if eks.weights is not None else {})
                     | ({"VLLM_CACHE_ROOT": VLLM_CACHE_ROOT} if eks.compile_cache is not None else {}))
    if eks.multi_node:
        # Ray, Gloo and NCCL bind to the pod's own interface and address (docs/sources.md#dgx-spark: workers that never
        # join picked the wrong one); EFA through libfabric when the image carries aws-ofi-nccl.
        env += [{"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
        env += _plain_env({"GLOO_SOCKET_IFNAME": "eth0", "TP_SOCKET_IFNAME": "eth0", "NCCL_SOCKET_IFNAME": "eth0",
                           "UCX_NET_DEVICES": "eth0", "FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1"})
    if leader:
        env += _plain_env({"PYTHONPATH": AUTH_MODULE_DIR})  # the serving modules, for vLLM's --middleware
        env.append(_secret_env(plan, eks, "VLLM_API_KEY", API_KEY_SECRET_KEY))
    env.append(_secret_env(plan, eks, "HF_TOKEN", HF_SECRET_KEY, optional=True))
    return env


def _vllm_container(plan: CorePlan, eks: EksPlan, size: WorkloadSizing, command: list[str], probes: bool,
                    leader: bool = True) -> dict:
    serving = _vllm(plan)
    container = {
        "name": "vllm", "image": serving.image, "command": command,
        "env": _vllm_env(plan, eks, leader),
        "ports": [{"name": "api", "containerPort": serving.port, "protocol": "TCP"}] if leader else [],
        "resources": _resources(plan, size),
        "volumeMounts": [{"name": "dshm", "mountPath": SHM_MOUNT},
                         {"name": "model-cache", "mountPath": MODEL_CACHE_MOUNT},
                         {"name": "home", "mountPath": VLLM_HOME}],
        "securityContext": _vllm_security_context(size),
    }
    if leader:
        container["volumeMounts"].append({"name": "serving-modules", "mountPath": AUTH_MODULE_DIR, "readOnly": True})
    if not container["ports"]:
        del container["ports"]
    if probes:
        container |= _probes("/health", "/health", "api", size.probe)
    return container


def download_command(plan: CorePlan, eks: EksPlan | None = None) -> str:
    """Fetch the weights into the pod's HF cache on its volume (resumes; a no-op when they are complete); a comment
    when they stream from the staged copy instead."""
    if eks is not None and eks.weights is not None:
        return f"# the weights stream from s3://{eks.weights.bucket}/{eks.weights.prefix}/ into GPU memory"
    fetch = (f"from huggingface_hub import snapshot_download; "
             f"snapshot_download({json.dumps(_vllm(plan).model_repo)}, max_workers=16)")
    return f"python3 -c {shlex.quote(fetch)}"


def leader_script(plan: CorePlan, eks: EksPlan) -> str:
    """The LWS leader: weights, Ray head, a wait (bounded by the startup budget) for every pod, the planner's argv."""
    nodes, budget = plan.fit.layout.nodes, eks.startup.timeout_s
    alive = (f'import ray, sys; ray.init(address="auto", logging_level="ERROR"); '
             f'sys.exit(sum(n["Alive"] for n in ray.nodes()) < {nodes})')
    return "\n".join([
        "set -euo pipefail",
        API_KEY_GUARD,  # before the download and Ray: a missing key stops the pod at once
        download_command(plan, eks),
        f'ray start --head --node-ip-address="$VLLM_HOST_IP" --port={RAY_PORT} --disable-usage-stats',
        f"until python3 -c {shlex.quote(alive)} 2>/dev/null; do",
        f"  if (( SECONDS > {budget} )); then",
        f'    echo "nemotron: fewer than {nodes} Ray nodes after {budget} s" >&2; ray status >&2 || true',
        "    exit 1",
        "  fi",
        "  sleep 15",
        "done",
        "ray status",
        f"exec {shlex.join(_vllm(plan).argv)}",
    ])


def worker_script(plan: CorePlan, eks: EksPlan) -> str:
    """An LWS worker: weights, wait for the leader's Ray port, then join it and block (it serves nothing itself).

    $(LWS_LEADER_ADDRESS) is expanded by the kubelet from the variable the LWS controller injects.
    """
    budget = eks.startup.timeout_s
    return "\n".join([
        "set -euo pipefail",
        download_command(plan, eks),
        f"until (exec 3<>/dev/tcp/$(LWS_LEADER_ADDRESS)/{RAY_PORT}) 2>/dev/null; do",
        f'  if (( SECONDS > {budget} )); then echo "nemotron: no Ray head after {budget} s" >&2; exit 1; fi',
        "  sleep 10",
        "done",
        f'exec ray start --address=$(LWS_LEADER_ADDRESS):{RAY_PORT} --block --node-ip-address="$VLLM_HOST_IP" '
        "--disable-usage-stats",
    ])


def _leader_worker_set(plan: CorePlan, eks: EksPlan, size: WorkloadSizing, cache_claim_spec: dict) -> dict:
    n = eks.names

    def template(role: str, container: dict, volumes: list[dict]) -> dict:
        return {"metadata": {"labels": labels(plan, eks) | {ROLE_LABEL: role}},
                "spec": _pod_spec(plan, eks, size, [container], volumes, nim=False)}

    leader = _vllm_container(plan, eks, size, ["bash", "-c", leader_script(plan, eks)], probes=True)
    worker = _vllm_container(plan, eks, size, ["bash", "-c", worker_script(plan, eks)], probes=False, leader=False)
    # The cache: an emptyDir on each node's instance store, or (gp3 fallback) one claim per pod, kept across group
    # restarts so downloads resume.
    cache = [_nvme_cache_volume(size)] if size.cache_on_nvme else []
    claims = {} if size.cache_on_nvme else {
        "volumeClaimTemplates": [{"metadata": {"name": "model-cache"}, "spec": cache_claim_spec}],
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": _metadata(plan, eks, n.leader_worker_set),
        "spec": {
            "replicas": 1,
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {"type": "RollingUpdate",
                                "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0}},
            "leaderWorkerTemplate": {
                "size": size.pods,
                # A pod or container restart recreates the whole group: Ray and NCCL cannot re-admit one member.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": template("leader", leader, [_serving_modules_volume(plan, eks), *cache]),
                "workerTemplate": template("worker", worker, cache),
                **claims,
            },
        },
    }


def _require_eks(plan: CorePlan) -> None:
    if plan.target != "eks" or plan.serving is None:
        raise PlanInputError("plan", plan.stack, "a fitted eks plan (vllm or nim)")
