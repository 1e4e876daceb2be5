"""The model's own metrics on EKS: the stack's CloudWatch agent (planner/targets/eks_metrics.py,
components/eks_metrics.py), through the offline engine and on the rendered dicts. vLLM: a scrape of the model pods'
api port only, with the API key as a file that no rendered text carries. NIM: a scrape of the NIM container's own port
at /v1/metrics, with no credentials and no Secret mounted. Both: an IAM role through Pod Identity that may put metrics
into the stack's namespace and events into its prometheus log group and nothing else; the model's NetworkPolicy
admitting the agent on the scraped port only; schema and checkov checks; the dashboard's widgets and idle alarm under
the engine's names (planner/observability.py ENGINE_METRICS)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from planner.observability import (
    ALARM_PERIOD_S,
    ENGINE_METRICS,
    IDLE_EXPRESSION,
    VLLM_JOB,
    plan_observability,
    prometheus_log_group,
    stack_namespace,
)
from planner.policy import check_resources
from planner.targets.eks import API_KEY_SECRET_KEY, AUTH_PROXY_PORT, CLIENT_LABEL, pod_templates, selector_labels
from planner.targets.eks_metrics import (
    API_KEY_FILE,
    CWAGENT_CONFIG_DIR,
    CWAGENT_CONFIG_FILE,
    PROMETHEUS_CONFIG,
    PROMETHEUS_CONFIG_DIR,
    PROMETHEUS_CONFIG_FILE,
    agent_selector_labels,
)
from tests.components import runs
from tests.eks import cases
from tests.eks.cases import declared_manifest, kubernetes_version, manifests_of, validate
from tests.eks.workloads import plan_of

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
VLLM_VARIANTS = ("eks-vllm", "two-node-vllm")
VARIANTS = (*VLLM_VARIANTS, "eks-nim")
RUN_STACKS = ("eks-vllm", "eks-nim")  # the shipped stacks, through the offline engine
# NVIDIA's "Observability for NVIDIA NIM for LLMs" (docs/sources.md#cloudwatch-agent-prometheus-eks), by type
NIM_GAUGES = ("gpu_cache_usage_perc", "num_requests_running", "num_requests_waiting", "num_request_max")
NIM_COUNTERS = ("prompt_tokens_total", "generation_tokens_total")
NIM_HISTOGRAMS = ("time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds",
                  "request_prompt_tokens", "request_generation_tokens")
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
# Every check checkov may fail on the agent, each accepted with its reason in checkov_skips.yaml (tests/eks/
# test_checkov.py holds the skips to the findings): image tag not digest, pull policy, the API token kubernetes_sd
# needs, no health endpoint for probes.
ACCEPTED_CHECKOV = {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_38", "CKV_K8S_8", "CKV_K8S_9"}


def agent_of(variant: str):
    agent = manifests_of(plan_of(variant), hf_token=True)
    return {m["kind"] + ("/" + m["metadata"]["name"] if m["kind"] == "ConfigMap" else ""): m
            for m in agent.metrics_agent}


def scrape(variant: str) -> dict:
    app = plan_of(variant).eks.names.app
    return yaml.safe_load(agent_of(variant)[f"ConfigMap/{app}-metrics-prometheus"]["data"][PROMETHEUS_CONFIG_FILE])


def cwagent(variant: str) -> dict:
    app = plan_of(variant).eks.names.app
    return json.loads(agent_of(variant)[f"ConfigMap/{app}-metrics-cwagent"]["data"][CWAGENT_CONFIG_FILE])


def kept(job: dict, target: dict[str, str]) -> bool:
    """Whether Prometheus keeps a discovered target: every `keep` rule's joined source labels fully match its regex."""
    for rule in job["relabel_configs"]:
        assert rule["action"] == "keep", rule
        value = ";".join(target.get(label, "") for label in rule["source_labels"])
        if not re.fullmatch(rule["regex"], value):
            return False
    return True


def discovered(labels: dict[str, str], container: str, port_name: str) -> dict[str, str]:
    """A target as pod discovery describes it: the pod's labels (sanitised), the container and its port name."""
    target = {"__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in labels.items()}
    return target | {"__meta_kubernetes_pod_container_name": container,
                     "__meta_kubernetes_pod_container_port_name": port_name}


# ------------------------------------------------------------------------------------------------- the scrape


@pytest.mark.parametrize("variant", VLLM_VARIANTS)
def test_the_scrape_keeps_only_the_model_pods_api_port_in_the_namespace_with_bearer_credentials(variant):
    plan = plan_of(variant)
    (job,) = scrape(variant)["scrape_configs"]
    assert job["job_name"] == VLLM_JOB == "vllm" and job["metrics_path"] == "/metrics"
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [plan.eks.names.namespace]}}]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": API_KEY_FILE}
    # the model's serving container really has a port named api (what the Service targets)
    workload = manifests_of(plan).workload
    serving = pod_templates(workload)[0]  # the Deployment's pod, or the LWS leader
    container = serving["spec"]["containers"][0]
    assert container["name"] == "vllm" and [p["name"] for p in container["ports"]] == ["api"]
    model = serving["metadata"]["labels"] | ({"leaderworkerset.sigs.k8s.io/worker-index": "0"}
                                             if plan.eks.multi_node else {})
    assert kept(job, discovered(model, "vllm", "api"))
    assert not kept(job, discovered(model, "vllm", "metrics"))  # another port of the same container
    assert not kept(job, discovered(model, "sidecar", "api"))  # another container
    assert not kept(job, discovered(agent_of(variant)["Deployment"]["spec"]["template"]["metadata"]["labels"],
                                    "cloudwatch-agent", "api"))
    other_stack = model | {"app.kubernetes.io/instance": "someone-else"}
    assert not kept(job, discovered(other_stack, "vllm", "api"))
    if plan.eks.multi_node:  # workers serve no HTTP
        assert not kept(job, discovered(model | {"leaderworkerset.sigs.k8s.io/worker-index": "1"}, "vllm", "api"))


def test_the_nim_scrape_keeps_only_the_model_pods_nim_port_at_v1_metrics_without_credentials():
    plan = plan_of("eks-nim")
    (job,) = scrape("eks-nim")["scrape_configs"]
    assert job["job_name"] == ENGINE_METRICS["nim"].job == "nim" and job["metrics_path"] == "/v1/metrics"
    assert job["scheme"] == "http" and "authorization" not in job and "basic_auth" not in job
    assert not [key for key in job if "credentials" in key or "token" in key]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [plan.eks.names.namespace]}}]
    # the NIM container really has a port named nim on NIM's port; the auth proxy alone has api (the Service's)
    serving = pod_templates(manifests_of(plan).workload)[0]
    ports = {c["name"]: [(p["name"], p["containerPort"]) for p in c["ports"]] for c in serving["spec"]["containers"]}
    assert ports == {"nim": [("nim", plan.serving.port)], "auth-proxy": [("api", AUTH_PROXY_PORT)]}
    assert plan.serving.port == 8000 != AUTH_PROXY_PORT
    model = serving["metadata"]["labels"]
    assert kept(job, discovered(model, "nim", "nim"))
    assert not kept(job, discovered(model, "auth-proxy", "api"))  # the proxy's port: never
    assert not kept(job, discovered(model, "nim", "api"))
    assert not kept(job, discovered(agent_of("eks-nim")["Deployment"]["spec"]["template"]["metadata"]["labels"],
                                    "cloudwatch-agent", "nim"))
    assert not kept(job, discovered(model | {"app.kubernetes.io/instance": "someone-else"}, "nim", "nim"))


def test_the_nim_agent_mounts_no_secret():
    agent = agent_of("eks-nim")
    pod = agent["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not [v for v in pod["volumes"] if "secret" in v or "projected" in v]
    assert {v["name"] for v in pod["volumes"]} == {"cwagent-config", "prometheus-config", "agent-etc", "agent-var",
                                                   "agent-logs", "tmp"}
    assert {m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")} == {
        CWAGENT_CONFIG_DIR, PROMETHEUS_CONFIG_DIR}
    assert {e["name"]: e["value"] for e in container["env"]} == {"RUN_WITH_IRSA": "True"}
    assert "envFrom" not in container
    text = yaml.safe_dump_all(list(agent.values()))
    assert "secretKeyRef" not in text and plan_of("eks-nim").eks.names.serving_secret not in text
    assert cwagent("eks-nim")["logs"]["metrics_collected"]["prometheus"]["prometheus_config_path"] == PROMETHEUS_CONFIG


@pytest.mark.parametrize("variant", VLLM_VARIANTS)
def test_the_agent_mounts_the_key_file_and_its_configs_where_the_agent_reads_them(variant):
    plan = plan_of(variant)
    pod = agent_of(variant)["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["api-key"]["secret"] == {"secretName": plan.eks.names.serving_secret, "defaultMode": 0o440,
                                            "items": [{"key": API_KEY_SECRET_KEY, "path": "api-key"}]}
    assert f"{mounts['api-key']['mountPath']}/api-key" == API_KEY_FILE and mounts["api-key"]["readOnly"] is True
    assert mounts["cwagent-config"]["mountPath"] == CWAGENT_CONFIG_DIR == "/etc/cwagentconfig"
    assert mounts["prometheus-config"]["mountPath"] == PROMETHEUS_CONFIG_DIR == "/etc/prometheusconfig"
    assert cwagent(variant)["logs"]["metrics_collected"]["prometheus"]["prometheus_config_path"] == PROMETHEUS_CONFIG
    assert all("valueFrom" not in e for e in container["env"])  # the key only as a file
    assert {e["name"]: e["value"] for e in container["env"]} == {"RUN_WITH_IRSA": "True"}
    assert container["image"] == "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300066.1"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_agent_publishes_into_the_stacks_namespace_and_prometheus_log_group(variant):
    plan = plan_of(variant)
    config = cwagent(variant)
    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    namespace = prometheus["emf_processor"]["metric_namespace"]
    assert namespace == stack_namespace(plan.stack) == f"nemotron-deploy/{plan.stack}"
    assert prometheus["log_group_name"] == prometheus_log_group(plan.stack)
    assert prometheus["cluster_name"] == plan.eks.cluster_name
    assert config["agent"] == {"region": plan.region}  # the pod cannot reach the instance metadata
    if plan.engine == "vllm":  # the same metric declaration as the ec2 servers' agent
        ec2 = json.loads(runs.shipped_plan("h100-pilot").ec2.agent_config)["logs"]["metrics_collected"]["prometheus"]
        assert prometheus["emf_processor"]["metric_declaration"] == ec2["emf_processor"]["metric_declaration"]
    else:
        (declaration,) = prometheus["emf_processor"]["metric_declaration"]
        assert declaration["label_matcher"] == "^nim$" and declaration["dimensions"] == [["job"]]


def test_the_nim_emf_declaration_selects_exactly_nims_names():
    (declaration,) = cwagent("eks-nim")["logs"]["metrics_collected"]["prometheus"]["emf_processor"][
        "metric_declaration"]
    assert declaration["source_labels"] == ["job"] and declaration["label_matcher"] == "^nim$"
    assert declaration["metric_selectors"] == [f"^{name}$" for name in (*NIM_GAUGES, *NIM_COUNTERS)] + [
        f"^{name}_(sum|count)$" for name in NIM_HISTOGRAMS]
    selectors = [re.compile(s) for s in declaration["metric_selectors"]]

    def selected(name: str) -> bool:
        return any(s.fullmatch(name) for s in selectors)

    nim = ENGINE_METRICS["nim"]
    for name in (nim.kv_cache, nim.running, nim.waiting, nim.generation_tokens, nim.requests,
                 f"{nim.ttft}_sum", f"{nim.itl}_count"):  # everything the dashboard and alarms read
        assert selected(name), name
    assert nim.requests == "e2e_request_latency_seconds_count" and nim.itl == "time_per_output_token_seconds"
    for name in ("vllm:num_requests_running", "request_success_total", "time_to_first_token_seconds_bucket",
                 "num_requests_running_extra", "process_cpu_seconds_total"):
        assert not selected(name), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_agent_is_hardened_and_stays_off_the_gpu_nodes(variant):
    pod = agent_of(variant)["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "tolerations" not in pod and pod["nodeSelector"] == {"nemotron-deploy/pool": "system"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    assert set(container["resources"]) == {"requests", "limits"}
    writable = {m["mountPath"] for m in container["volumeMounts"] if "readOnly" not in m}
    assert writable == {"/opt/aws/amazon-cloudwatch-agent/etc", "/opt/aws/amazon-cloudwatch-agent/var",
                        "/opt/aws/amazon-cloudwatch-agent/logs", "/tmp"}
    role = agent_of(variant)["Role"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert pod["automountServiceAccountToken"] is True and pod["serviceAccountName"] == role["metadata"]["name"]


def test_an_existing_cluster_leaves_the_agent_to_any_untainted_node(tmp_path):
    name = cases.write_variant(tmp_path, "eks-vllm", eks={"clusterName": "platform-prod"},
                               network={"vpcId": "vpc-0123456789abcdef0", "subnetId": "subnet-0123456789abcdef0"})
    plan = cases.variant_plan(tmp_path, name)
    (deployment,) = [m for m in manifests_of(plan).metrics_agent if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


# ------------------------------------------------------------------------------------------------- network policy


@pytest.mark.parametrize("variant", VLLM_VARIANTS)
def test_the_model_network_policy_admits_the_agent_on_the_api_port_and_nothing_reaches_the_agent(variant):
    plan = plan_of(variant)
    manifests = manifests_of(plan)
    agent_pod_labels = agent_of(variant)["Deployment"]["spec"]["template"]["metadata"]["labels"]
    rules = [r for r in manifests.network_policy["spec"]["ingress"]
             if any(set(f.get("podSelector", {}).get("matchLabels", {}).items()) <= set(agent_pod_labels.items())
                    and "namespaceSelector" not in f for f in r["from"])]
    assert rules == [{"from": [{"podSelector": {"matchLabels": agent_selector_labels(plan.eks.names.app)}}],
                      "ports": [{"protocol": "TCP", "port": plan.serving.port}]}]
    # the model's selector (Service, PodDisruptionBudget, its NetworkPolicy) never picks the agent's pod
    assert not set(selector_labels(plan, plan.eks).items()) <= set(agent_pod_labels.items())
    policy = agent_of(variant)["NetworkPolicy"]["spec"]
    assert policy == {"podSelector": {"matchLabels": agent_selector_labels(plan.eks.names.app)},
                      "policyTypes": ["Ingress"], "ingress": []}


def test_the_nim_network_policy_admits_the_agent_on_the_nim_port_only_and_clients_on_the_proxy():
    plan = plan_of("eks-nim")
    ingress = manifests_of(plan).network_policy["spec"]["ingress"]
    agent_rule = {"from": [{"podSelector": {"matchLabels": agent_selector_labels(plan.eks.names.app)}}],
                  "ports": [{"protocol": "TCP", "port": plan.serving.port}]}
    clients = {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}}],
               "ports": [{"protocol": "TCP", "port": AUTH_PROXY_PORT}]}
    assert ingress == [clients, agent_rule]  # nothing else: the NIM port for the agent alone, the proxy for clients
    assert agent_of("eks-nim")["NetworkPolicy"]["spec"] == {
        "podSelector": {"matchLabels": agent_selector_labels(plan.eks.names.app)}, "policyTypes": ["Ingress"],
        "ingress": []}


# ------------------------------------------------------------------------------------------------- offline engine


def test_the_api_key_is_in_no_rendered_text():
    for run, secrets in ((runs.shipped_run("eks-vllm"), runs.SECRETS), (cases.shipped_run("eks-vllm"), cases.SECRETS),
                         (cases.shipped_run("eks-nim"), cases.SECRETS)):
        text = json.dumps(run.resources) + json.dumps(run.outputs)
        assert all(value not in text for value in secrets.values())
    for variant in VARIANTS:
        rendered = yaml.safe_dump_all(manifests_of(plan_of(variant), hf_token=True).metrics_agent)
        assert all(value not in rendered for value in (runs.SECRETS["apiKey"], cases.API_KEY, cases.NGC_KEY))
    assert check_resources(runs.shipped_run("eks-vllm").resources, plan_of("eks-vllm").tags) == []


@pytest.mark.parametrize("stack", RUN_STACKS)
def test_the_agent_role_may_put_metrics_in_the_stack_namespace_and_events_in_its_log_group_only(stack):
    run, plan = cases.shipped_run(stack), plan_of(stack)
    policy = run.named(f"{stack}-metrics-policy")  # (vLLM's other inline policy reads the staged weights)
    assert policy["name"] == f"{stack}-metrics-policy" and policy["inputs"]["role"].startswith(f"{stack}-metrics-role")
    document = json.loads(policy["inputs"]["policy"])
    group = f"arn:aws:logs:{plan.region}:*:log-group:/nemotron-deploy/{stack}/prometheus"
    assert document["Statement"] == [
        {"Sid": "StackMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": f"nemotron-deploy/{stack}"}}},
        {"Sid": "PrometheusLogStreams", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams"], "Resource": [group, f"{group}:*"]},
        {"Sid": "PrometheusLogEvents", "Effect": "Allow", "Action": "logs:PutLogEvents",
         "Resource": [group, f"{group}:*"]},
    ]
    trust = json.loads(run.named(f"{stack}-metrics-role")["inputs"]["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                      "Action": ["sts:AssumeRole", "sts:TagSession"]}]
    assert not [a for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a["name"].startswith(f"{stack}-metrics")]  # no managed policy on it


@pytest.mark.parametrize("stack", RUN_STACKS)
def test_pod_identity_associates_the_agents_service_account_in_the_namespace(stack):
    run, plan = cases.shipped_run(stack), plan_of(stack)
    association = run.named(f"{stack}-metrics-pod-identity")
    inputs = association["inputs"]
    account = next(r for r in run.resources if r["type"] == "kubernetes:core/v1:ServiceAccount"
                   and r["inputs"]["metadata"]["name"] == f"{stack}-metrics")
    assert (inputs["clusterName"], inputs["namespace"], inputs["serviceAccount"]) == (
        plan.eks.cluster_name, plan.eks.names.namespace, f"{stack}-metrics")
    assert account["inputs"]["metadata"]["name"] == inputs["serviceAccount"]
    assert account["inputs"]["metadata"]["namespace"] == inputs["namespace"]
    assert inputs["roleArn"] == f"arn:aws:iam::123456789012:role/{stack}-metrics-role"
    assert inputs["tags"] == plan.tags
    assert [a["name"] for a in run.of_type(POD_IDENTITY) if "metrics" in a["name"]] == [f"{stack}-metrics-pod-identity"]


@pytest.mark.parametrize("stack", RUN_STACKS)
def test_the_prometheus_log_group_is_declared_once_with_a_retention(stack):
    run, plan = cases.shipped_run(stack), plan_of(stack)
    groups = [g["inputs"] for g in run.of_type(LOG_GROUP) if g["inputs"]["name"].endswith("/prometheus")]
    assert groups == [{"name": prometheus_log_group(stack), "retentionInDays": 7, "tags": plan.tags}]
    assert prometheus_log_group(stack) == f"/nemotron-deploy/{stack}/prometheus"


@pytest.mark.parametrize("stack", RUN_STACKS)
def test_every_declared_agent_object_validates_against_the_schemas(stack):
    run, plan = cases.shipped_run(stack), plan_of(stack)
    declared = [r for r in run.resources if r["type"].startswith("kubernetes:") and "-metrics-" in r["name"]]
    assert sorted(r["type"].rsplit(":", 1)[-1] for r in declared) == [
        "ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "Role", "RoleBinding", "ServiceAccount"]
    rendered = {(m["kind"], m["metadata"]["name"]): m for m in manifests_of(plan).metrics_agent}
    for resource in declared:
        manifest = declared_manifest(resource)
        validate(manifest, kubernetes_version(plan))
        assert manifest == rendered[(manifest["kind"], manifest["metadata"]["name"])]  # declared as rendered


# ------------------------------------------------------------------------------------------------- checkov


def test_checkov_finds_nothing_on_the_agent_beyond_the_accepted_checks(tmp_path):
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(REPO)} is missing: run `make venv-checkov` (`make test` builds it)")
    documents = [m for variant in VARIANTS for m in manifests_of(plan_of(variant)).metrics_agent]
    assert any(m["metadata"]["name"] == "eks-nim-metrics" and m["kind"] == "Deployment" for m in documents)
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    result = subprocess.run([str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "-o", "json",
                             "--compact", "--skip-download"], capture_output=True, text=True, cwd=tmp_path,
                            env=os.environ | {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"},
                            timeout=300, check=False)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = {e["check_id"] for e in report["results"]["failed_checks"]}
    passed = {e["check_id"] for e in report["results"]["passed_checks"]}
    assert failed <= ACCEPTED_CHECKOV, failed - ACCEPTED_CHECKOV
    # what the hardening buys: non-root, read-only root, no escalation, capabilities dropped, seccomp, limits
    assert {"CKV_K8S_22", "CKV_K8S_20", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_31", "CKV_K8S_11", "CKV_K8S_13",
            "CKV_K8S_40", "CKV_K8S_35"} <= passed


# ------------------------------------------------------------------------------------------------- the dashboard


def _dashboard_metrics(run) -> set[tuple[str, str]]:
    (dashboard,) = run.of_type(DASHBOARD)
    body = json.loads(dashboard["inputs"]["dashboardBody"])
    return {(row[0], row[1]) for w in body["widgets"] for row in w["properties"]["metrics"] if isinstance(row[0], str)}


def test_the_eks_vllm_dashboard_has_vllms_metrics_and_nims_has_nims():
    ns = "nemotron-deploy/eks-vllm"
    names = _dashboard_metrics(runs.shipped_run("eks-vllm"))
    assert {(ns, "vllm:kv_cache_usage_perc"), (ns, "vllm:num_requests_running"), (ns, "vllm:num_requests_waiting"),
            (ns, "vllm:time_to_first_token_seconds_sum"), (ns, "vllm:inter_token_latency_seconds_count"),
            (ns, "vllm:generation_tokens_total")} <= names
    assert ("ContainerInsights", "node_gpu_utilization") in names
    ns = "nemotron-deploy/eks-nim"
    nim = _dashboard_metrics(cases.shipped_run("eks-nim"))
    assert not [name for _, name in nim if name.startswith("vllm:")]
    assert {(ns, "gpu_cache_usage_perc"), (ns, "num_requests_running"), (ns, "num_requests_waiting"),
            (ns, "time_to_first_token_seconds_sum"), (ns, "time_to_first_token_seconds_count"),
            (ns, "time_per_output_token_seconds_sum"), (ns, "time_per_output_token_seconds_count"),
            (ns, "generation_tokens_total")} <= nim
    assert ("ContainerInsights", "node_gpu_utilization") in nim
    # the same widgets as vLLM's, titled by engine
    titles = {stack: [w["properties"]["title"] for w in json.loads(
        run.of_type(DASHBOARD)[0]["inputs"]["dashboardBody"])["widgets"]]
        for stack, run in (("eks-vllm", runs.shipped_run("eks-vllm")), ("eks-nim", cases.shipped_run("eks-nim")))}
    assert [t.replace("vLLM", "NIM").replace("eks-vllm", "eks-nim") for t in titles["eks-vllm"][:-1]] == \
        titles["eks-nim"][:-1]
    assert "NIM KV-cache usage (fraction)" in titles["eks-nim"]
    # every row of NIM's rows carries the agent's one dimension, job=nim
    (dashboard,) = cases.shipped_run("eks-nim").of_type(DASHBOARD)
    rows = [row for w in json.loads(dashboard["inputs"]["dashboardBody"])["widgets"]
            for row in w["properties"]["metrics"] if isinstance(row[0], str) and row[0] == ns]
    assert rows and all(row[2:4] == ["job", "nim"] for row in rows)


@pytest.mark.parametrize("stack", RUN_STACKS)
def test_eks_alarms_idle_on_finished_requests_while_the_gpus_report(stack):
    plan = plan_of(stack)
    requests, job = {"eks-vllm": ("vllm:request_success_total", "vllm"),
                     "eks-nim": ("e2e_request_latency_seconds_count", "nim")}[stack]
    decided = {a.key: a for a in plan_observability(plan, eks=plan.eks).alarms}
    idle = decided["idle"]
    assert idle.expression == IDLE_EXPRESSION and idle.threshold == 1 and idle.period_s == 3600
    assert (idle.metric.namespace, idle.metric.name, idle.metric.stat, idle.metric.dimensions) == (
        f"nemotron-deploy/{stack}", requests, "Sum", (("job", job),))
    assert (idle.heartbeat.namespace, idle.heartbeat.name, idle.heartbeat.stat) == (
        "ContainerInsights", "node_gpu_utilization", "SampleCount")
    ready = decided["not-ready"]
    # still running pods: the agent starts once the model serves (it depends on the workload), so during the first
    # start the count is the model's alone
    assert ready.metric.name == "namespace_number_of_running_pods" and ready.threshold == 1
    assert ready.period_s == ALARM_PERIOD_S
    run = cases.shipped_run(stack)
    alarms = {a["inputs"]["name"]: a["inputs"] for a in run.of_type(ALARM)}
    queries = {q["id"]: q for q in alarms[f"nemotron-deploy-{stack}-idle"]["metricQueries"]}
    assert queries["m1"]["metric"]["metricName"] == requests
    assert queries["heartbeat"]["metric"]["metricName"] == "node_gpu_utilization"
    notes = " ".join(plan_observability(plan, eks=plan.eks).notes)
    assert "not collected" not in notes
    if stack == "eks-nim":
        assert "e2e_request_latency_seconds_count" in notes and "/v1/metrics" in notes
        assert "e2e_request_latency_seconds_count" in idle.derivation
