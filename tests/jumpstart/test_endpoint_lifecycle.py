"""The endpoint lifecycle smoke and teardown rely on, against moto: create the model, endpoint config and endpoint the
planner describes, wait until InService, invoke it with a chat request, and delete the endpoint, its config and its
model in dependency order (scripts/jumpstart.py). moto rejects ml.p5* endpoint configs, so its instance-type check is
patched; its InvokeEndpoint answers canned bodies, queued here. Status sequences moto cannot produce (Creating, Failed)
come from a botocore Stubber."""

from __future__ import annotations

import json

import boto3
import pytest
import requests
from botocore.stub import ANY, Stubber
from moto.core import DEFAULT_ACCOUNT_ID

from scripts.aws import AwsClients
from scripts.jumpstart import (
    EndpointNotReady,
    endpoint_state,
    invoke_chat,
    main,
    stream_chat,
    wait_in_service,
)
from scripts.teardown import main as teardown_main
from tests.bench.sagemaker_stream import PayloadStream, stream_of_tokens
from tests.jumpstart.endpoint import PLAN, SPEC, deploy
from tests.jumpstart.stacks import NOW, STACKS_DIR
from tests.teardown.aws_fakes import fake_session

REGION = "us-east-1"
ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "model": "nemotron-3-ultra",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "A model mixing Mamba and attention."},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}}


@pytest.fixture(autouse=True)
def aws(moto_session):
    return moto_session


@pytest.fixture
def session():
    return boto3.Session(region_name=REGION)


def queue_answer(body: dict | str) -> None:
    """moto answers InvokeEndpoint from a queue (else the literal "body"), filled through moto's own API."""
    text = body if isinstance(body, str) else json.dumps(body)
    result = {"Body": text, "ContentType": "application/json", "InvokedProductionVariant": SPEC.variant_name,
              "CustomAttributes": ""}
    response = requests.post("http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
                             json={"account_id": DEFAULT_ACCOUNT_ID, "region": REGION, "results": [result]},
                             timeout=5)
    response.raise_for_status()


def test_created_endpoint_is_in_service_with_the_planned_variant(session):
    c = deploy(session)
    state = wait_in_service(c["sagemaker"], SPEC.endpoint_name, timeout_s=5, sleep=pytest.fail)
    assert (state.status, state.config_name) == ("InService", "nemotron-jumpstart-config")
    assert state.to_json()["variants"] == [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1,
                                           "DesiredInstanceCount": 1}]
    config = c["sagemaker"].describe_endpoint_config(EndpointConfigName=state.config_name)["ProductionVariants"][0]
    assert (config["ModelDataDownloadTimeoutInSeconds"], config["ContainerStartupHealthCheckTimeoutInSeconds"]) == \
        (528, 2064)


def test_invoke_reads_an_openai_chat_completion(session):
    c = deploy(session)
    queue_answer(ANSWER)
    ticks = iter([10.0, 11.25])
    result = invoke_chat(c["runtime"], SPEC.endpoint_name, {"messages": [{"role": "user", "content": "hi"}]},
                         clock=lambda: next(ticks))
    assert result.ok and result.latency_s == 1.25
    assert (result.completion.prompt_tokens, result.completion.completion_tokens) == (21, 9)
    assert result.tokens_per_s == pytest.approx(7.2)
    assert result.to_json()["content"] == "A model mixing Mamba and attention."


def test_invoke_reports_a_body_that_is_not_a_chat_completion(session):
    c = deploy(session)  # moto's default answer is the literal "body"
    result = invoke_chat(c["runtime"], SPEC.endpoint_name, {"messages": []})
    assert not result.ok and result.error == "the response is not JSON: 'body'"
    queue_answer({"generated_text": "hello"})
    result = invoke_chat(c["runtime"], SPEC.endpoint_name, {"messages": [{"role": "user", "content": "x"}]})
    assert result.error == ("the response is not an OpenAI chat completion (no choices[0].message; got "
                            "['generated_text'])")


def test_smoke_end_to_end(session, capsys):
    deploy(session)
    queue_answer(ANSWER)
    code = main(["smoke", "jumpstart", "--json", "--stacks-dir", str(STACKS_DIR)], clients=AwsClients(session),
                now=NOW)
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True
    assert report["endpoint"]["status"] == "InService"
    assert report["request"]["max_tokens"] == 128
    assert (report["result"]["prompt_tokens"], report["result"]["completion_tokens"]) == (21, 9)
    assert report["result"]["latency_ms"] >= 0


def test_smoke_table_and_a_missing_endpoint(session, capsys):
    assert main(["smoke", "jumpstart", "--stacks-dir", str(STACKS_DIR)], clients=AwsClients(session)) == 1
    assert capsys.readouterr().err.strip() == ("python -m scripts.jumpstart: endpoint nemotron-jumpstart does not "
                                               "exist in us-east-1; deploy it with `pulumi up -s jumpstart`")
    deploy(session)
    queue_answer(ANSWER)
    assert main(["smoke", "jumpstart", "--stacks-dir", str(STACKS_DIR)], clients=AwsClients(session)) == 0
    out = capsys.readouterr().out
    assert "nemotron-jumpstart InService (AllTraffic x 1)" in out and "prompt 21, completion 9" in out


def test_teardown_removes_scaling_endpoint_config_and_model_in_dependency_order(capsys):
    """The delete half of the lifecycle is the toolkit's one teardown path (scripts.teardown), not a second one."""
    session, _, target_tags, _ = fake_session()
    c = deploy(session)
    c["autoscaling"].register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=SPEC.resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=1, MaxCapacity=2)
    target_arn = c["autoscaling"].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0][
        "ScalableTargetARN"]
    target_tags.tags[target_arn] = dict(PLAN.tags)
    calls: list[str] = []
    session.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    assert teardown_main(["--stack", "jumpstart", "--yes", "--region", REGION, "--json"], session=session) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["left"] == [] and report["usd_per_hour_stopped"] == pytest.approx(PLAN.instance.usd_per_hour)
    removals = [n for n in calls if n.startswith(("Delete", "Deregister"))]
    assert removals == ["DeregisterScalableTarget", "DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel"]
    assert endpoint_state(c["sagemaker"], SPEC.endpoint_name) is None
    assert c["sagemaker"].list_models()["Models"] == []
    assert c["sagemaker"].list_endpoint_configs()["EndpointConfigs"] == []
    assert c["autoscaling"].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    # a second run finds nothing of the stack
    assert teardown_main(["--stack", "jumpstart", "--yes", "--region", REGION, "--json"], session=session) == 0
    assert json.loads(capsys.readouterr().out)["deletions"] == []


# ---- status sequences moto does not produce -------------------------------------------------------------------

def stubbed_sagemaker():
    client = boto3.Session(region_name=REGION).client("sagemaker")
    return client, Stubber(client)


def described(status: str, reason: str | None = None) -> dict:
    found = {"EndpointName": "e", "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e",
             "EndpointConfigName": "e-config", "EndpointStatus": status, "CreationTime": NOW,
             "LastModifiedTime": NOW}
    return {**found, "FailureReason": reason} if reason else found


class Clock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_wait_polls_until_in_service():
    client, stub = stubbed_sagemaker()
    for status in ("Creating", "Creating", "InService"):
        stub.add_response("describe_endpoint", described(status), {"EndpointName": "e"})
    clock, seen = Clock(), []
    with stub:
        state = wait_in_service(client, "e", timeout_s=3600, poll_s=30, sleep=clock.sleep, clock=clock,
                                on_poll=lambda s: seen.append(s.status))
    assert state.status == "InService" and clock.slept == [30, 30] and seen == ["Creating", "Creating", "InService"]


def test_wait_stops_on_failure_with_the_reason_and_on_timeout():
    client, stub = stubbed_sagemaker()
    stub.add_response("describe_endpoint", described("Failed", "The primary container did not pass the ping health "
                                                               "check"), {"EndpointName": "e"})
    with stub, pytest.raises(EndpointNotReady, match="is Failed: The primary container did not pass the ping"):
        wait_in_service(client, "e", timeout_s=3600, sleep=pytest.fail)
    client, stub = stubbed_sagemaker()
    for _ in range(3):
        stub.add_response("describe_endpoint", described("Creating"), {"EndpointName": "e"})
    clock = Clock()
    with stub, pytest.raises(EndpointNotReady, match="still Creating after 60 s"):
        wait_in_service(client, "e", timeout_s=60, poll_s=30, sleep=clock.sleep, clock=clock)


def test_streamed_smoke_request_is_measured_by_the_benchmark_accumulator():
    client = boto3.Session(region_name=REGION).client("sagemaker-runtime")
    stub, sent = Stubber(client), []
    client.meta.events.register("before-parameter-build.sagemaker-runtime.InvokeEndpointWithResponseStream",
                                lambda params, **_: sent.append(json.loads(params["Body"])))
    body = PayloadStream(stream_of_tokens(0.0, 0.0, 3))
    stub.add_response("invoke_endpoint_with_response_stream", {"Body": body, "ContentType": "text/event-stream"},
                      {"EndpointName": "nemotron-jumpstart", "Body": ANY, "ContentType": "application/json",
                       "Accept": "text/event-stream"})
    body.armed = True
    with stub:
        result = stream_chat(client, "nemotron-jumpstart", {"messages": [{"role": "user", "content": "hi"}],
                                                            "max_tokens": 8}, timeout_s=30)
    assert sent[0]["stream"] is True and sent[0]["stream_options"] == {"include_usage": True}
    assert result.ok and result.completion.content == "t0 t1 t2 " and result.completion.completion_tokens == 3
    assert result.ttft_s is not None and result.to_json()["finish_reason"] == "stop"
