"""`make check-references` reads each source's answer right, names what is missing or newer, and fails fast and clearly
without a network. Offline: the HTTPS sources answer from tests/references/recorded/ through httpx.MockTransport,
the AWS ones through botocore Stubbers; the one subprocess run sees only a refusing proxy on loopback."""

import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import httpx
import pytest
import yaml
from botocore.stub import Stubber

from planner import reference_checks as rc
from planner.references import REFERENCES, Reference
from scripts import check_references as cr
from scripts.aws import AwsClients

REPO = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).parent / "recorded"
ROUTES = yaml.safe_load((RECORDED / "routes.yaml").read_text())
AWS_ANSWERS = yaml.safe_load((RECORDED / "aws.yaml").read_text())
NGC = {"NGC_API_KEY": "test-ngc-key"}
AWS_KEYS = [r.key for r in REFERENCES if r.kind in rc.AWS_KINDS]


# ------------------------------------------------------------------------------------------------------- fakes
class FakeInternet:
    """Answers as routes.yaml says; counts what each host was asked. An unexpected request fails the test."""

    def __init__(self, routes=None):
        self.routes = {**ROUTES["routes"], **(routes or {})}
        self.asked = Counter()
        self.seen = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        self.asked[host] += 1
        self.seen.append(f"{request.method} {host}{path}")
        if path == "/":  # the probe: any answer means the host is reachable
            return httpx.Response(200)
        query = request.url.query.decode()
        key = f"{request.method} {host}{path}"
        route = self.routes.get(f"{key}?{query}") or self.routes.get(key)
        assert route is not None, f"unexpected request: {key}?{query}"
        guard = ROUTES["hosts"].get(host, {})
        needed = route.get("auth") or (guard.get("auth") if path not in guard.get("except", ()) else None)
        if needed and request.headers.get("authorization") != needed:
            headers = {"www-authenticate": guard["challenge"]} if "challenge" in guard else {}
            return httpx.Response(401, headers=headers, content=(RECORDED / guard["unauthorized"]).read_bytes())
        return httpx.Response(route.get("status", 200), headers=route.get("headers", {}), content=_body(route))


def _body(route) -> bytes:
    if "file" in route:
        return (RECORDED / route["file"]).read_bytes()
    if "json" in route:
        return json.dumps(route["json"]).encode()
    return b""


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def aws_answer(operation, reference):
    answer = copy.deepcopy(AWS_ANSWERS[operation])
    for field in answer.get("Policy", answer.get("Parameter", {})):
        block = answer.get("Policy", answer.get("Parameter"))
        if isinstance(block[field], str):
            block[field] = block[field].format(name=reference.name.rsplit("/", 1)[-1] if operation == "get_policy"
                                               else reference.name, arn=reference.name)
    return answer


def stubbed_aws(references, answers=None):
    """AWS clients with Stubbers queued in registry order; `answers` maps a key to an error code or a response."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    clients = {s: session.client(s) for s in ("iam", "ssm", "sagemaker", "eks")}
    stubbers = {s: Stubber(c) for s, c in clients.items()}
    answers = answers or {}
    for r in references:
        given = answers.get(r.key)
        if r.kind == "managed-policy":
            service, operation, params = "iam", "get_policy", {"PolicyArn": r.name}
        elif r.kind == "ssm-parameter":
            service, operation, params = "ssm", "get_parameter", {"Name": r.name}
        elif r.kind == "jumpstart-model":
            service, operation = "sagemaker", "list_hub_contents"
            params = {"HubName": "SageMakerPublicHub", "HubContentType": "Model", "NameContains": r.name}
        elif r.kind == "kubernetes-version":
            service, operation, params = "eks", "describe_cluster_versions", {}
        elif r.kind == "eks-addon":
            service, operation = "eks", "describe_addon_versions"
            params = {"addonName": r.name, "kubernetesVersion": "1.35"}
        else:
            continue
        if isinstance(given, str):
            stubbers[service].add_client_error(operation, service_error_code=given, service_message=f"{given} (test)",
                                               http_status_code=404, expected_params=params)
        else:
            stubbers[service].add_response(operation, given or aws_answer(operation, r), params)
    for s in stubbers.values():
        s.activate()
    return AwsClients(session, clients), stubbers


def run(references=REFERENCES, routes=None, env=NGC, aws_answers=None, transport=None, budget=60.0):
    internet = FakeInternet(routes)
    aws, stubbers = stubbed_aws(references, aws_answers)
    web = cr.Web(httpx.Client(transport=httpx.MockTransport(transport or internet)), cr.Budget(budget))
    rows = cr.check_all(references, web, aws, env)
    return {r.key: r for r in rows}, web, internet, stubbers


def with_version(key, version, **changes):
    return tuple(dataclasses.replace(r, version=version, **changes) if r.key == key else r for r in REFERENCES)


# ------------------------------------------------------------------------------------------------------- pure part
@pytest.mark.parametrize(("current", "candidates", "newest"), [
    ("v0.22.0", ["v0.21.0", "v0.22.0", "v0.33.0", "v0.9.2"], "v0.33.0"),  # numeric, not lexicographic
    ("v0.22.0", ["v0.33.0-cu130", "v0.34.0rc1", "latest", "nightly-0b7d"], None),  # other shapes do not count
    ("1.30.0-alpine", ["1.30.1-alpine", "1.30.1-alpine3.22", "1.31.0-alpine-slim"], "1.30.1-alpine"),
    ("1.30.0-alpine", ["1.30.0-alpine", "1.29.3-alpine"], None),
    ("0.20.0", ["0.20.0", "0.20.1-rc.1", "0.21.0"], "0.21.0"),
    ("v6.2.3", ["v7.0.0"], "v7.0.0"),
    ("1.35", ["1.34", "1.36", "1.36.1"], "1.36"),
    ("latest", ["v1.0.0"], None),
])
def test_newest_of_shape(current, candidates, newest):
    assert rc.newest_of_shape(current, candidates) == newest


@pytest.mark.parametrize(("name", "where"), [
    ("vllm/vllm-openai", ("registry-1.docker.io", "vllm/vllm-openai")),
    ("nginx", ("registry-1.docker.io", "library/nginx")),
    ("nvcr.io/nim/nvidia/x", ("nvcr.io", "nim/nvidia/x")),
    ("localhost:5000/a/b", ("localhost:5000", "a/b")),
])
def test_registry_and_repository(name, where):
    assert rc.registry_and_repository(name) == where


def test_challenge_and_link_parsing():
    scheme, params = rc.parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                        'scope="repository:vllm/vllm-openai:pull"')
    assert scheme == "bearer" and params["realm"] == "https://auth.docker.io/token"
    assert params["scope"] == "repository:vllm/vllm-openai:pull"
    assert rc.next_link('</v2/x/tags/list?last=b&n=2>; rel="next"') == "/v2/x/tags/list?last=b&n=2"
    assert rc.next_link(None) is None and rc.next_link('<https://x>; rel="prev"') is None


def test_every_kind_has_an_online_check():
    assert {r.kind for r in REFERENCES} <= set(cr.HTTP_CHECKS) | set(cr.AWS_CHECKS)


# ------------------------------------------------------------------------------------------------------- the run
def older_vllm():
    """The registry as it was with the article's vLLM tag: the recorded tags list has v0.33.0 beside it."""
    return with_version("vllm-image", "v0.22.0")


def test_every_entry_against_recorded_answers():
    rows, web, internet, stubbers = run(older_vllm())
    assert set(rows) == {r.key for r in REFERENCES}
    assert rows["vllm-image"].status == rc.NEWER and rows["vllm-image"].newest == "v0.33.0"  # read across two pages
    assert {k for k, r in rows.items() if r.status != rc.OK} == {"vllm-image"}, {k: r.detail for k, r in rows.items()}
    assert not web.unreachable
    assert "matches: nvidia-nemotron-3-ultra-550b-a55b-fp8" in rows["jumpstart-model-name"].detail
    assert "standard support until 2027-03-27" in rows["eks-kubernetes-version"].detail
    # registry.k8s.io redirects to a backing registry that asks for its own token: the token went to that host
    assert "GET us-west1-docker.pkg.dev/v2/token" in internet.seen
    assert "us-west1-docker.pkg.dev/k8s-artifacts-prod" not in rows["lws-chart"].detail
    for s in stubbers.values():
        s.assert_no_pending_responses()  # every AWS entry was asked, in registry order, with the expected params
    # the annotated tag of configure-aws-credentials was followed to its commit
    assert ("GET api.github.com/repos/aws-actions/configure-aws-credentials/git/tags/"
            "0000000000000000000000000000000000a6e623") in internet.seen


def test_all_ok_exits_zero(capsys):
    references = REFERENCES  # the registry pins v0.33.0, the newest tag recorded
    aws, _ = stubbed_aws(references)
    client = httpx.Client(transport=httpx.MockTransport(FakeInternet()))
    code = cr.main(["--json"], http=client, aws=aws, environ=NGC, references=references)
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] is True
    assert out["counts"] == {"ok": len(references), "missing": 0, "newer": 0, "unchecked": 0}


def test_a_missing_tag_is_missing():
    rows, *_ = run(with_version("nim-auth-proxy-image", "1.30.9-alpine"))
    row = rows["nim-auth-proxy-image"]
    assert row.status == rc.MISSING and row.verdict == "missing"
    assert "tag 1.30.9-alpine not in registry-1.docker.io/nginxinc/nginx-unprivileged (404)" in row.detail
    assert "newest of that shape: 1.30.0-alpine" in row.detail


def test_a_newer_version_is_named(capsys):
    newer_tags = {"GET registry-1.docker.io/v2/nginxinc/nginx-unprivileged/tags/list?n=1000": {"json": {
        "name": "nginxinc/nginx-unprivileged", "tags": ["1.30.0-alpine", "1.30.1-alpine", "1.31.0-alpine3.22"]}}}
    rows, *_ = run(older_vllm(), routes=newer_tags)
    assert rows["nim-auth-proxy-image"].verdict == "newer: 1.30.1-alpine"
    aws, _ = stubbed_aws(older_vllm())
    client = httpx.Client(transport=httpx.MockTransport(FakeInternet(newer_tags)))
    assert cr.main([], http=client, aws=aws, environ=NGC, references=older_vllm()) == 1
    table = capsys.readouterr().out
    assert "newer: 1.30.1-alpine" in table and "newer: v0.33.0" in table


def test_missing_and_gated_checkpoints_say_which():
    references = (Reference("gone", "checkpoint", "nvidia/Nemotron-3-Ultra-Gone"),
                  Reference("gated", "checkpoint", "nvidia/Nemotron-3-Ultra-Gated"))
    rows, *_ = run(references)
    assert rows["gone"].status == rc.MISSING
    assert rows["gone"].detail == "Hugging Face answered 401: RepoNotFound Repository not found"
    assert rows["gated"].status == rc.UNCHECKED and rows["gated"].detail.startswith("gated: Hugging Face answered 401")
    assert "HF_TOKEN" in rows["gated"].detail


def test_hf_token_is_sent_when_set():
    seen = []

    def handler(request):
        seen.append(request.headers.get("authorization"))
        return FakeInternet()(request)

    reference = (next(r for r in REFERENCES if r.key == "checkpoint-bf16"),)
    run(reference, env={"HF_TOKEN": "hf_test"}, transport=handler)
    assert "Bearer hf_test" in seen


def test_nvcr_is_not_asked_without_an_ngc_key():
    rows, web, internet, _ = run(env={})
    assert rows["nim-image"].status == rc.UNCHECKED and rows["nim-image"].detail == "NGC_API_KEY not set"
    assert internet.asked["nvcr.io"] == 0


def test_a_moved_action_tag_is_reported():
    rows, *_ = run(with_version("action-pulumi", "v7.0.0", repository="0" * 40))
    assert rows["action-pulumi"].status == rc.MISSING
    assert "points at 8e5e406f4007fca908480587cb9893c07090f58d, not at the pinned 0000" in rows["action-pulumi"].detail


def test_an_action_version_without_a_tag_is_missing():
    rows, *_ = run(with_version("action-checkout", "v9.9.9"))
    assert rows["action-checkout"].status == rc.MISSING
    assert rows["action-checkout"].detail == "no tag v9.9.9 in actions/checkout"


def test_aws_names_that_are_gone_are_missing():
    policy = next(k for k in AWS_KEYS if k.startswith("policy-"))
    parameter = next(r.key for r in REFERENCES if r.kind == "ssm-parameter")
    rows, *_ = run(aws_answers={policy: "NoSuchEntity", parameter: "ParameterNotFound",
                                "jumpstart-model-name": {"HubContentSummaries": []}})
    assert rows[policy].status == rc.MISSING and "iam:GetPolicy: NoSuchEntity" in rows[policy].detail
    assert rows[parameter].status == rc.MISSING and "ParameterNotFound" in rows[parameter].detail
    assert rows["jumpstart-model-name"].status == rc.MISSING


def test_aws_access_denied_is_not_checked_and_names_the_action():
    policy = next(k for k in AWS_KEYS if k.startswith("policy-"))
    rows, *_ = run(aws_answers={policy: "AccessDenied"})
    assert rows[policy].status == rc.UNCHECKED and rows[policy].detail.startswith("iam:GetPolicy failed: AccessDenied")


def test_kubernetes_newer_and_extended_support():
    versions = copy.deepcopy(AWS_ANSWERS["describe_cluster_versions"])
    newer = dict(versions["clusterVersions"][-1], clusterVersion="1.36", defaultVersion=False)
    versions["clusterVersions"].append(newer)
    rows, *_ = run(aws_answers={"eks-kubernetes-version": versions})
    assert rows["eks-kubernetes-version"].verdict == "newer: 1.36"
    rows, *_ = run(with_version("eks-kubernetes-version", "", name="1.33"))
    assert rows["eks-kubernetes-version"].status == rc.NEWER
    assert "extended support (paid)" in rows["eks-kubernetes-version"].detail


def test_no_aws_credentials_is_one_clear_line(monkeypatch, tmp_path, capsys):
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup either
    client = httpx.Client(transport=httpx.MockTransport(FakeInternet()))
    code = cr.main(["--json"], http=client, environ=NGC)
    captured = capsys.readouterr()
    rows = {r["key"]: r for r in json.loads(captured.out)["references"]}
    assert code == 1
    assert all(rows[k]["status"] == "unchecked" and rows[k]["detail"] == "no AWS credentials" for k in AWS_KEYS)
    lines = [line for line in captured.err.splitlines() if "no AWS credentials" in line]
    assert lines == [f"{cr.PROG}: no AWS credentials: {len(AWS_KEYS)} IAM/SSM/SageMaker/EKS entries not checked "
                     "(docs/references.md: the read-only role)"]


def test_no_network_fails_fast_asking_each_host_once(capsys):
    asked = Counter()

    def handler(request):
        asked[request.url.host] += 1
        return refused(request)

    aws, stubbers = stubbed_aws(())  # nothing queued: an AWS call would fail the test
    client = httpx.Client(transport=httpx.MockTransport(handler))
    started = time.monotonic()
    code = cr.main([], http=client, aws=aws, environ=NGC)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1 and elapsed < 5
    hosts = {rc.source_host(r) for r in REFERENCES if r.kind not in rc.AWS_KINDS}
    hosts |= {"iam.amazonaws.com", "ssm.us-east-1.amazonaws.com", "api.sagemaker.us-east-1.amazonaws.com",
              "eks.us-east-1.amazonaws.com"}
    assert set(asked) == hosts and set(asked.values()) == {1}  # one probe per host, nothing after it
    for host in hosts:
        assert f"no network: {host} unreachable (ConnectError: [Errno 111] Connection refused)" in err


def test_a_spent_budget_bounds_the_run():
    rows, *_ = run(budget=1e-9)
    assert all(r.status == rc.UNCHECKED for r in rows.values())
    assert any("time budget" in r.detail for r in rows.values())


@pytest.mark.parametrize("argv", [["--timeout", "0"], ["--timeout", "soon"], ["--nope"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cr.main(argv, http=httpx.Client(transport=httpx.MockTransport(refused)))
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_command_without_a_network_exits_fast(tmp_path):
    """The real command, its only route a proxy on loopback that refuses, and no AWS credentials or keys."""
    proxy = "http://127.0.0.1:9"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "ALL_PROXY": proxy,
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "scripts.check_references"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert elapsed < 20
    assert "no network: huggingface.co unreachable (" in proc.stderr
    assert "no network: registry-1.docker.io unreachable (" in proc.stderr
    assert "no AWS credentials" in proc.stderr


def test_an_eks_addon_version_is_asked_for_the_pinned_kubernetes_version():
    rows, _, _, stubbers = run()
    addon = rows["cloudwatch-observability-addon"]
    assert (addon.status, addon.detail) == (rc.OK, "listed for Kubernetes 1.35")
    stubbers["eks"].assert_no_pending_responses()
    newer = copy.deepcopy(AWS_ANSWERS["describe_addon_versions"])
    newer["addons"][0]["addonVersions"].append({"addonVersion": "v6.3.0-eksbuild.1"})
    newer["addons"][0]["addonVersions"].append({"addonVersion": "v6.4.0-eksbuild.1-rc"})  # another shape
    rows, *_ = run(aws_answers={"cloudwatch-observability-addon": newer})
    assert rows["cloudwatch-observability-addon"].verdict == "newer: v6.3.0-eksbuild.1"
    gone = copy.deepcopy(AWS_ANSWERS["describe_addon_versions"])
    gone["addons"][0]["addonVersions"] = [{"addonVersion": "v4.10.2-eksbuild.1"}]
    rows, *_ = run(aws_answers={"cloudwatch-observability-addon": gone})
    assert rows["cloudwatch-observability-addon"].status == rc.MISSING
    assert "no amazon-cloudwatch-observability v4.10.3-eksbuild.1 for Kubernetes 1.35" in (
        rows["cloudwatch-observability-addon"].detail)


def test_an_aws_answer_botocore_cannot_parse_leaves_that_row_unchecked_and_the_run_goes_on():
    from botocore.parsers import ResponseParserError

    addon = [r for r in REFERENCES if r.kind == "eks-addon"]
    aws, _ = stubbed_aws([])

    class Garbled:
        def paginate(self, **_):
            raise ResponseParserError("Unable to parse response (not well-formed), invalid XML received")

    aws.client("eks").get_paginator = lambda name: Garbled()
    web = cr.Web(httpx.Client(transport=httpx.MockTransport(FakeInternet())), cr.Budget(60.0))
    (row,) = cr.check_all(addon, web, aws, NGC)
    assert row.status == rc.UNCHECKED and "could not be read" in row.detail
