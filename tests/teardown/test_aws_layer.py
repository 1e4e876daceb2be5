"""scripts/aws/: error naming other scripts can use (an HTML error page is one line, never the page), and the
clients honour AWS_ENDPOINT_URL. Real botocore parsing of real HTTP answers from a local server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError
from botocore.parsers import ResponseParserError
from botocore.stub import Stubber

from scripts.aws import (
    DEFAULT_TOTAL_ATTEMPTS,
    FAILURE,
    RETRY,
    SUCCESS,
    AwsClients,
    describe_error,
    most_polls,
    name_html_error_pages,
    session_for,
    token_pages,
    wait_until,
    waiter_state,
)

PAGES = {
    "doctype": b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>"
               b"<body><center><h1>503 Service Temporarily Unavailable</h1></center><hr>nginx</body></html>\n",
    "bare": b"<html><body><b>Http/1.1 Service Unavailable</b></body></html>",
    "indented": b"\n  <HTML><body>gateway timeout</body></HTML>",
}

SERVICES = [
    ("ec2", lambda c: c.describe_instances(), "ec2:DescribeInstances"),
    ("sagemaker", lambda c: c.list_endpoints(), "sagemaker:ListEndpoints"),
    ("elbv2", lambda c: c.describe_load_balancers(), "elasticloadbalancing:DescribeLoadBalancers"),
    ("iam", lambda c: c.list_roles(), "iam:ListRoles"),
]
SERVICE_IDS = ["ec2 (ec2 protocol)", "sagemaker (json)", "elbv2 (query)", "iam (query, global)"]


@pytest.fixture
def html_server():
    """Answers every request with an HTML 503 page (as a proxy or a load balancer in front of an API does)."""
    answer = {"page": PAGES["doctype"], "status": 503}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(answer["status"])
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(answer["page"])))
            self.end_headers()
            self.wfile.write(answer["page"])

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answer
    finally:
        server.shutdown()
        server.server_close()


def _client(service: str, endpoint: str, named: bool = True):
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    if named:
        name_html_error_pages(session)
        name_html_error_pages(session)  # idempotent
    return session.client(service, endpoint_url=endpoint, config=Config(retries={"max_attempts": 1,
                                                                                 "mode": "standard"}))


@pytest.mark.parametrize("page", sorted(PAGES))
@pytest.mark.parametrize(("service", "call", "operation"), SERVICES, ids=SERVICE_IDS)
def test_an_html_5xx_page_is_one_line_with_status_and_operation(html_server, page, service, call, operation):
    endpoint, answer = html_server
    answer["page"] = PAGES[page]
    with pytest.raises(ClientError) as raised:
        call(_client(service, endpoint))
    assert describe_error(raised.value) == \
        f"{operation} failed: HTTP 503 (the service answered with an HTML error page)"


@pytest.mark.parametrize(("service", "call", "operation"), SERVICES, ids=SERVICE_IDS)
def test_an_html_4xx_page_is_named_the_same_way(html_server, service, call, operation):
    endpoint, answer = html_server
    answer["status"] = 403
    with pytest.raises(ClientError) as raised:
        call(_client(service, endpoint))
    assert describe_error(raised.value) == \
        f"{operation} failed: HTTP 403 (the service answered with an HTML error page)"


def test_without_the_hook_an_unreadable_page_still_never_reaches_the_line(html_server):
    endpoint, _ = html_server
    with pytest.raises(ResponseParserError) as raised:  # what botocore raises on its own
        _client("ec2", endpoint, named=False).describe_instances()
    assert "<html" in str(raised.value).lower()
    line = describe_error(raised.value, "ec2:DescribeInstances")
    assert line == "ec2:DescribeInstances failed: its answer could not be read (the service answered with an HTML " \
                   "error page)"


@pytest.mark.parametrize(("error", "line"), [
    (ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "DescribeVolumes"),
     "AccessDenied: not allowed"),
    (ClientError({"Error": {"Code": "503", "Message": "Service Unavailable"},
                  "ResponseMetadata": {"HTTPStatusCode": 503}}, "DescribeVolumes"),
     "DescribeVolumes failed: HTTP 503 (Service Unavailable)"),
    (ClientError({"Error": {"Code": "InternalError", "Message": "<html><body>boom</body></html>"}}, "ListModels"),
     "InternalError: the service answered with an HTML error page"),
    (NoCredentialsError(), "NoCredentialsError: Unable to locate credentials"),
    (KeyError("Reservations"), "KeyError: 'Reservations'"),
    (RuntimeError("two\nlines"), "RuntimeError: two lines"),
    (RuntimeError(), "RuntimeError"),
])
def test_describe_error_is_one_line(error, line):
    assert describe_error(error) == line


def test_describe_error_is_bounded():
    line = describe_error(RuntimeError("x" * 1000), limit=50)
    assert len(line) == 50 and line.endswith("...")


def test_clients_honour_aws_endpoint_url(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clients = AwsClients(session_for("us-east-1"))
    assert clients.client("ec2").meta.endpoint_url == "http://127.0.0.1:5999"
    assert clients.client("sagemaker").meta.endpoint_url == "http://127.0.0.1:5999"


def test_every_scripts_clients_name_an_html_page_in_one_line(html_server, monkeypatch):
    """preflight, jumpstart resolve/smoke and bench get their clients from AwsClients, as teardown does."""
    from scripts.aws import AwsClients

    endpoint, _ = html_server
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    with pytest.raises(ClientError) as raised:
        AwsClients(session).client("sagemaker").describe_hub_content(
            HubName="SageMakerPublicHub", HubContentType="Model", HubContentName="x")
    assert "<" not in str(raised.value)
    assert describe_error(raised.value) == \
        "sagemaker:DescribeHubContent failed: HTTP 503 (the service answered with an HTML error page)"


# ---- clients, waits and paging of scripts/aws --------------------------------------------------------------------

def _retries(client) -> dict:
    return client.meta.config.retries


def test_clients_use_the_standard_retry_mode_and_honour_aws_max_attempts(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    clients = AwsClients(session_for("us-east-1"))
    assert _retries(clients.client("ec2")) == {"mode": "standard", "total_max_attempts": DEFAULT_TOTAL_ATTEMPTS}
    assert clients("ec2", "eu-west-1").meta.region_name == "eu-west-1"  # one client per (service, region)
    assert clients("ec2") is clients.client("ec2", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    assert _retries(AwsClients(session_for("us-east-1")).client("ec2"))["total_max_attempts"] == 2
    once = AwsClients(session_for("us-east-1"), config=Config(retries={"total_max_attempts": 1}, read_timeout=7))
    assert _retries(once.client("sts")) == {"mode": "standard", "total_max_attempts": 1}
    assert once.client("sts").meta.config.read_timeout == 7


class FakeClock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_wait_until_is_bounded_in_time_and_ends_on_the_deadline():
    clock, answers = FakeClock(), []
    answer, done = wait_until(lambda: answers.append(clock()) or "creating", lambda a: a == "ready", timeout_s=25,
                              interval_s=10, sleep=clock.sleep, clock=clock)
    assert (answer, done) == ("creating", False)
    assert answers == [0, 10, 20, 25] and clock.slept == [10, 10, 5]  # the last poll falls on the deadline


def test_wait_until_is_bounded_in_count_when_the_clock_does_not_move():
    polls = []
    _, done = wait_until(lambda: polls.append(1), lambda _: False, timeout_s=30, interval_s=10,
                         sleep=lambda _: None, clock=lambda: 0.0)
    assert not done and len(polls) == most_polls(30, 10) == 4


def test_wait_until_stops_when_done_and_reports_every_poll():
    clock, seen = FakeClock(), []
    states = iter(["Creating", "Creating", "InService"])
    answer, done = wait_until(lambda: next(states), lambda s: s == "InService", timeout_s=3600, interval_s=30,
                              sleep=clock.sleep, clock=clock, on_poll=lambda s, waited: seen.append((s, waited)))
    assert done and answer == "InService" and clock.slept == [30, 30]
    assert seen == [("Creating", 0), ("Creating", 30), ("InService", 60)]


def test_waiter_state_judges_one_poll_by_the_botocore_waiter():
    client = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1").client("sagemaker")
    stub = Stubber(client)
    described = {"EndpointName": "e", "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e",
                 "EndpointConfigName": "c", "CreationTime": "2026-01-01T00:00:00Z",
                 "LastModifiedTime": "2026-01-01T00:00:00Z"}
    stub.add_response("describe_endpoint", {**described, "EndpointStatus": "Deleting"}, {"EndpointName": "e"})
    stub.add_response("describe_endpoint", {**described, "EndpointStatus": "Failed"}, {"EndpointName": "e"})
    stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint e")
    stub.add_client_error("describe_endpoint", "AccessDeniedException", "not allowed")
    with stub:
        assert [waiter_state(client, "endpoint_deleted", EndpointName="e") for _ in range(3)] == [
            RETRY, FAILURE, SUCCESS]
        with pytest.raises(ClientError):  # an error no acceptor expects is the caller's, as the waiter's would be
            waiter_state(client, "endpoint_deleted", EndpointName="e")


def test_token_pages_follows_next_token_and_is_bounded():
    asked = []

    def listing(**request):
        asked.append(request.get("NextToken"))
        return {"Items": [len(asked)], "NextToken": f"t{len(asked)}"}  # never ends

    assert token_pages(listing, "Items", most_pages=3, Name="x") == [1, 2, 3]
    assert asked == [None, "t1", "t2"]
