"""A stack's CloudWatch dashboard and alarms, decided from its plan: pure, so the thresholds are tested by hand.

components/observability.py declares exactly what `plan_observability` decides: one dashboard named
`nemotron-deploy-<stack>`, one alarm per watched condition, and where the alarms go (the stack's alert addresses,
the same people as the budget's: planner/budget.py `alert_emails`). The metric names and their sources are in
docs/sources.md#observability.

Where the numbers come from, per target:

- ec2: the CloudWatch agent on each server (its config is rendered into the user data by planner/targets/ec2.py)
  publishes into the stack's own namespace `nemotron-deploy/<stack>`: the NVIDIA GPU plugin's `nvidia_smi_*`
  measurements and vLLM's Prometheus metrics (`vllm:*`); the kernel log goes to a log group whose metric filter
  counts NVIDIA Xid lines (GPU errors).
- eks: Container Insights (the `amazon-cloudwatch-observability` add-on) under `ContainerInsights`, by cluster:
  GPU utilisation and memory, and running pods in the stack's namespace; a cluster the stack creates gets the add-on
  (components/eks_cluster.py). Every eks stack also runs a CloudWatch agent of its own in the model's namespace
  (planner/targets/eks_metrics.py, the "Prometheus monitoring on EKS" pattern) that publishes the engine's metrics
  into the stack's namespace under one table of names per engine (ENGINE_METRICS), the same dashboard widgets for
  both: vLLM's /metrics on its api port, with the API key mounted from the workload's Secret as a file (the add-on's
  agent could only carry the key in plain text in its configuration); NIM's /v1/metrics on the NIM container's own
  port (job `nim`, no key: the API key is the auth proxy's, which guards only the Service's port).
- jumpstart: SageMaker's own endpoint metrics: `AWS/SageMaker` (Invocations, ModelLatency) and
  `/aws/sagemaker/Endpoints` (GPUUtilization, GPUMemoryUtilization), by endpoint and variant.

Alarms (thresholds derived from the plan):

- not-ready: no serving metric for the whole startup budget (plan.ec2/plan.eks startup budget; for JumpStart the
  model download plus the container health-check timeouts), in periods of ALARM_PERIOD_S, missing data breaching.
- gpu-xid (ec2): one or more Xid lines in the kernel log within ALARM_PERIOD_S.
- gpu-error (jumpstart, eks): one or more CUDA, ECC, NCCL or Xid error lines in the server's container log within
  ALARM_PERIOD_S: the endpoint's log group (SageMaker publishes no Xid metric); on EKS the containers' log group the
  add-on's Fluent Bit fills on a cluster the stack creates (Container Insights publishes no Xid count;
  docs/sources.md#cloudwatch-observability-addon).
- idle: not one request served for IDLE_S while the stack runs (its GPU metric is present): a forgotten evaluation.
  The requests counter is the engine's (ENGINE_METRICS): vLLM's request_success_total; NIM publishes none, so its
  finished requests are counted as e2e_request_latency_seconds_count.
- spend: the spend so far, estimated as the hours since the planned start (expiry - TTL) x the plan's $/hour, past
  SPEND_ALARM_FRACTION of the budget limit (planner/budget.py: the plan's max spend, rounded up). Absent without
  a price.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from planner.budget import alert_emails, plan_budget
from planner.core import CorePlan
from planner.errors import PlanInputError
from planner.stack_config import PROJECT

DASHBOARD_PERIOD_S = 60
ALARM_PERIOD_S = 300
# CloudWatch refuses an alarm whose evaluation periods x period exceed one day (periods under an hour).
MAX_ALARM_WINDOW_S = 24 * 3600
IDLE_S = 3600
SPEND_ALARM_FRACTION = 0.8
XID_METRIC = "gpu_xid_errors"
# Requests served while the stack runs (heartbeat present); 1, never alarming, once it is gone.
IDLE_EXPRESSION = "IF(FILL(heartbeat, 0) > 0, FILL(m1, 0), 1)"
XID_FILTER_PATTERN = '"NVRM: Xid"'  # the kernel's line for every NVIDIA Xid (GPU error) event
# jumpstart: SageMaker publishes no Xid metric and its host's kernel log is out of reach; the container's own log
# (the endpoint's log group) carries CUDA's and NCCL's error lines when a GPU fails under the server.
GPU_ERROR_METRIC = "gpu_errors"
GPU_ERROR_FILTER_PATTERN = '?"CUDA error" ?"uncorrectable ECC" ?"NCCL error" ?"Xid"'

# ec2: names the CloudWatch agent publishes (NVIDIA plugin: nvidia_smi_<measurement>; Prometheus: vLLM's names,
# ENGINE_METRICS below)
EC2_GPU_UTIL = "nvidia_smi_utilization_gpu"
EC2_GPU_MEMORY = "nvidia_smi_memory_used"  # MiB (utilization_memory is the share of time memory was busy)
EC2_GPU_MEASUREMENTS = ("utilization_gpu", "utilization_memory", "memory_used", "memory_total")


@dataclass(frozen=True)
class EngineMetrics:
    """An inference engine's Prometheus names, as its scrape job publishes them into the stack's namespace (one
    dimension: job), by role: what the dashboard and the idle alarm read, and everything the agent keeps (EMF)."""

    engine: str  # shown in titles: vLLM | NIM
    job: str  # the scrape job; the agent's only dimension on these metrics
    kv_cache: str  # gauge: KV-cache usage, 1 = 100%
    running: str  # gauge: requests running
    waiting: str  # gauge: requests waiting
    ttft: str  # histogram (_sum and _count): time to first token
    itl: str  # histogram (_sum and _count): inter-token latency (time per output token)
    generation_tokens: str  # counter: the agent publishes the delta per scrape
    requests: str  # counter of finished requests (the idle alarm's): the agent publishes the delta per scrape
    requests_meaning: str  # what `requests` counts, for the alarm's derivation
    gauges: tuple[str, ...]  # everything the agent keeps, by Prometheus type
    counters: tuple[str, ...]
    histograms: tuple[str, ...]  # each kept as its _sum and _count

    @property
    def dimensions(self) -> tuple[tuple[str, str], ...]:
        return (("job", self.job),)

    def metric_selectors(self) -> list[str]:
        """The EMF declaration's metric_selectors: exactly the engine's gauges, counters and histograms' _sum/_count."""
        return [f"^{name}$" for name in (*self.gauges, *self.counters,
                                         *(f"{h}_(sum|count)" for h in self.histograms))]


# vLLM's names (docs/sources.md#observability) and NIM's (NVIDIA's "Observability for NVIDIA NIM for LLMs",
# docs/sources.md#cloudwatch-agent-prometheus-eks): NIM publishes no request_success_total, so its idle alarm counts
# finished requests as e2e_request_latency_seconds_count (one sample per finished request).
ENGINE_METRICS = {
    "vllm": EngineMetrics(
        engine="vLLM", job="vllm", kv_cache="vllm:kv_cache_usage_perc", running="vllm:num_requests_running",
        waiting="vllm:num_requests_waiting", ttft="vllm:time_to_first_token_seconds",
        itl="vllm:inter_token_latency_seconds", generation_tokens="vllm:generation_tokens_total",
        requests="vllm:request_success_total", requests_meaning="successful request",
        gauges=("vllm:kv_cache_usage_perc", "vllm:num_requests_running", "vllm:num_requests_waiting"),
        counters=("vllm:generation_tokens_total", "vllm:request_success_total"),
        histograms=("vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds")),
    "nim": EngineMetrics(
        engine="NIM", job="nim", kv_cache="gpu_cache_usage_perc", running="num_requests_running",
        waiting="num_requests_waiting", ttft="time_to_first_token_seconds", itl="time_per_output_token_seconds",
        generation_tokens="generation_tokens_total", requests="e2e_request_latency_seconds_count",
        requests_meaning="finished request (e2e_request_latency_seconds_count)",
        gauges=("gpu_cache_usage_perc", "num_requests_running", "num_requests_waiting", "num_request_max"),
        counters=("prompt_tokens_total", "generation_tokens_total"),
        histograms=("time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds",
                    "request_prompt_tokens", "request_generation_tokens")),
}
VLLM_JOB = ENGINE_METRICS["vllm"].job  # the ec2 servers' scrape job
# eks: Container Insights (enhanced observability) names, by ClusterName
CONTAINER_INSIGHTS = "ContainerInsights"
EKS_GPU_UTIL = "node_gpu_utilization"
EKS_GPU_MEMORY = "node_gpu_memory_utilization"
EKS_RUNNING_PODS = "namespace_number_of_running_pods"
# jumpstart: SageMaker's endpoint metrics
SAGEMAKER = "AWS/SageMaker"
SAGEMAKER_ENDPOINTS = "/aws/sagemaker/Endpoints"


@dataclass(frozen=True)
class Metric:
    """One CloudWatch metric: namespace, name, dimensions and the statistic read."""

    namespace: str
    name: str
    stat: str
    dimensions: tuple[tuple[str, str], ...] = ()

    def widget_row(self, **options) -> list:
        row: list = [self.namespace, self.name]
        for key, value in self.dimensions:
            row += [key, value]
        return row + [{"stat": self.stat} | options]


@dataclass(frozen=True)
class Alarm:
    """One CloudWatch alarm: on `metric` alone, or on `expression` over it (the metric is then `m1`)."""

    key: str  # not-ready | gpu-xid | idle | spend
    name: str
    description: str
    metric: Metric
    comparison: str
    threshold: float
    period_s: int
    evaluation_periods: int
    treat_missing_data: str
    derivation: str  # how the threshold follows from the plan, for a person reading the plan
    expression: str | None = None  # metric math over `m1` (the metric) and `heartbeat`
    heartbeat: Metric | None = None  # present every minute while the stack runs; for the expression

    def queries(self) -> tuple[tuple[str, Metric], ...]:
        """The metrics an expression alarm reads, by id."""
        return (("m1", self.metric),) + ((("heartbeat", self.heartbeat),) if self.heartbeat else ())

    def to_json(self) -> dict:
        entry = {"name": self.name, "metric": f"{self.metric.namespace} {self.metric.name} ({self.metric.stat})",
                 "comparison": self.comparison, "threshold": self.threshold, "period_s": self.period_s,
                 "evaluation_periods": self.evaluation_periods, "treat_missing_data": self.treat_missing_data,
                 "derivation": self.derivation}
        return entry | ({"expression": self.expression} if self.expression else {})


@dataclass(frozen=True)
class ErrorLogs:
    """A log group whose GPU-error lines a metric filter counts into the stack's namespace (as `metric_name`).

    ec2: the kernel log the agent ships, declared by the stack with the agent's other group (vLLM's EMF events);
    jumpstart: the endpoint's own log group, which components/jumpstart.py declares with the endpoint."""

    key: str  # the metric filter's resource name suffix: xid (ec2), gpu-errors (jumpstart, eks)
    log_group: str
    filter_pattern: str
    metric_name: str
    create_groups: tuple[tuple[str, str], ...]  # (resource suffix, group name) StackObservability declares
    retention_days: int = 7


@dataclass(frozen=True)
class ObservabilityPlan:
    """The stack's dashboard, alarms and alert addresses."""

    stack: str
    region: str
    namespace: str  # the stack's own namespace (what the ec2 agent publishes into)
    dashboard_name: str
    widgets: tuple[dict, ...]
    alarms: tuple[Alarm, ...]
    alert_emails: tuple[str, ...]
    error_logs: ErrorLogs | None = None
    notes: tuple[str, ...] = field(default=())

    def body(self) -> dict:
        return {"widgets": [dict(w) for w in self.widgets]}

    def body_json(self) -> str:
        return json.dumps(self.body(), sort_keys=True)

    def dashboard_url(self) -> str:
        return (f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region={self.region}"
                f"#dashboards/dashboard/{self.dashboard_name}")

    def to_json(self) -> dict:
        return {"dashboard": self.dashboard_name, "namespace": self.namespace,
                "widgets": [w["properties"]["title"] for w in self.widgets],
                "alarms": [a.to_json() for a in self.alarms], "alert_emails": list(self.alert_emails),
                "notes": list(self.notes)}


def stack_namespace(stack: str) -> str:
    return f"{PROJECT}/{stack}"


def dashboard_name(stack: str) -> str:
    return f"{PROJECT}-{stack}"


def alarm_name(stack: str, key: str) -> str:
    return f"{PROJECT}-{stack}-{key}"


def log_group_prefix(stack: str) -> str:
    """Every log group of the stack's agent lies under this prefix (its IAM policy allows exactly these)."""
    return f"/{PROJECT}/{stack}/"


def kernel_log_group(stack: str) -> str:
    return f"{log_group_prefix(stack)}kernel"


def prometheus_log_group(stack: str) -> str:
    """Where the agent writes vLLM's scraped metrics as embedded-metric-format events (CloudWatch extracts them)."""
    return f"{log_group_prefix(stack)}prometheus"


def cloudwatch_agent_parameter(stack: str) -> str:
    """The SSM parameter holding an ec2 stack's agent config; the AmazonCloudWatch- prefix is the one
    CloudWatchAgentServerPolicy lets the agent read."""
    return f"AmazonCloudWatch-{PROJECT}-{stack}"


def cloudwatch_agent_config(stack: str, prometheus_config_path: str) -> dict:
    """The CloudWatch agent config of an ec2 stack's servers: NVIDIA GPU measurements rolled up to no dimension,
    the kernel log (for Xid lines) and vLLM's Prometheus metrics, all into the stack's namespace."""
    namespace = stack_namespace(stack)
    return {
        "agent": {"metrics_collection_interval": DASHBOARD_PERIOD_S},
        "metrics": {"namespace": namespace, "aggregation_dimensions": [[]],
                    "metrics_collected": {"nvidia_gpu": {"measurement": list(EC2_GPU_MEASUREMENTS)}}},
        "logs": {
            "logs_collected": {"files": {"collect_list": [{
                "file_path": "/var/log/kern.log", "log_group_name": kernel_log_group(stack),
                "log_stream_name": "{instance_id}"}]}},
            "metrics_collected": {"prometheus": prometheus_section(stack, prometheus_config_path)},
        },
    }


def prometheus_section(stack: str, prometheus_config_path: str, cluster_name: str | None = None,
                       engine: str = "vllm") -> dict:
    """The agent's `logs.metrics_collected.prometheus` section, the same on ec2 and eks: the scrape config's path,
    the stack's prometheus log group, and the engine's metrics (ENGINE_METRICS: job `vllm` or `nim`) as EMF into the
    stack's namespace. On eks the cluster is named, so the agent never asks EC2 for it (its pod cannot reach the
    instance metadata)."""
    names = ENGINE_METRICS[engine]
    section = {"prometheus_config_path": prometheus_config_path, "log_group_name": prometheus_log_group(stack),
               "emf_processor": {"metric_namespace": stack_namespace(stack), "metric_declaration": [{
                   "source_labels": ["job"], "label_matcher": f"^{names.job}$",
                   "dimensions": [[name for name, _ in names.dimensions]],
                   "metric_selectors": names.metric_selectors()}]}}
    return ({"cluster_name": cluster_name} if cluster_name else {}) | section


def startup_alarm_periods(budget_s: int) -> int:
    """Periods of ALARM_PERIOD_S covering the startup budget, within CloudWatch's one-day window."""
    return max(1, min(math.ceil(budget_s / ALARM_PERIOD_S), MAX_ALARM_WINDOW_S // ALARM_PERIOD_S))


def planned_start_epoch(plan: CorePlan) -> int:
    """When the stack was planned to start: its expiry minus its TTL, in seconds since the epoch."""
    return round(plan.expires_at.timestamp() - plan.config.ttl_hours * 3600)


def plan_observability(plan: CorePlan, ec2=None, eks=None, jumpstart=None) -> ObservabilityPlan:
    """The dashboard and alarms of a fitted cloud stack; pass the target's plan (plan.ec2, plan.eks, plan.jumpstart)."""
    if plan.target == "ec2" and ec2 is not None:
        sources = _ec2(plan, ec2.startup.timeout_s)
    elif plan.target == "eks" and eks is not None:
        sources = _eks(plan, eks)
    elif plan.target == "jumpstart" and jumpstart is not None:
        sources = _jumpstart(plan, jumpstart)
    else:
        raise PlanInputError("plan", plan.stack, "a fitted ec2, eks or resolved jumpstart plan")
    widgets = [*sources.widgets, _spend_widget(plan, sources.heartbeat)]
    alarms = list(sources.alarms)
    spend = _spend_alarm(plan, sources.heartbeat)
    if spend is not None:
        alarms.append(spend)
    notes = list(sources.notes)
    if plan.cost.usd_per_hour is None:
        notes.append(f"no price for {plan.instance.name}: no spend alarm (the budget still alerts)")
    elif plan.peak_nodes > plan.config.nodes:
        notes.append(f"the spend estimate counts {plan.config.nodes} instance(s), the budget limit {plan.peak_nodes} "
                     "(the scaling maximum): the spend alarm fires late or not at all when the stack scales out")
    return ObservabilityPlan(plan.stack, plan.region, stack_namespace(plan.stack), dashboard_name(plan.stack),
                             tuple(_placed(widgets)), tuple(alarms), alert_emails(plan.config), sources.error_logs,
                             tuple(notes))


@dataclass(frozen=True)
class _Sources:
    widgets: tuple[dict, ...]
    alarms: tuple[Alarm, ...]
    heartbeat: Metric  # a metric present every minute while the stack runs (its GPU utilisation)
    error_logs: ErrorLogs | None = None
    notes: tuple[str, ...] = ()


def _graph(plan: CorePlan, title: str, rows: list[list], **properties) -> dict:
    return {"type": "metric", "width": 12, "height": 6, "properties": {
        "title": title, "region": plan.region, "view": "timeSeries", "period": DASHBOARD_PERIOD_S,
        "metrics": rows} | properties}


def _placed(widgets: list[dict]) -> list[dict]:
    """Two widgets per row, in order."""
    return [w | {"x": 12 * (i % 2), "y": 6 * (i // 2)} for i, w in enumerate(widgets)]


def _histogram_mean(namespace: str, name: str, dimensions: tuple[tuple[str, str], ...], ident: str,
                    label: str) -> list[list]:
    total, count = f"{ident}s", f"{ident}c"
    return [[{"expression": f"{total} / {count}", "label": label, "id": ident}],
            Metric(namespace, f"{name}_sum", "Sum", dimensions).widget_row(id=total, visible=False),
            Metric(namespace, f"{name}_count", "Sum", dimensions).widget_row(id=count, visible=False)]


def _engine_widgets(plan: CorePlan, ns: str, names: EngineMetrics) -> tuple[dict, ...]:
    """The engine's own metrics as the agent publishes them into the stack's namespace (job `vllm` or `nim`): the
    same widgets on ec2 (vLLM) and eks (vLLM or NIM), by ENGINE_METRICS."""
    dims = names.dimensions
    return (
        _graph(plan, f"{names.engine} KV-cache usage (fraction)",
               [Metric(ns, names.kv_cache, "Maximum", dims).widget_row()]),
        _graph(plan, "Requests running and waiting", [Metric(ns, names.running, "Average", dims).widget_row(),
                                                      Metric(ns, names.waiting, "Average", dims).widget_row()]),
        _graph(plan, "TTFT and inter-token latency (s)",
               _histogram_mean(ns, names.ttft, dims, "ttft", "time to first token")
               + _histogram_mean(ns, names.itl, dims, "itl", "inter-token latency")),
        _graph(plan, "Generation tokens/s",
               [[{"expression": f"tokens / {DASHBOARD_PERIOD_S}", "label": "tokens/s", "id": "tps"}],
                Metric(ns, names.generation_tokens, "Sum", dims).widget_row(id="tokens", visible=False)]),
    )


def _idle_alarm(stack: str, ns: str, names: EngineMetrics, gpu: Metric, running: str) -> Alarm:
    """Not one request finished for IDLE_S while `gpu` reports (the stack runs): the engine's requests counter."""
    return Alarm("idle", alarm_name(stack, "idle"),
                 f"{stack}: no request served for {IDLE_S // 60} min while {running} run: a forgotten evaluation?",
                 Metric(ns, names.requests, "Sum", names.dimensions), "LessThanThreshold", 1, IDLE_S, 1,
                 "notBreaching", f"fewer than 1 {names.requests_meaning} in {IDLE_S} s",
                 expression=IDLE_EXPRESSION, heartbeat=_present(gpu))


def _ec2(plan: CorePlan, budget_s: int) -> _Sources:
    ns, stack = stack_namespace(plan.stack), plan.stack
    gpu = Metric(ns, EC2_GPU_UTIL, "Average")
    vllm = ENGINE_METRICS["vllm"]
    running = Metric(ns, vllm.running, "SampleCount", vllm.dimensions)
    xid = Metric(ns, XID_METRIC, "Sum")
    periods = startup_alarm_periods(budget_s)
    widgets = (
        _graph(plan, "GPU utilisation (%) and memory used (MiB)", [
            Metric(ns, EC2_GPU_UTIL, "Average").widget_row(),
            Metric(ns, EC2_GPU_MEMORY, "Average").widget_row(yAxis="right")]),
        *_engine_widgets(plan, ns, vllm),
    )
    alarms = (
        Alarm("not-ready", alarm_name(stack, "not-ready"),
              f"{stack}: vLLM published no metric for the startup budget ({budget_s} s): the server is not ready",
              running, "LessThanThreshold", 1, ALARM_PERIOD_S, periods, "breaching",
              f"startup budget {budget_s} s = {periods} periods of {ALARM_PERIOD_S} s"),
        Alarm("gpu-xid", alarm_name(stack, "gpu-xid"),
              f"{stack}: the kernel logged an NVIDIA Xid (GPU error) on a server", xid,
              "GreaterThanOrEqualToThreshold", 1, ALARM_PERIOD_S, 1, "notBreaching",
              "any Xid line in the kernel log"),
        _idle_alarm(stack, ns, vllm, gpu, "the servers"),
    )
    logs = ErrorLogs("xid", kernel_log_group(stack), XID_FILTER_PATTERN, XID_METRIC,
                     (("kernel-log", kernel_log_group(stack)), ("prometheus-log", prometheus_log_group(stack))))
    return _Sources(widgets, alarms, gpu, logs)


def eks_engine_metrics(plan: CorePlan) -> EngineMetrics:
    """The names an eks stack's own metrics agent (planner/targets/eks_metrics.py) scrapes and publishes: vLLM's
    from its api port, NIM's from the NIM container's own port at /v1/metrics (behind no key: the key is the auth
    proxy's, which the agent bypasses on the pod network)."""
    if plan.target != "eks" or plan.engine not in ENGINE_METRICS:
        raise PlanInputError("plan", plan.stack, "an eks plan serving vllm or nim")
    return ENGINE_METRICS[plan.engine]


def _eks(plan: CorePlan, eks) -> _Sources:
    cluster, stack, budget_s = eks.cluster_name, plan.stack, eks.startup.timeout_s
    namespace, ns = eks.names.namespace, stack_namespace(plan.stack)
    names = eks_engine_metrics(plan)
    by_cluster = (("ClusterName", cluster),)
    gpu = Metric(CONTAINER_INSIGHTS, EKS_GPU_UTIL, "Average", by_cluster)
    pods = Metric(CONTAINER_INSIGHTS, EKS_RUNNING_PODS, "Minimum",
                  (("Namespace", namespace), ("ClusterName", cluster)))
    periods = startup_alarm_periods(budget_s)
    widgets = (
        _graph(plan, "GPU utilisation and memory (%)",
               [gpu.widget_row(), Metric(CONTAINER_INSIGHTS, EKS_GPU_MEMORY, "Average", by_cluster).widget_row()]),
        _graph(plan, f"Running pods in {namespace}", [pods.widget_row()]),
        *_engine_widgets(plan, ns, names),
    )
    not_ready = Alarm(
        "not-ready", alarm_name(stack, "not-ready"),
        f"{stack}: no running pod in {namespace} for the startup budget ({budget_s} s)",
        pods, "LessThanThreshold", 1, ALARM_PERIOD_S, periods, "breaching",
        f"startup budget {budget_s} s = {periods} periods of {ALARM_PERIOD_S} s")
    idle = _idle_alarm(stack, ns, names, gpu, "the GPUs report")
    alarms: tuple[Alarm, ...] = (not_ready, idle)
    logs = None
    if eks.settings.cluster_name is None:  # the add-on's Fluent Bit ships the containers' output (a cluster we create)
        alarms = (not_ready, _gpu_error_alarm(stack, "a model container logged"), idle)
        logs = ErrorLogs("gpu-errors", container_insights_application_log_group(cluster), GPU_ERROR_FILTER_PATTERN,
                         GPU_ERROR_METRIC, ())
    if plan.engine == "nim":
        source = (f"NIM's own metrics are scraped by the stack's CloudWatch agent in {namespace} from the NIM "
                  "container's port at /v1/metrics (no key: the API-key proxy guards only the Service's port); NIM "
                  "publishes no request_success_total, so the idle alarm counts finished requests as "
                  "e2e_request_latency_seconds_count")
    else:
        source = (f"vLLM's own metrics are scraped by the stack's CloudWatch agent in {namespace} (the API key read "
                  "from the workload's Secret as a file)")
    notes = [f"eks: {source}; the agent starts once the model serves, so the not-ready alarm (running pods) watches "
             "the first start, and a model lost later shows as the idle alarm"]
    if eks.settings.cluster_name is not None:
        notes.append(f"eks: the existing cluster {cluster} must run the amazon-cloudwatch-observability add-on for "
                     "the GPU widgets and alarms; the stack installs it only on a cluster it creates")
        notes.append(f"eks: the existing cluster {cluster} must run the eks-pod-identity-agent add-on for the "
                     "metrics agent's credentials; the stack installs it only on a cluster it creates")
        notes.append(f"eks: no GPU-error alarm on the existing cluster {cluster}: it reads the containers' log group "
                     "that the add-on's Fluent Bit fills on a cluster the stack creates")
    return _Sources(widgets, alarms, gpu, logs, notes=tuple(notes))


def container_insights_application_log_group(cluster: str) -> str:
    """Where the add-on's Fluent Bit sends the containers' output (docs/sources.md#cloudwatch-observability-addon)."""
    return f"/aws/containerinsights/{cluster}/application"


def _gpu_error_alarm(stack: str, who: str) -> Alarm:
    """CUDA, ECC, NCCL or Xid lines counted by the GPU-error metric filter (jumpstart, eks)."""
    return Alarm("gpu-error", alarm_name(stack, "gpu-error"),
                 f"{stack}: {who} a CUDA, ECC, NCCL or Xid error",
                 Metric(stack_namespace(stack), GPU_ERROR_METRIC, "Sum"), "GreaterThanOrEqualToThreshold", 1,
                 ALARM_PERIOD_S, 1, "notBreaching", "any GPU error line in the server's log group")


def _jumpstart(plan: CorePlan, spec) -> _Sources:
    stack = plan.stack
    dims = (("EndpointName", spec.endpoint_name), ("VariantName", spec.variant_name))
    gpu = Metric(SAGEMAKER_ENDPOINTS, "GPUUtilization", "Average", dims)
    invocations = Metric(SAGEMAKER, "Invocations", "Sum", dims)
    budget_s = spec.timeouts.download_s + spec.timeouts.startup_health_check_s
    periods = startup_alarm_periods(budget_s)
    widgets = (
        _graph(plan, "GPU utilisation and memory (%)",
               [gpu.widget_row(), Metric(SAGEMAKER_ENDPOINTS, "GPUMemoryUtilization", "Average", dims).widget_row()]),
        _graph(plan, "Invocations", [invocations.widget_row()]),
        _graph(plan, "Model latency (microseconds)", [Metric(SAGEMAKER, "ModelLatency", "Average", dims).widget_row(),
                                                      Metric(SAGEMAKER, "ModelLatency", "p90", dims).widget_row()]),
    )
    alarms = (
        Alarm("not-ready", alarm_name(stack, "not-ready"),
              f"{stack}: the endpoint published no GPU metric within its startup timeouts ({budget_s} s)",
              Metric(SAGEMAKER_ENDPOINTS, "GPUUtilization", "SampleCount", dims), "LessThanThreshold", 1,
              ALARM_PERIOD_S, periods, "breaching",
              f"download {spec.timeouts.download_s} s + health check {spec.timeouts.startup_health_check_s} s = "
              f"{budget_s} s = {periods} periods of {ALARM_PERIOD_S} s"),
        _gpu_error_alarm(stack, "the endpoint's container logged"),
        Alarm("idle", alarm_name(stack, "idle"),
              f"{stack}: no invocation for {IDLE_S // 60} min while the endpoint runs: a forgotten evaluation?",
              invocations, "LessThanThreshold", 1, IDLE_S, 1, "notBreaching",
              f"fewer than 1 invocation in {IDLE_S} s",
              expression=IDLE_EXPRESSION, heartbeat=_present(gpu)),
    )
    logs = ErrorLogs("gpu-errors", spec.log_group_name, GPU_ERROR_FILTER_PATTERN, GPU_ERROR_METRIC, ())
    return _Sources(widgets, alarms, gpu, logs)


def _present(metric: Metric) -> Metric:
    """The same metric counted (SampleCount): above 0 whenever it was published, whatever its value."""
    return Metric(metric.namespace, metric.name, "SampleCount", metric.dimensions)


def _spend_expression(plan: CorePlan, ident: str) -> str:
    """Dollars spent so far: hours since the planned start x the plan's $/hour, at each datapoint of `ident`."""
    return f"(EPOCH({ident}) - {planned_start_epoch(plan)}) / 3600 * {plan.cost.usd_per_hour:g}"


def _spend_widget(plan: CorePlan, heartbeat: Metric) -> dict:
    limit = plan_budget(plan).limit_usd
    if plan.cost.usd_per_hour is None:
        rows = [heartbeat.widget_row(label="running (no price: spend unknown)")]
    else:
        rows = [[{"expression": _spend_expression(plan, "heartbeat"), "label": "spend so far (USD, estimate)",
                  "id": "spend"}],
                heartbeat.widget_row(id="heartbeat", visible=False)]
    return _graph(plan, f"Spend so far against the plan's maximum (${limit:,})", rows,
                  annotations={"horizontal": [{"label": "budget limit", "value": limit},
                                              {"label": f"{SPEND_ALARM_FRACTION:.0%} alarm",
                                               "value": round(SPEND_ALARM_FRACTION * limit, 2)}]})


def _spend_alarm(plan: CorePlan, heartbeat: Metric) -> Alarm | None:
    if plan.cost.usd_per_hour is None:
        return None
    limit = plan_budget(plan).limit_usd
    threshold = round(SPEND_ALARM_FRACTION * limit, 2)
    return Alarm("spend", alarm_name(plan.stack, "spend"),
                 f"{plan.stack}: estimated spend past {SPEND_ALARM_FRACTION:.0%} of the budget (${threshold:,} of "
                 f"${limit:,})", heartbeat, "GreaterThanThreshold", threshold, ALARM_PERIOD_S, 1, "notBreaching",
                 f"{SPEND_ALARM_FRACTION:g} x budget limit ${limit:,} (max spend over the TTL, rounded up); spend = "
                 f"hours since the planned start x ${plan.cost.usd_per_hour:g}/h",
                 expression=_spend_expression(plan, "m1"))
