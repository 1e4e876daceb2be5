"""vLLM's own metrics on EKS: the stack's CloudWatch agent (planner/targets/eks_metrics.py, components/eks_metrics.py),
through the offline engine and on the rendered dicts: a scrape of the model pods' api port only, with the API key as a
file that no rendered text carries; an IAM role through Pod Identity that may put metrics into the stack's namespace
and events into its prometheus log group and nothing else; the model's NetworkPolicy admitting the agent; schema and
checkov checks; the dashboard's vLLM widgets on vLLM stacks only. NIM stacks get no agent."""

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
    IDLE_EXPRESSION,
    VLLM_JOB,
    plan_observability,
    prometheus_log_group,
    stack_namespace,
)
from planner.policy import check_resources
from planner.targets.eks import API_KEY_SECRET_KEY, pod_templates, selector_labels
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
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
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


@pytest.mark.parametrize("variant", VLLM_VARIANTS)
def test_the_agent_publishes_into_the_stacks_namespace_and_prometheus_log_group(variant):
    plan = plan_of(variant)
    config = cwagent(variant)
    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    namespace = prometheus["emf_processor"]["metric_namespace"]
    assert namespace == stack_namespace(plan.stack) == f"nemotron-deploy/{plan.stack}"
    assert prometheus["log_group_name"] == prometheus_log_group(plan.stack)
    assert prometheus["cluster_name"] == plan.eks.cluster_name
    assert config["agent"] == {"region": plan.region}  # the pod cannot reach the instance metadata
    # the same metric declaration as the ec2 servers' agent
    ec2 = json.loads(runs.shipped_plan("h100-pilot").ec2.agent_config)["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["emf_processor"]["metric_declaration"] == ec2["emf_processor"]["metric_declaration"]


@pytest.mark.parametrize("variant", VLLM_VARIANTS)
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


def test_nim_renders_no_agent_and_no_ingress_for_one():
    manifests = manifests_of(plan_of("eks-nim"))
    assert manifests.metrics_agent == ()
    assert len(manifests.network_policy["spec"]["ingress"]) == 1  # the labelled clients only


# ------------------------------------------------------------------------------------------------- offline engine


def test_the_api_key_is_in_no_rendered_text():
    for run, secrets in ((runs.shipped_run("eks-vllm"), runs.SECRETS), (cases.shipped_run("eks-vllm"), cases.SECRETS),
                         (cases.shipped_run("eks-nim"), cases.SECRETS)):
        text = json.dumps(run.resources) + json.dumps(run.outputs)
        assert all(value not in text for value in secrets.values())
    rendered = yaml.safe_dump_all(manifests_of(plan_of("eks-vllm"), hf_token=True).metrics_agent)
    assert runs.SECRETS["apiKey"] not in rendered and cases.API_KEY not in rendered
    assert check_resources(runs.shipped_run("eks-vllm").resources, plan_of("eks-vllm").tags) == []


def test_the_agent_role_may_put_metrics_in_the_stack_namespace_and_events_in_its_log_group_only():
    run, plan = runs.shipped_run("eks-vllm"), plan_of("eks-vllm")
    policy = run.named("eks-vllm-metrics-policy")  # (the other inline policy reads the staged weights)
    assert policy["name"] == "eks-vllm-metrics-policy" and policy["inputs"]["role"].startswith("eks-vllm-metrics-role")
    document = json.loads(policy["inputs"]["policy"])
    group = f"arn:aws:logs:{plan.region}:*:log-group:/nemotron-deploy/eks-vllm/prometheus"
    assert document["Statement"] == [
        {"Sid": "StackMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": "nemotron-deploy/eks-vllm"}}},
        {"Sid": "PrometheusLogStreams", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams"], "Resource": [group, f"{group}:*"]},
        {"Sid": "PrometheusLogEvents", "Effect": "Allow", "Action": "logs:PutLogEvents",
         "Resource": [group, f"{group}:*"]},
    ]
    trust = json.loads(run.named("eks-vllm-metrics-role")["inputs"]["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                      "Action": ["sts:AssumeRole", "sts:TagSession"]}]
    assert not [a for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a["name"].startswith("eks-vllm-metrics")]  # no managed policy on it


def test_pod_identity_associates_the_agents_service_account_in_the_namespace():
    run, plan = runs.shipped_run("eks-vllm"), plan_of("eks-vllm")
    association = run.named("eks-vllm-metrics-pod-identity")
    inputs = association["inputs"]
    account = next(r for r in run.resources if r["type"] == "kubernetes:core/v1:ServiceAccount"
                   and r["inputs"]["metadata"]["name"] == "eks-vllm-metrics")
    assert (inputs["clusterName"], inputs["namespace"], inputs["serviceAccount"]) == (
        plan.eks.cluster_name, plan.eks.names.namespace, "eks-vllm-metrics")
    assert account["inputs"]["metadata"]["name"] == inputs["serviceAccount"]
    assert account["inputs"]["metadata"]["namespace"] == inputs["namespace"]
    assert inputs["roleArn"] == "arn:aws:iam::123456789012:role/eks-vllm-metrics-role"
    assert inputs["tags"] == plan.tags


def test_the_prometheus_log_group_is_declared_once_with_a_retention_and_nim_declares_none():
    run, plan = runs.shipped_run("eks-vllm"), plan_of("eks-vllm")
    groups = [g["inputs"] for g in run.of_type(LOG_GROUP) if g["inputs"]["name"] == prometheus_log_group("eks-vllm")]
    assert groups == [{"name": "/nemotron-deploy/eks-vllm/prometheus", "retentionInDays": 7, "tags": plan.tags}]
    nim = cases.shipped_run("eks-nim")
    assert not nim.of_type(POD_IDENTITY) and not nim.of_type(ROLE_POLICY)
    assert not [g for g in nim.of_type(LOG_GROUP) if g["inputs"]["name"].endswith("/prometheus")]
    assert not [r for r in nim.resources if r["type"] == "kubernetes:core/v1:ServiceAccount"]


def test_every_declared_agent_object_validates_against_the_schemas():
    run, plan = runs.shipped_run("eks-vllm"), plan_of("eks-vllm")
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
    documents = [m for variant in VLLM_VARIANTS for m in manifests_of(plan_of(variant)).metrics_agent]
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


def test_the_eks_vllm_dashboard_has_vllms_metrics_and_nims_does_not():
    ns = "nemotron-deploy/eks-vllm"
    names = _dashboard_metrics(runs.shipped_run("eks-vllm"))
    assert {(ns, "vllm:kv_cache_usage_perc"), (ns, "vllm:num_requests_running"), (ns, "vllm:num_requests_waiting"),
            (ns, "vllm:time_to_first_token_seconds_sum"), (ns, "vllm:inter_token_latency_seconds_count"),
            (ns, "vllm:generation_tokens_total")} <= names
    assert ("ContainerInsights", "node_gpu_utilization") in names
    nim = _dashboard_metrics(cases.shipped_run("eks-nim"))
    assert not [name for _, name in nim if name.startswith("vllm:")]
    assert ("ContainerInsights", "node_gpu_utilization") in nim


def test_eks_vllm_alarms_idle_on_requests_while_the_gpus_report_and_nim_on_idle_gpus():
    plan = plan_of("eks-vllm")
    decided = {a.key: a for a in plan_observability(plan, eks=plan.eks).alarms}
    idle = decided["idle"]
    assert idle.expression == IDLE_EXPRESSION and idle.threshold == 1 and idle.period_s == 3600
    assert (idle.metric.namespace, idle.metric.name, idle.metric.dimensions) == (
        "nemotron-deploy/eks-vllm", "vllm:request_success_total", (("job", "vllm"),))
    assert (idle.heartbeat.namespace, idle.heartbeat.name, idle.heartbeat.stat) == (
        "ContainerInsights", "node_gpu_utilization", "SampleCount")
    ready = decided["not-ready"]
    # still running pods: the agent starts once the model serves (it depends on the workload), so during the first
    # start the count is the model's alone
    assert ready.metric.name == "namespace_number_of_running_pods" and ready.threshold == 1
    assert ready.period_s == ALARM_PERIOD_S
    alarms = {a["inputs"]["name"]: a["inputs"] for a in runs.shipped_run("eks-vllm").of_type(ALARM)}
    queries = {q["id"]: q for q in alarms["nemotron-deploy-eks-vllm-idle"]["metricQueries"]}
    assert queries["m1"]["metric"]["metricName"] == "vllm:request_success_total"
    nim = plan_of("eks-nim")
    nim_alarms = {a.key: a for a in plan_observability(nim, eks=nim.eks).alarms}
    assert nim_alarms["idle"].expression is None and nim_alarms["idle"].metric.name == "node_gpu_utilization"
    assert nim_alarms["not-ready"].threshold == 1
    notes = " ".join(plan_observability(nim, eks=nim.eks).notes)
    assert "NIM's own metrics" in notes and "not collected" in notes
