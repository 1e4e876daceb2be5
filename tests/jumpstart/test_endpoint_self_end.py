"""The JumpStart endpoint ends itself at the stack's expiry, in the account, without the CI reaper: a one-time
EventBridge Scheduler schedule calls SageMaker's DeleteEndpoint through the universal target, with a role that may do
exactly that to exactly this endpoint (and deregister exactly its scalable target, which DeleteEndpoint asks of the
caller). Checked as the offline engine declares it (types, names, inputs, tags, IAM), then created as declared
against moto's EventBridge Scheduler, IAM and SageMaker and read back; the schedule's input is replayed as the
DeleteEndpoint request it stands for."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache

import botocore.session
import pytest
from moto.core import DEFAULT_ACCOUNT_ID

from components.offline import FAKE_ACCOUNT, OfflineRun, run_program
from planner.policy import check_resources
from scripts.plan import plan_entry
from tests.jumpstart.endpoint import deploy
from tests.jumpstart.stacks import NOW, STACKS_DIR, plan_of, write_variant

SCHEDULE = "aws:scheduler/schedule:Schedule"
SCHEDULE_GROUP = "aws:scheduler/scheduleGroup:ScheduleGroup"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
PREFIX = "jumpstart-jumpstart"
TAGS = {"nemotron-deploy:stack": "jumpstart", "nemotron-deploy:owner": "platform-team",
        "nemotron-deploy:expires-at": "2026-12-01T17:30:00Z"}
ENDPOINT_ARN = f"arn:aws:sagemaker:us-east-1:{FAKE_ACCOUNT}:endpoint/nemotron-jumpstart"
REGION = "us-east-1"


@cache
def shipped() -> OfflineRun:
    return run_program("jumpstart", stacks_dir=STACKS_DIR, now=NOW)


def inputs(run: OfflineRun, name: str) -> dict:
    return run.named(name)["inputs"]


def policy_statements(run: OfflineRun, name: str) -> list[dict]:
    return json.loads(inputs(run, name)["policy"])["Statement"]


# ------------------------------------------------------------------------------------------ as declared (offline)


def test_a_one_time_schedule_deletes_the_endpoint_at_the_plans_expiry():
    run = shipped()
    [schedule] = run.of_type(SCHEDULE)
    assert schedule["name"] == f"{PREFIX}-end"
    declared = schedule["inputs"]
    assert declared["scheduleExpression"] == "at(2026-12-01T17:30:00)"  # = the tags' expires-at
    assert declared["scheduleExpressionTimezone"] == "UTC"
    assert declared["flexibleTimeWindow"] == {"mode": "OFF"}
    assert declared["actionAfterCompletion"] == "DELETE"  # the schedule goes once it has fired
    assert (declared["name"], declared["groupName"]) == ("delete-endpoint", "nemotron-jumpstart")
    target = declared["target"]
    assert target["arn"] == "arn:aws:scheduler:::aws-sdk:sagemaker:deleteEndpoint"
    assert json.loads(target["input"]) == {"EndpointName": "nemotron-jumpstart"}
    assert target["roleArn"] == f"arn:aws:iam::{FAKE_ACCOUNT}:role/{PREFIX}-end-role"
    assert target["retryPolicy"] == {"maximumRetryAttempts": 185, "maximumEventAgeInSeconds": 86400}
    assert run.outputs["self_end"]["deletes_endpoint_at"] == TAGS["nemotron-deploy:expires-at"]


def test_the_schedule_group_carries_the_stacks_tags_and_the_policy_rules_find_nothing():
    run = shipped()
    group = inputs(run, f"{PREFIX}-end-group")
    assert group == {"name": "nemotron-jumpstart", "tags": TAGS}
    assert inputs(run, f"{PREFIX}-end-role")["tags"] == TAGS
    assert check_resources(run.resources, plan_of(STACKS_DIR, "jumpstart").tags) == []


def test_only_scheduler_of_this_account_and_group_may_assume_the_role():
    trust = json.loads(inputs(shipped(), f"{PREFIX}-end-role")["assumeRolePolicy"])["Statement"]
    group_arn = f"arn:aws:scheduler:{REGION}:{FAKE_ACCOUNT}:{PREFIX}-end-group"  # the mock's ARN of the group
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"},
                      "Action": "sts:AssumeRole",
                      "Condition": {"StringEquals": {"aws:SourceAccount": FAKE_ACCOUNT},
                                    "ArnEquals": {"aws:SourceArn": group_arn}}}]


def test_the_role_may_delete_exactly_this_endpoint_and_deregister_exactly_its_scalable_target():
    run = shipped()
    end_policies = [r for r in run.of_type(ROLE_POLICY) if r["inputs"]["role"].startswith(f"{PREFIX}-end-role-")]
    assert sorted(r["name"] for r in end_policies) == [f"{PREFIX}-end-delete", f"{PREFIX}-end-deregister"]
    assert policy_statements(run, f"{PREFIX}-end-delete") == [{
        "Sid": "DeleteTheEndpoint", "Effect": "Allow", "Action": "sagemaker:DeleteEndpoint",
        "Resource": ENDPOINT_ARN}]
    target_arn = f"arn:aws:appautoscaling:{REGION}:{FAKE_ACCOUNT}:{PREFIX}-scaling-target"  # the mock's ARN output
    assert policy_statements(run, f"{PREFIX}-end-deregister") == [{
        "Sid": "DeregisterTheScalableTarget", "Effect": "Allow",
        "Action": "application-autoscaling:DeregisterScalableTarget", "Resource": target_arn}]
    # Nothing else is attached to the role: no managed policy, no other inline policy.
    attachments = [r for r in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                   if str(r["inputs"].get("role", "")).startswith(f"{PREFIX}-end-role")]
    assert attachments == []


def test_the_endpoint_arn_is_lower_case_as_sagemaker_writes_it(tmp_path):
    end = plan_of(STACKS_DIR, "jumpstart").jumpstart.self_end
    assert end.endpoint_arn("111122223333") == "arn:aws:sagemaker:us-east-1:111122223333:endpoint/nemotron-jumpstart"
    assert end.__class__(end.at, "G", "s", "Nemotron-Big", "aws-cn", "cn-north-1").endpoint_arn("1") == \
        "arn:aws-cn:sagemaker:cn-north-1:1:endpoint/nemotron-big"
    assert end.__class__(end.at, "G", "s", "x", "aws-cn", "cn-north-1").target_arn == \
        "arn:aws-cn:scheduler:::aws-sdk:sagemaker:deleteEndpoint"


def test_a_renewed_expiry_moves_the_schedule(tmp_path):
    """The time is an input that follows plan.expires_at: a pinned or renewed expiry updates it on `pulumi up`."""
    name = write_variant(tmp_path, expiresAt="2026-12-02T06:15:00Z")
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    assert inputs(run, f"{PREFIX}-end")["scheduleExpression"] == "at(2026-12-02T06:15:00)"
    assert inputs(run, f"{PREFIX}-end-group")["tags"]["nemotron-deploy:expires-at"] == "2026-12-02T06:15:00Z"
    later = run_program("jumpstart", stacks_dir=STACKS_DIR, now=datetime(2026, 12, 1, 11, 0, 7, tzinfo=UTC))
    # now + the 8 h TTL, rounded up to the minute as the expiry is
    assert inputs(later, f"{PREFIX}-end")["scheduleExpression"] == "at(2026-12-01T19:01:00)"


def test_the_plan_shows_the_self_end_and_lists_the_schedule_among_the_resources():
    plan = plan_of(STACKS_DIR, "jumpstart")
    entry = plan_entry(plan)
    assert entry["jumpstart"]["self_end"] == {
        "at": "2026-12-01T17:30:00Z", "schedule_expression": "at(2026-12-01T17:30:00)",
        "schedule": "nemotron-jumpstart/delete-endpoint",
        "target_arn": "arn:aws:scheduler:::aws-sdk:sagemaker:deleteEndpoint",
        "input": {"EndpointName": "nemotron-jumpstart"},
        "retry": {"maximum_retry_attempts": 185, "maximum_event_age_s": 86400}}
    assert {(r["type"], r["name"]) for r in entry["resources"]} >= {
        (SCHEDULE, f"{PREFIX}-end"), (SCHEDULE_GROUP, f"{PREFIX}-end-group"), (ROLE, f"{PREFIX}-end-role")}
    assert entry["violations"] == []


def test_the_declared_names_and_enums_are_what_the_scheduler_api_accepts():
    """Checked on botocore's service model of EventBridge Scheduler (moto does not check patterns or enums)."""
    model = botocore.session.get_session().get_service_model("scheduler")
    request = model.operation_model("CreateSchedule").input_shape.members
    declared = inputs(shipped(), f"{PREFIX}-end")
    for key, value in (("Name", declared["name"]), ("GroupName", declared["groupName"])):
        shape = request[key]
        assert re.fullmatch(shape.metadata["pattern"], value) and len(value) <= shape.metadata["max"], key
    assert declared["actionAfterCompletion"] in request["ActionAfterCompletion"].enum
    assert declared["flexibleTimeWindow"]["mode"] in request["FlexibleTimeWindow"].members["Mode"].enum
    assert len(declared["scheduleExpression"]) <= request["ScheduleExpression"].metadata["max"]
    # The universal target names SageMaker's DeleteEndpoint; its input is exactly that operation's request.
    service, action = declared["target"]["arn"].rsplit(":", 2)[-2:]
    operation = botocore.session.get_session().get_service_model(service).operation_model(
        action[0].upper() + action[1:])
    assert operation.name == "DeleteEndpoint"
    assert set(json.loads(declared["target"]["input"])) == set(operation.input_shape.required_members) == \
        {"EndpointName"}


# ------------------------------------------------------------------------------------------ created against moto


@pytest.fixture
def session(moto_session):
    return moto_session


def create_as_declared(session, run: OfflineRun) -> dict:
    """The group, role, policy and schedule, as the calls the provider makes from the declared inputs."""
    scheduler, iam = session.client("scheduler"), session.client("iam")
    group = inputs(run, f"{PREFIX}-end-group")
    group_arn = scheduler.create_schedule_group(
        Name=group["name"], Tags=[{"Key": k, "Value": v} for k, v in group["tags"].items()])["ScheduleGroupArn"]
    role = inputs(run, f"{PREFIX}-end-role")
    role_arn = iam.create_role(RoleName=f"{PREFIX}-end-role", AssumeRolePolicyDocument=role["assumeRolePolicy"],
                               Tags=[{"Key": k, "Value": v} for k, v in role["tags"].items()])["Role"]["Arn"]
    iam.put_role_policy(RoleName=f"{PREFIX}-end-role", PolicyName="delete",
                        PolicyDocument=inputs(run, f"{PREFIX}-end-delete")["policy"])
    declared = inputs(run, f"{PREFIX}-end")
    target = declared["target"]
    scheduler.create_schedule(
        Name=declared["name"], GroupName=declared["groupName"], Description=declared["description"],
        ScheduleExpression=declared["scheduleExpression"],
        ScheduleExpressionTimezone=declared["scheduleExpressionTimezone"],
        FlexibleTimeWindow={"Mode": declared["flexibleTimeWindow"]["mode"]},
        ActionAfterCompletion=declared["actionAfterCompletion"],
        Target={"Arn": target["arn"], "RoleArn": role_arn, "Input": target["input"],
                "RetryPolicy": {"MaximumRetryAttempts": target["retryPolicy"]["maximumRetryAttempts"],
                                "MaximumEventAgeInSeconds": target["retryPolicy"]["maximumEventAgeInSeconds"]}})
    return {"scheduler": scheduler, "group_arn": group_arn, "role_arn": role_arn}


def test_the_schedule_as_declared_is_accepted_and_read_back(session):
    run = shipped()
    made = create_as_declared(session, run)
    scheduler = made["scheduler"]
    got = scheduler.get_schedule(GroupName="nemotron-jumpstart", Name="delete-endpoint")
    assert got["ScheduleExpression"] == "at(2026-12-01T17:30:00)" and got["ScheduleExpressionTimezone"] == "UTC"
    assert got["FlexibleTimeWindow"] == {"Mode": "OFF"} and got["ActionAfterCompletion"] == "DELETE"
    assert got["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:sagemaker:deleteEndpoint"
    assert got["Target"]["RoleArn"] == made["role_arn"]
    assert json.loads(got["Target"]["Input"]) == {"EndpointName": "nemotron-jumpstart"}
    assert got["Arn"] == f"{made['group_arn'].replace(':schedule-group/', ':schedule/')}/delete-endpoint"
    # The group's tags are what the reaper and teardown select on.
    tags = scheduler.list_tags_for_resource(ResourceArn=made["group_arn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == TAGS
    listed = scheduler.list_schedules(GroupName="nemotron-jumpstart")["Schedules"]
    assert [s["Name"] for s in listed] == ["delete-endpoint"]


def test_when_it_fires_its_input_deletes_the_endpoint_its_policy_names(session):
    """What Scheduler does at the time, replayed: DeleteEndpoint with the schedule's input, on the ARN the role's
    policy allows (moto's account is the offline engine's fake account, so the ARNs compare as they are)."""
    assert DEFAULT_ACCOUNT_ID == FAKE_ACCOUNT
    run = shipped()
    sagemaker = deploy(session)["sagemaker"]
    endpoint = sagemaker.describe_endpoint(EndpointName="nemotron-jumpstart")
    allowed = policy_statements(run, f"{PREFIX}-end-delete")[0]["Resource"]
    assert endpoint["EndpointArn"] == allowed == ENDPOINT_ARN
    made = create_as_declared(session, run)
    schedule = made["scheduler"].get_schedule(GroupName="nemotron-jumpstart", Name="delete-endpoint")
    sagemaker.delete_endpoint(**json.loads(schedule["Target"]["Input"]))
    assert sagemaker.list_endpoints()["Endpoints"] == []
    # What stays after the end costs nothing by the hour: the model and the endpoint config (teardown removes them).
    assert [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]] == \
        ["nemotron-jumpstart-config"]
