"""The stack's CloudWatch dashboard and alarms (issue 17), through the offline engine (the path of `make plan`).

Thresholds are computed here by hand from the shipped stacks' figures: h100-pilot is one p5.48xlarge at $55.04/h for
8 h (max spend $440.32, budget limit $441), expiring 2026-12-01T17:30Z, with a 2,141 s startup budget (its weights
streamed from the staged copy: a 1,427 s cold start x 1.5, planner/startup.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from components.offline import run_program
from planner.observability import (
    ALARM_PERIOD_S,
    GPU_ERROR_FILTER_PATTERN,
    IDLE_S,
    XID_FILTER_PATTERN,
    cloudwatch_agent_config,
    plan_observability,
)
from planner.policy import check_resources
from planner.tags import TAG_EXPIRES_AT
from planner.targets.ec2 import METRICS_KEY, PROMETHEUS_CONFIG, render_user_data
from tests.components.runs import SECRETS, shipped_plan, shipped_run, stack_variant
from tests.jumpstart.stacks import NOW as JUMPSTART_NOW
from tests.jumpstart.stacks import STACKS_DIR as JUMPSTART_STACKS
from tests.jumpstart.stacks import plan_of as jumpstart_plan_of

DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
METRIC_FILTER = "aws:cloudwatch/logMetricFilter:LogMetricFilter"
PARAMETER = "aws:ssm/parameter:Parameter"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
EC2_STACKS = ("h100-pilot", "h100-bf16", "h200-pilot", "b200-nvfp4", "b300-bf16")
EKS_STACKS = ("eks-vllm", "eks-nim")


@pytest.fixture(scope="module")
def jumpstart_run():
    return run_program("jumpstart", stacks_dir=JUMPSTART_STACKS, now=JUMPSTART_NOW)


def alarms(run) -> dict[str, dict]:
    """The stack's alarms by key (not-ready, gpu-xid, idle, spend)."""
    return {a["inputs"]["name"].removeprefix(f"nemotron-deploy-{run.stack}-"): a["inputs"] for a in run.of_type(ALARM)}


def dashboard_body(run) -> dict:
    (dashboard,) = run.of_type(DASHBOARD)
    return json.loads(dashboard["inputs"]["dashboardBody"])


def metric_names(body: dict) -> set[tuple[str, str]]:
    """(namespace, metric name) of every plain metric row of the dashboard."""
    found = set()
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], str):
                found.add((row[0], row[1]))
    return found


@pytest.mark.parametrize("stack", EC2_STACKS + EKS_STACKS)
def test_every_cloud_stack_declares_one_dashboard_and_its_alarms(stack):
    run = shipped_run(stack)
    (dashboard,) = run.of_type(DASHBOARD)
    assert dashboard["inputs"]["dashboardName"] == f"nemotron-deploy-{stack}"
    expected = {"not-ready", "idle", "spend"} | ({"gpu-xid"} if stack in EC2_STACKS else {"gpu-error"})
    assert set(alarms(run)) == expected
    for alarm in run.of_type(ALARM):
        assert alarm["inputs"]["tags"] == shipped_plan(stack).tags
    region = shipped_plan(stack).region
    assert run.outputs["dashboard_url"] == (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/"
        f"nemotron-deploy-{stack}")
    assert check_resources(run.resources, required_tags=shipped_plan(stack).tags) == []


def test_a_resolved_jumpstart_stack_watches_sagemakers_own_endpoint_metrics(jumpstart_run):
    run = jumpstart_run
    spec = jumpstart_plan_of(JUMPSTART_STACKS, "jumpstart").jumpstart
    names = metric_names(dashboard_body(run))
    assert {("AWS/SageMaker", "Invocations"), ("AWS/SageMaker", "ModelLatency"),
            ("/aws/sagemaker/Endpoints", "GPUUtilization"),
            ("/aws/sagemaker/Endpoints", "GPUMemoryUtilization")} <= names
    found = alarms(run)
    assert set(found) == {"not-ready", "gpu-error", "idle", "spend"}
    # GPU errors: the container log's CUDA/ECC/NCCL/Xid lines, counted on the endpoint's own log group
    (metric_filter,) = run.of_type(METRIC_FILTER)
    assert metric_filter["inputs"]["logGroupName"] == spec.log_group_name == (
        f"/aws/sagemaker/Endpoints/{spec.endpoint_name}")
    assert metric_filter["inputs"]["pattern"] == GPU_ERROR_FILTER_PATTERN
    transform = metric_filter["inputs"]["metricTransformation"]
    error = found["gpu-error"]
    assert (transform["namespace"], transform["name"]) == (error["namespace"], error["metricName"]) == (
        "nemotron-deploy/jumpstart", "gpu_errors")
    assert (error["threshold"], error["comparisonOperator"], error["period"]) == (
        1, "GreaterThanOrEqualToThreshold", ALARM_PERIOD_S)
    # the endpoint's log group is declared once, by the endpoint's component
    assert [g["inputs"]["name"] for g in run.of_type(LOG_GROUP)].count(spec.log_group_name) == 1
    ready = found["not-ready"]
    assert ready["namespace"] == "/aws/sagemaker/Endpoints" and ready["metricName"] == "GPUUtilization"
    assert ready["dimensions"] == {"EndpointName": spec.endpoint_name, "VariantName": spec.variant_name}
    budget_s = spec.timeouts.download_s + spec.timeouts.startup_health_check_s
    assert ready["evaluationPeriods"] == -(-budget_s // ALARM_PERIOD_S)
    idle = found["idle"]
    queries = {q["id"]: q for q in idle["metricQueries"]}
    assert queries["m1"]["metric"]["metricName"] == "Invocations"
    assert queries["m1"]["metric"]["namespace"] == "AWS/SageMaker"
    assert check_resources(run.resources, required_tags=run.named(
        "jumpstart-observability-not-ready")["inputs"]["tags"]) == []


def test_ec2_thresholds_follow_the_plan():
    run = shipped_run("h100-pilot")
    found = alarms(run)
    ready = found["not-ready"]
    # startup budget 2,141 s in periods of 300 s: 8 periods (2,400 s), every one missing the vLLM metric
    assert (ready["period"], ready["evaluationPeriods"], ready["datapointsToAlarm"]) == (300, 8, 8)
    assert ready["treatMissingData"] == "breaching" and ready["threshold"] == 1
    assert (ready["namespace"], ready["metricName"]) == ("nemotron-deploy/h100-pilot", "vllm:num_requests_running")
    xid = found["gpu-xid"]
    assert (xid["metricName"], xid["comparisonOperator"], xid["threshold"]) == (
        "gpu_xid_errors", "GreaterThanOrEqualToThreshold", 1)
    idle = found["idle"]
    queries = {q["id"]: q for q in idle["metricQueries"]}
    assert queries["m1"]["metric"]["metricName"] == "vllm:request_success_total"
    assert queries["m1"]["metric"]["period"] == IDLE_S == 3600
    # while the servers run (their GPU metric counted, idle or not), no request is a breach; once gone, none is
    assert queries["heartbeat"]["metric"]["stat"] == "SampleCount"
    assert queries["heartbeat"]["metric"]["metricName"] == "nvidia_smi_utilization_gpu"
    spend = found["spend"]
    # 80% of the budget limit: ceil(55.04 x 8) = 441 -> 352.8
    assert spend["threshold"] == pytest.approx(352.8)
    (expression,) = [q["expression"] for q in spend["metricQueries"] if q.get("returnData")]
    start = int(datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp())  # expiry 17:30 - 8 h
    assert expression == f"(EPOCH(m1) - {start}) / 3600 * 55.04"
    assert shipped_plan("h100-pilot").tags[TAG_EXPIRES_AT] == "2026-12-01T17:30:00Z"


def test_the_ec2_dashboard_is_valid_json_with_every_widget():
    body = dashboard_body(shipped_run("h100-pilot"))
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == ["GPU utilisation (%) and memory used (MiB)", "vLLM KV-cache usage (fraction)",
                      "Requests running and waiting", "TTFT and inter-token latency (s)", "Generation tokens/s",
                      "Spend so far against the plan's maximum ($441)"]
    ns = "nemotron-deploy/h100-pilot"
    assert {(ns, "nvidia_smi_utilization_gpu"), (ns, "nvidia_smi_memory_used"),
            (ns, "vllm:kv_cache_usage_perc"), (ns, "vllm:num_requests_running"), (ns, "vllm:num_requests_waiting"),
            (ns, "vllm:time_to_first_token_seconds_sum"), (ns, "vllm:inter_token_latency_seconds_count"),
            (ns, "vllm:generation_tokens_total")} <= metric_names(body)
    spend = body["widgets"][-1]["properties"]
    assert [a["value"] for a in spend["annotations"]["horizontal"]] == [441, 352.8]
    for widget in body["widgets"]:
        assert widget["type"] == "metric" and widget["properties"]["region"] == "us-east-1"


def test_eks_uses_container_insights_by_cluster():
    run = shipped_run("eks-vllm")
    cluster = shipped_plan("eks-vllm").eks.cluster_name
    names = metric_names(dashboard_body(run))
    assert {("ContainerInsights", "node_gpu_utilization"), ("ContainerInsights", "node_gpu_memory_utilization"),
            ("ContainerInsights", "namespace_number_of_running_pods")} <= names
    ready = alarms(run)["not-ready"]
    assert ready["dimensions"]["ClusterName"] == cluster
    # the probe's budget, the modelled cold start x 1.5: 2,141 s -> 8 periods of 300 s
    assert ready["evaluationPeriods"] == -(-shipped_plan("eks-vllm").eks.startup.timeout_s // 300) == 8
    # GPU errors: CUDA, ECC, NCCL or Xid lines in the containers' log group the add-on's Fluent Bit fills
    (metric_filter,) = run.of_type(METRIC_FILTER)
    assert metric_filter["inputs"]["logGroupName"] == f"/aws/containerinsights/{cluster}/application"
    assert metric_filter["inputs"]["pattern"] == GPU_ERROR_FILTER_PATTERN
    error = alarms(run)["gpu-error"]
    assert (error["namespace"], error["metricName"], error["threshold"]) == (
        "nemotron-deploy/eks-vllm", "gpu_errors", 1)
    # vLLM stacks run their own metrics agent in the namespace (tests/eks/test_metrics_agent.py): vLLM's widgets as
    # on ec2, and idle means no request while the GPUs report
    ns = "nemotron-deploy/eks-vllm"
    assert {(ns, "vllm:kv_cache_usage_perc"), (ns, "vllm:num_requests_waiting"),
            (ns, "vllm:time_to_first_token_seconds_sum"), (ns, "vllm:generation_tokens_total")} <= names
    assert ready["threshold"] == 1 and ready["metricName"] == "namespace_number_of_running_pods"
    idle = {q["id"]: q for q in alarms(run)["idle"]["metricQueries"]}
    assert idle["m1"]["metric"]["metricName"] == "vllm:request_success_total"
    assert idle["heartbeat"]["metric"]["metricName"] == "node_gpu_utilization"


def test_eks_nim_has_nims_metrics_and_idles_on_finished_requests():
    # NIM stacks run the same metrics agent on the NIM container's port (tests/eks/test_metrics_agent.py): the same
    # widgets under NIM's names, and idle means no finished request while the GPUs report
    run = shipped_run("eks-nim")
    names = metric_names(dashboard_body(run))
    assert not [name for _, name in names if name.startswith("vllm:")]
    ns = "nemotron-deploy/eks-nim"
    assert {(ns, "gpu_cache_usage_perc"), (ns, "num_requests_waiting"), (ns, "time_to_first_token_seconds_sum"),
            (ns, "time_per_output_token_seconds_count"), (ns, "generation_tokens_total")} <= names
    idle = {q["id"]: q for q in alarms(run)["idle"]["metricQueries"]}
    assert idle["m1"]["metric"]["metricName"] == "e2e_request_latency_seconds_count"
    assert idle["heartbeat"]["metric"]["metricName"] == "node_gpu_utilization"
    assert alarms(run)["not-ready"]["threshold"] == 1


def test_alarms_notify_the_alert_addresses_through_one_topic(tmp_path):
    stack = stack_variant(tmp_path, "h100-pilot", alertEmails=["ops@example.com", "oncall@example.com"])
    run = run_program(stack, stacks_dir=tmp_path, now=datetime(2026, 12, 1, 9, 30, tzinfo=UTC), secrets=SECRETS)
    (topic,) = run.of_type(TOPIC)
    assert topic["inputs"]["tags"]["nemotron-deploy:stack"] == "h100-pilot"
    assert sorted(s["inputs"]["endpoint"] for s in run.of_type(SUBSCRIPTION)) == [
        "oncall@example.com", "ops@example.com"]
    topic_arn = f"arn:aws:sns:us-east-1:123456789012:{topic['name']}"
    for alarm in run.of_type(ALARM):
        assert alarm["inputs"]["alarmActions"] == [topic_arn]
    # no addresses (the shipped stack): no topic, alarms without an action
    assert shipped_run("h100-pilot").of_type(TOPIC) == []


def test_ec2_servers_run_the_cloudwatch_agent_with_a_narrow_role():
    run = shipped_run("h100-pilot")
    (parameter,) = run.of_type(PARAMETER)
    assert parameter["inputs"]["name"] == "AmazonCloudWatch-nemotron-deploy-h100-pilot"
    assert parameter["inputs"]["type"] == "String"
    assert parameter["inputs"]["value"] == "[secret]"  # the provider marks every parameter value secret
    config = json.loads(shipped_plan("h100-pilot").ec2.agent_config)
    assert config == cloudwatch_agent_config("h100-pilot", PROMETHEUS_CONFIG)
    assert config["metrics"]["namespace"] == "nemotron-deploy/h100-pilot"
    assert "nvidia_gpu" in config["metrics"]["metrics_collected"]
    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["emf_processor"]["metric_namespace"] == "nemotron-deploy/h100-pilot"
    assert config["logs"]["logs_collected"]["files"]["collect_list"][0]["log_group_name"] == (
        "/nemotron-deploy/h100-pilot/kernel")
    # no managed CloudWatchAgentServerPolicy: a narrower inline policy on the stack's namespace and log groups
    policies = sorted(a["inputs"]["policyArn"] for a in run.of_type(ATTACHMENT))
    assert policies == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    agent = json.loads(run.named("h100-pilot-servers-cloudwatch-agent")["inputs"]["policy"])["Statement"]
    assert [s["Sid"] for s in agent] == ["StackMetrics", "StackLogs", "AgentConfig"]
    assert agent[0]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "nemotron-deploy/h100-pilot"}}
    assert agent[1]["Resource"][0] == "arn:aws:logs:us-east-1:*:log-group:/nemotron-deploy/h100-pilot/*"
    assert agent[2]["Resource"] == "arn:aws:ssm:us-east-1:123456789012:h100-pilot-servers-agent-config"
    groups = sorted(g["inputs"]["name"] for g in run.of_type(LOG_GROUP))
    assert groups == ["/nemotron-deploy/h100-pilot/kernel", "/nemotron-deploy/h100-pilot/prometheus"]
    assert prometheus["log_group_name"] == "/nemotron-deploy/h100-pilot/prometheus"
    (metric_filter,) = run.of_type(METRIC_FILTER)
    assert metric_filter["inputs"]["pattern"] == XID_FILTER_PATTERN
    assert metric_filter["inputs"]["metricTransformation"]["namespace"] == "nemotron-deploy/h100-pilot"


def test_the_user_data_scrapes_vllm_with_the_key_read_at_boot():
    plan = shipped_plan("h100-pilot")
    text = render_user_data(plan, plan.ec2, 0, "arn:aws:secretsmanager:us-east-1:123456789012:secret:s")
    assert f"- path: {PROMETHEUS_CONFIG}" in text
    assert f"credentials_file: {METRICS_KEY}" in text and "localhost:8000" in text
    assert "-c ssm:AmazonCloudWatch-nemotron-deploy-h100-pilot" in text
    assert SECRETS["apiKey"] not in text


def test_a_plan_without_its_target_plan_is_refused():
    plan = shipped_plan("h100-pilot")
    with pytest.raises(Exception, match="fitted ec2, eks or resolved jumpstart"):
        plan_observability(plan)


def test_no_price_means_no_spend_alarm_but_the_rest_stays():
    import dataclasses

    plan = shipped_plan("h100-pilot")
    cost = dataclasses.replace(plan.cost, usd_per_hour=None, max_spend_usd=None)
    decided = plan_observability(dataclasses.replace(plan, cost=cost), ec2=plan.ec2)
    assert [a.key for a in decided.alarms] == ["not-ready", "gpu-xid", "idle"]
    assert any("no spend alarm" in note for note in decided.notes)


def test_an_existing_eks_cluster_gets_no_gpu_error_alarm_and_is_told_why(tmp_path):
    from tests.eks.cases import variant_plan, write_variant

    network = {"vpcId": "vpc-0123456789abcdef0", "subnetId": "subnet-0123456789abcdef0"}
    plan = variant_plan(tmp_path, write_variant(tmp_path, "eks-vllm", eks={"clusterName": "platform-prod"},
                                                network=network))
    decided = plan_observability(plan, eks=plan.eks)
    assert [a.key for a in decided.alarms] == ["not-ready", "idle", "spend"] and decided.error_logs is None
    assert any("no GPU-error alarm on the existing cluster platform-prod" in note for note in decided.notes)
