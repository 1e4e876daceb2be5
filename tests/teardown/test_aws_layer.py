"""scripts/_aws.py: error naming other scripts can use (an HTML error page is one line, never the page), and the
clients honour AWS_ENDPOINT_URL. Real botocore parsing of real HTTP answers from a local server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError
from botocore.parsers import ResponseParserError

from scripts._aws import AwsClients, describe_error, name_html_error_pages, session_for

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
    from scripts._aws import AwsClients

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
