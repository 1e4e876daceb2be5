"""The model's own metrics on EKS: the stack's CloudWatch agent, rendered from the plan as plain dicts (pure,
validated).

The `amazon-cloudwatch-observability` add-on (components/eks_cluster.py) gives the dashboard GPU metrics only: its
agent cannot scrape vLLM's /metrics, which the planner's API-key middleware guards (planner/serving.py), without the
key in plain text in the add-on's configuration. So every eks stack runs the CloudWatch agent's documented
"Prometheus monitoring on EKS" shape itself (docs/sources.md#cloudwatch-agent-prometheus-eks), in the model's own
namespace, one design for both engines (SCRAPES):

- vLLM: job `vllm`, the serving container `vllm` on its `api` port at /metrics, with the API key mounted from the
  workload's Secret as a bearer `credentials_file`;
- NIM: job `nim`, the NIM container `nim` on its own port `nim` at /v1/metrics, with no credentials and no Secret
  mounted: NIM has no key of its own, the key is the auth-proxy sidecar's, which guards only the Service's port.

The objects:

- a ServiceAccount `<app>-metrics` with a Role that may only get/list/watch pods in the namespace (the scrape's pod
  discovery), bound to it; EKS Pod Identity gives it an IAM role (components/eks_metrics.py) that may only put
  metrics into the stack's namespace and events into the stack's prometheus log group;
- two ConfigMaps, as the pattern names them: the Prometheus scrape config (one job: the namespace's pods, kept only
  when they are the stack's model pods, only the scraped container's named port, only the LWS leader on several
  nodes (workers serve no HTTP)), and the agent's JSON (the same `prometheus` section as the ec2 servers',
  planner/observability.py `prometheus_section`, with the engine's names from ENGINE_METRICS);
- a one-replica Deployment of the pinned agent image on the untainted (system) nodes, hardened: non-root, no
  privilege escalation, no capability, read-only root filesystem with emptyDirs where the agent writes, the
  runtime's seccomp profile, bounded resources;
- a NetworkPolicy admitting nothing to the agent (it serves nothing); the model's own NetworkPolicy admits the
  agent's pods on the scraped port only (planner/targets/eks.py): vLLM's api port, NIM's own port (never the proxy's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from planner.core import CorePlan
from planner.observability import (
    DASHBOARD_PERIOD_S,
    eks_engine_metrics,
    prometheus_log_group,
    prometheus_section,
    stack_namespace,
)
from planner.references import ref
from planner.stack_config import PROJECT

AGENT_IMAGE = ref("cloudwatch-agent-image")
AGENT_CONTAINER = "cloudwatch-agent"
# The image's start script reads every JSON file in /etc/cwagentconfig when it runs in a container; the scrape config
# lies where AWS's prometheus-eks.yaml mounts it.
CWAGENT_CONFIG_DIR = "/etc/cwagentconfig"
CWAGENT_CONFIG_FILE = "cwagentconfig.json"
PROMETHEUS_CONFIG_DIR = "/etc/prometheusconfig"
PROMETHEUS_CONFIG_FILE = "prometheus.yaml"
PROMETHEUS_CONFIG = f"{PROMETHEUS_CONFIG_DIR}/{PROMETHEUS_CONFIG_FILE}"
API_KEY_DIR = "/etc/nemotron-metrics"
API_KEY_FILE_NAME = "api-key"
API_KEY_FILE = f"{API_KEY_DIR}/{API_KEY_FILE_NAME}"
AGENT_HOME = "/opt/aws/amazon-cloudwatch-agent"
# Where the agent writes at start and while it runs (the translated config, its pid file, logs, temporary files):
# emptyDirs, so the root filesystem stays read-only.
AGENT_WRITABLE = {"agent-etc": f"{AGENT_HOME}/etc", "agent-var": f"{AGENT_HOME}/var",
                  "agent-logs": f"{AGENT_HOME}/logs", "tmp": "/tmp"}  # noqa: S108 - the pod's own emptyDir
AGENT_USER = 10001  # the image defines no user; a high uid of the pod's own
# The agent reads its credentials from the SDK's default chain (EKS Pod Identity's container credentials) and its
# region from its config, never from the instance metadata its pod cannot reach.
AGENT_ENV = {"RUN_WITH_IRSA": "True"}
AGENT_RESOURCES = {"requests": {"cpu": "200m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "1000Mi"}}
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"  # "0" on the leader, which serves
SCRAPE_TIMEOUT_S = 10


@dataclass(frozen=True)
class Scrape:
    """Where an engine serves its Prometheus metrics in the pod planner/targets/eks.py renders."""

    container: str  # the container that serves (one node, or the LWS leader)
    port_name: str  # its port's name in the pod spec
    path: str
    bearer_key: bool  # whether the port checks the API key (then mounted as a file)


SCRAPES = {
    # vLLM: the planner's middleware guards every path of the api port (planner/serving.py).
    "vllm": Scrape(container="vllm", port_name="api", path="/metrics", bearer_key=True),
    # NIM: its own port, not the auth proxy's `api` (NVIDIA's NIM observability page: /v1/metrics on the NIM port);
    # NIM checks no key itself.
    "nim": Scrape(container="nim", port_name="nim", path="/v1/metrics", bearer_key=False),
}


@dataclass(frozen=True)
class ModelTarget:
    """What the agent needs to know of the model, handed over by planner/targets/eks.py `render_manifests` (this
    module builds on that one, never the other way round)."""

    app: str  # the stack's DNS label (Names.app)
    namespace: str
    cluster_name: str
    serving_secret: str  # the workload's Secret
    api_key_item: str  # the Secret's key holding the API key
    selector: dict[str, str]  # the labels that pick the model's pods
    annotations: dict[str, str]  # the stack's tags as annotations
    serving_port: int  # the scraped port: vLLM's api port, NIM's own port (not the auth proxy's)
    multi_node: bool  # a LeaderWorkerSet: only the leader (worker-index 0) serves
    node_selector: dict[str, str] | None  # the system pool on a cluster the stack creates; None: any untainted node


@dataclass(frozen=True)
class MetricsAgent:
    """The agent's Kubernetes objects, in apply order (the Secret it reads is the workload's)."""

    service_account: dict
    role: dict
    role_binding: dict
    prometheus_config: dict  # ConfigMap: prometheus.yaml
    agent_config: dict  # ConfigMap: cwagentconfig.json
    deployment: dict
    network_policy: dict  # nothing reaches the agent

    def all(self) -> list[dict]:
        return [self.service_account, self.role, self.role_binding, self.prometheus_config, self.agent_config,
                self.deployment, self.network_policy]


def agent_name(app: str) -> str:
    """The agent's ServiceAccount, Role, RoleBinding, Deployment and NetworkPolicy name: `<app>-metrics`."""
    return f"{app}-metrics"


def agent_selector_labels(app: str) -> dict[str, str]:
    """The labels that pick the agent's pod (its Deployment, its NetworkPolicy, the model's ingress rule). Not the
    model's `app.kubernetes.io/name`, so the model's Service, PodDisruptionBudget and NetworkPolicy never pick it."""
    return {"app.kubernetes.io/name": "nemotron-metrics", "app.kubernetes.io/instance": app}


def agent_labels(model: ModelTarget) -> dict[str, str]:
    return agent_selector_labels(model.app) | {"app.kubernetes.io/component": "metrics-agent",
                                               "app.kubernetes.io/managed-by": "pulumi",
                                               f"{PROJECT}/stack": model.app}


def _metadata(model: ModelTarget, name: str) -> dict:
    return {"name": name, "namespace": model.namespace, "labels": agent_labels(model),
            "annotations": dict(model.annotations)}


def _prometheus_label(label: str) -> str:
    """A Kubernetes pod label as Prometheus's pod discovery names it (every character outside [a-zA-Z0-9_] to _)."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() or c == "_" else "_" for c in label)


def scrape_of(plan: CorePlan) -> Scrape:
    return SCRAPES[plan.engine]


def scrape_config(plan: CorePlan, model: ModelTarget) -> dict:
    """prometheus.yaml: one job (`vllm` or `nim`) over the namespace's pods, kept only for the stack's model pods'
    scraped container on its named port (the LWS leader on several nodes); vLLM's with the API key as a bearer
    credentials file, NIM's with none."""
    scrape, job_name = scrape_of(plan), eks_engine_metrics(plan).job
    keep = [{"source_labels": [_prometheus_label(label) for label in model.selector], "action": "keep",
             "regex": ";".join(model.selector.values())},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "action": "keep",
             "regex": scrape.container},
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "action": "keep",
             "regex": scrape.port_name}]
    if model.multi_node:
        keep.append({"source_labels": [_prometheus_label(LWS_WORKER_INDEX)], "action": "keep", "regex": "0"})
    interval = f"{DASHBOARD_PERIOD_S}s"
    job = {"job_name": job_name, "scrape_interval": interval, "metrics_path": scrape.path, "scheme": "http"}
    if scrape.bearer_key:
        job["authorization"] = {"type": "Bearer", "credentials_file": API_KEY_FILE}
    job |= {"kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [model.namespace]}}],
            "relabel_configs": keep}
    return {"global": {"scrape_interval": interval, "scrape_timeout": f"{SCRAPE_TIMEOUT_S}s"},
            "scrape_configs": [job]}


def agent_config(plan: CorePlan, model: ModelTarget) -> dict:
    """cwagentconfig.json: the region (no instance metadata from the pod) and the same `prometheus` section as the
    ec2 servers', with the engine's names, into the stack's namespace and its prometheus log group."""
    return {"agent": {"region": plan.region},
            "logs": {"metrics_collected": {"prometheus": prometheus_section(plan.stack, PROMETHEUS_CONFIG,
                                                                           model.cluster_name, plan.engine)},
                     "force_flush_interval": 5}}


def render_metrics_agent(plan: CorePlan, model: ModelTarget) -> MetricsAgent:
    """The agent's objects for an eks stack, vLLM or NIM (SCRAPES)."""
    name = agent_name(model.app)
    return MetricsAgent(
        service_account={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(model, name),
                         "automountServiceAccountToken": False},  # the pod asks for its token itself
        role={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _metadata(model, name),
              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
        role_binding={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                      "metadata": _metadata(model, name),
                      "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": model.namespace}],
                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}},
        prometheus_config={"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": _metadata(model, f"{name}-prometheus"),
                           "data": {PROMETHEUS_CONFIG_FILE: yaml.safe_dump(scrape_config(plan, model),
                                                                           sort_keys=False)}},
        agent_config={"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(model, f"{name}-cwagent"),
                      "data": {CWAGENT_CONFIG_FILE: json.dumps(agent_config(plan, model), indent=2)}},
        deployment=_deployment(model, scrape_of(plan).bearer_key),
        network_policy={"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": _metadata(model, name),
                        "spec": {"podSelector": {"matchLabels": agent_selector_labels(model.app)},
                                 "policyTypes": ["Ingress"], "ingress": []}},
    )


def _deployment(model: ModelTarget, api_key: bool) -> dict:
    """The agent's Deployment; `api_key`: mount the API key (vLLM), or no Secret at all (NIM)."""
    name = agent_name(model.app)
    mounts = [{"name": "cwagent-config", "mountPath": CWAGENT_CONFIG_DIR, "readOnly": True},
              {"name": "prometheus-config", "mountPath": PROMETHEUS_CONFIG_DIR, "readOnly": True}]
    if api_key:
        mounts.append({"name": "api-key", "mountPath": API_KEY_DIR, "readOnly": True})
    mounts += [{"name": volume, "mountPath": path} for volume, path in AGENT_WRITABLE.items()]
    container = {
        "name": AGENT_CONTAINER, "image": AGENT_IMAGE,
        "env": [{"name": key, "value": value} for key, value in AGENT_ENV.items()],
        "resources": AGENT_RESOURCES,
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True, "runAsNonRoot": True},
    }
    volumes = [
        {"name": "cwagent-config", "configMap": {"name": f"{name}-cwagent", "defaultMode": 0o444}},
        {"name": "prometheus-config", "configMap": {"name": f"{name}-prometheus", "defaultMode": 0o444}},
        # The API key alone (not the HF token beside it), readable by the agent's group only.
        *([{"name": "api-key", "secret": {"secretName": model.serving_secret, "defaultMode": 0o440,
                                          "items": [{"key": model.api_key_item, "path": API_KEY_FILE_NAME}]}}]
          if api_key else []),
        *({"name": volume, "emptyDir": {"sizeLimit": "256Mi"}} for volume in AGENT_WRITABLE),
    ]
    spec = {
        "serviceAccountName": name,
        # The scrape discovers the model's pods through the Kubernetes API: the only pod of the stack with a token.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {"runAsUser": AGENT_USER, "runAsGroup": AGENT_USER, "fsGroup": AGENT_USER,
                            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    # No GPU toleration: the GPU taint keeps the agent off GPU nodes. On a cluster the stack creates, it is also
    # pinned to the system pool; on an existing cluster any untainted node will do.
    if model.node_selector is not None:
        spec = {"nodeSelector": dict(model.node_selector)} | spec
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(model, name),
        "spec": {"replicas": 1, "selector": {"matchLabels": agent_selector_labels(model.app)},
                 "template": {"metadata": {"labels": agent_labels(model)}, "spec": spec}},
    }


def agent_policy_statements(plan: CorePlan, log_group_arn: str) -> list[dict]:
    """The agent role's inline policy: metrics into the stack's namespace only, events into the stack's prometheus
    log group only (`log_group_arn` without the trailing `:*`); nothing else."""
    group = [log_group_arn, f"{log_group_arn}:*"]
    return [
        {"Sid": "StackMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": stack_namespace(plan.stack)}}},
        {"Sid": "PrometheusLogStreams", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams"], "Resource": group},
        {"Sid": "PrometheusLogEvents", "Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": group},
    ]


def log_group_arn(partition: str, region: str, stack: str) -> str:
    """The stack's prometheus log group as IAM names it (any account: the name is the stack's own)."""
    return f"arn:{partition}:logs:{region}:*:log-group:{prometheus_log_group(stack)}"


def model_ingress(plan: CorePlan, model: ModelTarget) -> list[dict]:
    """The rule the model's NetworkPolicy adds for the agent: its pods, on the scraped port only (vLLM's api port,
    NIM's own port: the agent never needs the auth proxy's)."""
    return [{"from": [{"podSelector": {"matchLabels": agent_selector_labels(model.app)}}],
             "ports": [{"protocol": "TCP", "port": model.serving_port}]}]
