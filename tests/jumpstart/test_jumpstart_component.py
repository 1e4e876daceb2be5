"""The jumpstart stack under the offline engine (the path `make plan` takes): every resource and the properties a
reviewer checks before `pulumi up` - startup timeouts from the weights' size within 60..3600, the EULA exactly as
configured, no secret in the container environment, a least-privilege execution role, autoscaling, tags."""

from __future__ import annotations

import json
from functools import cache

import pytest

from components.offline import OfflineRun, accepts_tags, run_program
from planner.policy import check_resources
from scripts.plan import main as plan_main
from tests.jumpstart.stacks import IMAGE, NOW, PREPACKED, STACKS_DIR, plan_of, real_resolved, write_variant

MODEL = "aws:sagemaker/model:Model"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"
COMPONENT = "nemotron-deploy:index:JumpStartEndpoint"
BUDGET = "aws:budgets/budget:Budget"
BUDGET_COMPONENT = "nemotron-deploy:index:StackBudget"
SCHEDULE = "aws:scheduler/schedule:Schedule"
OBSERVABILITY = "nemotron-deploy:index:StackObservability"  # the dashboard and alarms: tests/observability/
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SCHEDULE_GROUP = "aws:scheduler/scheduleGroup:ScheduleGroup"


@cache
def shipped() -> OfflineRun:
    return run_program("jumpstart", stacks_dir=STACKS_DIR, now=NOW)


def only(run: OfflineRun, type_token: str) -> dict:
    found = run.of_type(type_token)
    assert len(found) == 1, f"{len(found)} resources of type {type_token}"
    return found[0]["inputs"]


def statements(run: OfflineRun) -> dict[str, dict]:
    """The execution role's statements by Sid."""
    access = run.named("jumpstart-jumpstart-access")["inputs"]
    return {s["Sid"]: s for s in json.loads(access["policy"])["Statement"]}


def test_every_resource_of_the_endpoint_is_declared_once():
    assert sorted((r["type"], r["name"]) for r in shipped().resources) == sorted([
        (COMPONENT, "jumpstart-jumpstart"), (ROLE, "jumpstart-jumpstart-role"),
        (ROLE_POLICY, "jumpstart-jumpstart-access"), (LOG_GROUP, "jumpstart-jumpstart-logs"),
        (MODEL, "jumpstart-jumpstart-model"), (CONFIG, "jumpstart-jumpstart-config"),
        (ENDPOINT, "jumpstart-jumpstart-endpoint"), (TARGET, "jumpstart-jumpstart-scaling-target"),
        (POLICY, "jumpstart-jumpstart-scaling-policy"),
        (SCHEDULE_GROUP, "jumpstart-jumpstart-end-group"), (ROLE, "jumpstart-jumpstart-end-role"),
        (ROLE_POLICY, "jumpstart-jumpstart-end-delete"), (ROLE_POLICY, "jumpstart-jumpstart-end-deregister"),
        (SCHEDULE, "jumpstart-jumpstart-end"),
        (BUDGET_COMPONENT, "jumpstart-cost"), (BUDGET, "jumpstart-cost-budget"),
        (OBSERVABILITY, "jumpstart-observability"), (DASHBOARD, "jumpstart-observability-dashboard"),
        ("aws:cloudwatch/logMetricFilter:LogMetricFilter", "jumpstart-observability-gpu-errors"),
        *((ALARM, f"jumpstart-observability-{key}") for key in ("not-ready", "gpu-error", "idle", "spend"))])


def test_the_model_is_the_resolved_hub_content_with_the_eula_as_configured():
    model = only(shipped(), MODEL)
    container = model["primaryContainer"]
    assert container["image"] == IMAGE and container["mode"] == "SingleModel"
    assert container["modelDataSource"] == {"s3DataSources": [{
        "s3Uri": PREPACKED, "s3DataType": "S3Prefix", "compressionType": "None",
        "modelAccessConfig": {"acceptEula": False}}]}  # explicit false: never accepted on the user's behalf
    assert container["environment"]["OPTION_TENSOR_PARALLEL_DEGREE"] == "8"
    assert model["enableNetworkIsolation"] is True
    assert model["executionRoleArn"] == "arn:aws:iam::123456789012:role/jumpstart-jumpstart-role"
    assert "vpcConfig" not in model


def test_accepting_the_eula_is_passed_through_as_true(tmp_path):
    name = write_variant(tmp_path, jumpstart={"acceptEula": True}, resolved=real_resolved())
    container = only(run_program(name, stacks_dir=tmp_path, now=NOW), MODEL)["primaryContainer"]
    assert container["modelDataSource"]["s3DataSources"][0]["modelAccessConfig"] == {"acceptEula": True}


def test_startup_timeouts_are_derived_from_the_weights_and_within_sagemakers_range(tmp_path):
    variant = only(shipped(), CONFIG)["productionVariants"]
    assert variant == [{"variantName": "AllTraffic", "modelName": "jumpstart-jumpstart-model",
                        "instanceType": "ml.p5en.48xlarge", "initialInstanceCount": 1, "initialVariantWeight": 1,
                        "modelDataDownloadTimeoutInSeconds": 528,
                        "containerStartupHealthCheckTimeoutInSeconds": 2064}]  # no volumeSizeInGb on NVMe types
    # BF16 on 8x B200 (1,121 GB as published: 1,681.5 s at 1 GB/s x 1.5; (560.5 s load + 1,200 s) x 1.5) -> longer
    # timeouts, from the same planner function.
    name = write_variant(tmp_path, instanceType="ml.p6-b200.48xlarge", precision="bf16", contextTokens=65536,
                         resolved={"instanceType": "ml.p6-b200.48xlarge"})
    bf16 = only(run_program(name, stacks_dir=tmp_path, now=NOW), CONFIG)["productionVariants"][0]
    timeouts = plan_of(tmp_path, name).jumpstart.timeouts
    assert (bf16["modelDataDownloadTimeoutInSeconds"], bf16["containerStartupHealthCheckTimeoutInSeconds"]) == \
        (timeouts.download_s, timeouts.startup_health_check_s) == (1682, 2640)
    for seconds in (bf16["modelDataDownloadTimeoutInSeconds"], bf16["containerStartupHealthCheckTimeoutInSeconds"],
                    variant[0]["modelDataDownloadTimeoutInSeconds"]):
        assert 60 <= seconds <= 3600


def test_the_endpoint_has_its_fixed_name_and_its_own_tagged_log_group():
    run = shipped()
    endpoint = only(run, ENDPOINT)
    assert endpoint["name"] == "nemotron-jumpstart"
    assert endpoint["endpointConfigName"] == "jumpstart-jumpstart-config"
    logs = only(run, LOG_GROUP)
    assert logs["name"] == "/aws/sagemaker/Endpoints/nemotron-jumpstart" and logs["retentionInDays"] == 30


def test_autoscaling_tracks_invocations_per_instance_between_min_and_max():
    run = shipped()
    target = only(run, TARGET)
    assert (target["serviceNamespace"], target["scalableDimension"], target["resourceId"]) == (
        "sagemaker", "sagemaker:variant:DesiredInstanceCount", "endpoint/nemotron-jumpstart/variant/AllTraffic")
    assert (target["minCapacity"], target["maxCapacity"]) == (1, 2)
    policy = only(run, POLICY)
    assert policy["policyType"] == "TargetTrackingScaling" and policy["resourceId"] == target["resourceId"]
    assert policy["targetTrackingScalingPolicyConfiguration"] == {
        "targetValue": 11, "predefinedMetricSpecification": {
            "predefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "scaleInCooldown": 3600, "scaleOutCooldown": 2592}


def test_the_execution_role_reads_the_prefix_pulls_the_repository_and_writes_its_logs_only():
    run = shipped()
    trust = json.loads(run.named("jumpstart-jumpstart-role")["inputs"]["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                      "Action": "sts:AssumeRole"}]
    s = statements(run)
    prefix = PREPACKED.removeprefix("s3://jumpstart-private-cache-prod-us-east-1/").rstrip("/")
    bucket = "arn:aws:s3:::jumpstart-private-cache-prod-us-east-1"
    assert s["ArtifactList"]["Resource"] == bucket
    assert s["ArtifactList"]["Condition"] == {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
    assert s["ArtifactRead"] == {"Sid": "ArtifactRead", "Effect": "Allow", "Action": "s3:GetObject",
                                 "Resource": f"{bucket}/{prefix}/*"}
    assert s["ImagePull"]["Resource"] == "arn:aws:ecr:us-east-1:763104351884:repository/djl-inference"
    assert s["ImagePull"]["Action"] == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                        "ecr:BatchCheckLayerAvailability"]
    log_group_arn = "arn:aws:cloudwatch:us-east-1:123456789012:jumpstart-jumpstart-logs"  # the mock's ARN output
    assert s["EndpointLogs"]["Resource"] == [log_group_arn, f"{log_group_arn}:*"]
    # Only the two actions AWS offers no resource scoping for are on "*", the metrics one limited by namespace.
    on_everything = {sid: st["Action"] for sid, st in s.items() if st["Resource"] == "*"}
    assert on_everything == {"RegistryLogin": "ecr:GetAuthorizationToken",
                             "EndpointMetrics": "cloudwatch:PutMetricData"}
    assert s["EndpointMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}}
    actions = [a for st in s.values() for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])]
    assert not [a for a in actions if a == "*" or a.endswith(":*")]


def test_every_taggable_resource_carries_the_stacks_tags():
    run = shipped()
    expected = {"nemotron-deploy:stack": "jumpstart", "nemotron-deploy:owner": "platform-team",
                "nemotron-deploy:expires-at": "2026-12-01T17:30:00Z"}
    taggable = [r for r in run.resources if accepts_tags(r["type"])]
    assert {r["type"] for r in taggable} == {ROLE, LOG_GROUP, MODEL, CONFIG, ENDPOINT, TARGET, BUDGET, SCHEDULE_GROUP,
                                             ALARM}
    assert not accepts_tags(SCHEDULE)  # a schedule takes no tags: its group carries them
    for resource in taggable:
        assert resource["inputs"]["tags"] == expected, resource["name"]


def test_the_policy_rules_find_nothing_and_would_find_a_secret_or_a_wildcard():
    plan = plan_of(STACKS_DIR, "jumpstart")
    resources = shipped().resources
    assert check_resources(resources, plan.tags) == []
    leaked = json.loads(json.dumps(resources))
    model = next(r for r in leaked if r["type"] == MODEL)
    model["inputs"]["primaryContainer"]["environment"]["HF_TOKEN"] = "hf_" + "z" * 34
    policy = next(r for r in leaked if r["name"] == "jumpstart-jumpstart-access")
    document = json.loads(policy["inputs"]["policy"])
    document["Statement"][1]["Action"] = "s3:*"
    policy["inputs"]["policy"] = json.dumps(document)
    assert {v.rule for v in check_resources(leaked, plan.tags)} == {"plaintext-secret", "wildcard-iam"}


def test_vpc_and_data_capture_when_configured(tmp_path):
    name = write_variant(tmp_path, jumpstart={
        "vpc": {"subnetIds": ["subnet-0123456789abcdef0"], "securityGroupIds": ["sg-0123456789abcdef0"]},
        "dataCapture": {"destinationS3Uri": "s3://capture-bucket/nemotron/", "samplingPercentage": 10}})
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    assert only(run, MODEL)["vpcConfig"] == {"subnets": ["subnet-0123456789abcdef0"],
                                             "securityGroupIds": ["sg-0123456789abcdef0"]}
    capture = only(run, CONFIG)["dataCaptureConfig"]
    assert capture == {"enableCapture": True, "initialSamplingPercentage": 10,
                       "destinationS3Uri": "s3://capture-bucket/nemotron/",
                       "captureOptions": [{"captureMode": "Input"}, {"captureMode": "Output"}],
                       "captureContentTypeHeader": {"jsonContentTypes": ["application/json"]}}
    s = statements(run)
    assert s["DataCaptureWrite"]["Resource"] == "arn:aws:s3:::capture-bucket/nemotron/*"
    assert "ec2:CreateNetworkInterface" in s["VpcInterfaces"]["Action"]
    assert check_resources(run.resources, plan_of(tmp_path, name).tags) == []


def test_an_unresolved_stack_declares_no_endpoint_and_make_plan_stays_green(tmp_path, capsys):
    name = write_variant(tmp_path, drop_resolved=True)
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    # only the stack's budget: no model, config, endpoint or role until the hub content is resolved
    assert {r["type"] for r in run.resources} == {BUDGET_COMPONENT, BUDGET}
    assert run.outputs["jumpstart_resolved"] is False
    assert plan_main([name, "--stacks-dir", str(tmp_path), "--json", "--now", "2026-12-01T09:30:00+00:00"]) == 0
    entry = json.loads(capsys.readouterr().out)["stacks"][0]
    assert {r["type"] for r in entry["resources"]} == {BUDGET_COMPONENT, BUDGET} and entry["violations"] == []
    assert any("hub content not resolved" in w for w in entry["warnings"])


def test_a_stack_that_does_not_fit_stops_the_program(tmp_path):
    name = write_variant(tmp_path, instanceType="ml.p5.48xlarge", precision="bf16",
                         resolved={"instanceType": "ml.p5.48xlarge"})
    with pytest.raises(Exception, match="does not fit"):
        run_program(name, stacks_dir=tmp_path, now=NOW)


def test_exports_name_the_endpoint_and_how_to_smoke_it():
    outputs = shipped().outputs
    assert outputs["endpoint_name"] == "nemotron-jumpstart"
    assert outputs["startup_timeouts_s"] == {"model_data_download": 528, "container_startup_health_check": 2064}
    assert outputs["smoke_command"] == "python -m scripts.jumpstart smoke jumpstart --wait 3600"
