"""scripts/bench.py --sagemaker-endpoint: the request it sends through sagemaker-runtime (checked by botocore's
Stubber against the real API model) and how it measures the PayloadPart event stream, cut at arbitrary bytes."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from scripts import bench
from tests.bench.sagemaker_stream import PayloadStream, stream_of_tokens


def add_stream(stubber, events, **response):
    body = PayloadStream(events)
    stubber.add_response("invoke_endpoint_with_response_stream", {"Body": body, **response}, EXPECTED)
    body.armed = True


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = boto3.client("sagemaker-runtime", region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")  # never reaches AWS: the Stubber answers
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


EXPECTED = {"EndpointName": "nemotron-js", "Body": ANY, "ContentType": "application/json",
            "Accept": "text/event-stream"}


def test_sagemaker_stream_is_timed_like_http(runtime, capsys):
    client, stubber = runtime
    for _ in range(3):
        add_stream(stubber, stream_of_tokens(0.15, 0.02, 6), ContentType="text/event-stream")
    stubber.add_client_error("invoke_endpoint_with_response_stream", "ModelError", "model container crashed",
                             http_status_code=424, expected_params=EXPECTED)
    code = bench.main(["--sagemaker-endpoint", "nemotron-js", "--concurrency", "1", "--requests-per-level", "4",
                       "--no-checks", "--json"], sagemaker_client=client)
    record = json.loads(capsys.readouterr().out)
    assert code == 1  # the ModelError counts
    level = record["levels"][0]
    assert record["endpoint"] == {"kind": "sagemaker", "endpoint": "nemotron-js", "region": "us-east-1"}
    assert record["model"] == "nemotron-js"  # from the chunks: SageMaker has no /v1/models
    assert level["ok"] == 3 and level["errors"] == {"http 424": 1}
    assert 0.15 <= level["ttft_s"]["p50"] <= 0.25
    assert 0.015 <= level["inter_token_latency_s"]["p50"] <= 0.035
    assert level["output_tokens"] == 3 * 6


def test_sagemaker_request_body_is_an_openai_streamed_chat(runtime, capsys):
    client, stubber = runtime
    sent = []
    client.meta.events.register("before-parameter-build.sagemaker-runtime.InvokeEndpointWithResponseStream",
                                lambda params, **_: sent.append(json.loads(params["Body"])))
    add_stream(stubber, [(0.0, {"ModelStreamError": {"Message": "CUDA out of memory",
                                                      "ErrorCode": "ModelStreamError"}})])
    code = bench.main(["--sagemaker-endpoint", "nemotron-js", "--concurrency", "1", "--requests-per-level", "1",
                       "--max-tokens", "64", "--no-checks", "--json"], sagemaker_client=client)
    level = json.loads(capsys.readouterr().out)["levels"][0]
    assert code == 1 and level["errors"] == {"stream error": 1}
    assert "CUDA out of memory" in level["error_examples"][0]
    body = sent[0]
    assert body["stream"] is True and body["max_tokens"] == 64
    assert body["stream_options"] == {"include_usage": True} and body["messages"][0]["role"] == "user"
    assert "model" not in body  # the endpoint serves one model; no name is invented
