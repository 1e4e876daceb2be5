"""Preflight checks against a moto account (STS, EC2 offerings with AWS's real data, instances, SSM), with botocore
Stubbers for Service Quotas (moto has no ec2/sagemaker quotas) and a before-call hook for
DescribeCapacityReservations (moto lacks it). The assertions are on our verdicts, numbers and remedies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from planner.targets.ec2 import DLAMI_SSM_PARAMETERS
from scripts.aws import AwsClients
from scripts.preflight import FAIL, PASS, SKIP, main
from tests.library_internals import publish_public_ssm_parameter

REGION = "us-east-1"
X86_DLAMI = DLAMI_SSM_PARAMETERS["x86_64"]
P_QUOTA = "L-417A185B"
BASE = {"aws:region": REGION, "nemotron-deploy:target": "ec2", "nemotron-deploy:owner": "platform-team",
        "nemotron-deploy:ttlHours": 8, "nemotron-deploy:instanceType": "p5.48xlarge", "nemotron-deploy:nodes": 1,
        "nemotron-deploy:precision": "fp8", "nemotron-deploy:contextTokens": 65536,
        "nemotron-deploy:concurrency": 8}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def stacks(tmp_path):
    """Write stacks/Pulumi.<name>.yaml from BASE plus overrides (short keys are nemotron-deploy:<key>)."""

    def write(name: str, **overrides) -> str:
        config = dict(BASE)
        config.update({k if ":" in k else f"nemotron-deploy:{k}": v for k, v in overrides.items()})
        (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
        return name

    write.dir = tmp_path
    return write


def publish_dlami(parameter: str = X86_DLAMI) -> None:
    """AWS publishes /aws/service/* parameters; moto refuses put_parameter on them (tests/library_internals.py)."""
    publish_public_ssm_parameter(parameter, "ami-0abcdef1234567890", "aws:ec2:image", DEFAULT_ACCOUNT_ID, REGION)


def quota(code: str, value: float, service: str = "ec2", name: str = "Running On-Demand P instances") -> dict:
    return {"ServiceCode": service, "QuotaCode": code, "QuotaName": name, "Value": value, "Unit": "None",
            "Adjustable": True, "GlobalQuota": False}


class Account:
    """A moto account plus the stubbed Service Quotas and capacity reservations the checks read."""

    def __init__(self):
        self.session = boto3.Session(region_name=REGION)
        self.quotas = self.session.client("service-quotas")
        self.stub = Stubber(self.quotas)
        self.ec2 = self.session.client("ec2")
        self.reservations: list[dict] = []
        self.ec2.meta.events.register("before-call.ec2.DescribeCapacityReservations", self._reservations)
        self.clients = AwsClients(self.session, overrides={"service-quotas": self.quotas, "ec2": self.ec2})

    def _reservations(self, params, **_):
        body = params.get("body", {})  # the serialized EC2 query: CapacityReservationId.1=cr-...
        wanted = {v for k, v in body.items() if k.startswith("CapacityReservationId.")}
        found = [r for r in self.reservations if r["CapacityReservationId"] in wanted]
        if wanted and not found:
            return AWSResponse(None, 400, {}, None), {"Error": {
                "Code": "InvalidCapacityReservationId.NotFound", "Message": "The reservation was not found"}}
        return AWSResponse(None, 200, {}, None), {"CapacityReservations": found}

    def p_quota(self, value: float) -> Account:
        self.stub.add_response("get_service_quota", {"Quota": quota(P_QUOTA, value)},
                               {"ServiceCode": "ec2", "QuotaCode": P_QUOTA})
        return self

    def endpoint_quotas(self, *quotas: dict) -> Account:
        self.stub.add_response("list_service_quotas", {"Quotas": list(quotas)}, {"ServiceCode": "sagemaker"})
        return self

    def reservation(self, rid="cr-0123456789abcdef0", zone="us-east-1a", available=2, total=2, state="active",
                    kind="default", instance_type="p5.48xlarge") -> str:
        now = datetime.now(UTC)
        self.reservations.append({
            "CapacityReservationId": rid, "InstanceType": instance_type, "AvailabilityZone": zone, "State": state,
            "AvailableInstanceCount": available, "TotalInstanceCount": total, "ReservationType": kind,
            "InstancePlatform": "Linux/UNIX", "InstanceMatchCriteria": "targeted",
            "StartDate": now - timedelta(hours=1), "EndDate": now + timedelta(days=2)})
        return rid

    def run(self, instance_type="p5.48xlarge", count=1, stack="other-stack"):
        """Launch instances of some stack (ami-12c6146b is one of moto's built-in images)."""
        self.ec2.run_instances(ImageId="ami-12c6146b", InstanceType=instance_type, MinCount=count, MaxCount=count,
                               TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                   {"Key": "nemotron-deploy:stack", "Value": stack}]}])

    def checks(self, stacks, name: str, capsys) -> tuple[int, dict[str, dict]]:
        self.stub.activate()
        code = main([name, "--json", "--stacks-dir", str(stacks.dir)], clients=self.clients)
        report = json.loads(capsys.readouterr().out)
        return code, {c["name"]: c for c in report["checks"]}


def test_all_checks_pass_for_an_ec2_stack(stacks, capsys):
    account = Account().p_quota(192)
    publish_dlami()
    code, checks = account.checks(stacks, stacks("pilot"), capsys)
    assert code == 0
    assert {n: c["status"] for n, c in checks.items()} == {
        "plan": PASS, "credentials": PASS, "ec2-vcpu-quota": PASS, "instance-offering": PASS,
        "capacity-reservation": SKIP, "dlami-parameter": PASS, "staged-weights": SKIP}
    assert "192 vCPUs needed (1 x p5.48xlarge at 192)" in checks["ec2-vcpu-quota"]["detail"]
    assert "ami-0abcdef1234567890" in checks["dlami-parameter"]["detail"]
    account.stub.assert_no_pending_responses()


def test_json_contract(stacks, capsys):
    publish_dlami()
    account = Account().p_quota(192)
    account.stub.activate()
    assert main([stacks("pilot"), "--json", "--stacks-dir", str(stacks.dir)], clients=account.clients) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"stack", "checks", "ok"}
    assert report["stack"] == "pilot" and report["ok"] is True
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail", "remedy"}
        assert check["status"] in (PASS, FAIL, SKIP)


def test_quota_too_low_fails_with_the_numbers_and_the_increase_to_request(stacks, capsys):
    account = Account().p_quota(96)
    publish_dlami()
    code, checks = account.checks(stacks, stacks("pilot"), capsys)
    assert code == 1
    quota_check = checks["ec2-vcpu-quota"]
    assert quota_check["status"] == FAIL
    assert "192 vCPUs needed" in quota_check["detail"] and "is 96" in quota_check["detail"]
    assert "request an increase of L-417A185B to >= 192" in quota_check["remedy"]
    assert "--desired-value 192 --region us-east-1" in quota_check["remedy"]


def test_quota_counts_other_stacks_running_p_instances_but_not_its_own(stacks, capsys):
    account = Account().p_quota(384)
    publish_dlami()
    account.run("p5.48xlarge", stack="someone-else")  # 192 vCPUs of the 384 already taken
    account.run("p5.48xlarge", stack="pair")  # this stack's own node: pulumi up keeps it, it is not added
    account.run("m5.large", stack="someone-else")  # not a P instance
    code, checks = account.checks(stacks, stacks("pair", precision="bf16", nodes=2), capsys)
    quota_check = checks["ec2-vcpu-quota"]
    assert code == 1 and quota_check["status"] == FAIL
    assert "384 vCPUs needed (2 x p5.48xlarge at 192)" in quota_check["detail"]
    assert "192 in use by 1 other running P instance(s)" in quota_check["detail"]
    assert "to >= 576" in quota_check["remedy"]


def test_instance_type_not_offered_in_the_configured_zone(stacks, capsys):
    account = Account().p_quota(192)
    publish_dlami()
    name = stacks("h200-b", instanceType="p5en.48xlarge", availabilityZone="us-east-1b")
    code, checks = account.checks(stacks, name, capsys)
    offering = checks["instance-offering"]
    assert code == 1 and offering["status"] == FAIL
    assert "p5en.48xlarge is not offered in us-east-1b; it is offered in us-east-1a, us-east-1c" == offering["detail"]
    assert "availabilityZone to one of us-east-1a, us-east-1c" in offering["remedy"]


def test_instance_type_not_offered_in_the_region(stacks, capsys):
    # The catalogue knows p5e.48xlarge is not offered in us-east-1: the planner refuses the stack before any AWS call.
    account = Account().p_quota(192)
    publish_dlami()
    name = stacks("p5e", instanceType="p5e.48xlarge")
    account.stub.activate()
    assert main([name, "--json", "--stacks-dir", str(stacks.dir)], clients=account.clients) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "p5e.48xlarge is not; use p5en.48xlarge in us-east-1" in err, err


def test_reservation_with_too_few_instances(stacks, capsys):
    account = Account().p_quota(384)
    publish_dlami()
    rid = account.reservation(available=1, total=2)
    name = stacks("pair", precision="bf16", nodes=2, capacityReservationId=rid, availabilityZone="us-east-1a")
    code, checks = account.checks(stacks, name, capsys)
    reservation = checks["capacity-reservation"]
    assert code == 1 and reservation["status"] == FAIL
    assert reservation["detail"].startswith(f"{rid}: 1 of 2 instances available, 2 needed")
    assert "reserve more" in reservation["remedy"]
    assert "count here" in checks["ec2-vcpu-quota"]["detail"]  # an On-Demand reservation still uses the quota


def test_reservation_in_another_zone_of_another_type_not_active(stacks, capsys):
    account = Account().p_quota(192)
    publish_dlami()
    rid = account.reservation(zone="us-east-1c", state="scheduled", instance_type="p5en.48xlarge")
    code, checks = account.checks(stacks, stacks("s", capacityReservationId=rid, availabilityZone="us-east-1a"),
                                  capsys)
    detail, remedy = checks["capacity-reservation"]["detail"], checks["capacity-reservation"]["remedy"]
    assert code == 1
    assert "state is scheduled, starts" in detail
    assert "it reserves p5en.48xlarge, the stack uses p5.48xlarge" in detail
    assert "it is in us-east-1c, the stack uses us-east-1a" in detail
    assert "set nemotron-deploy:availabilityZone to us-east-1c" in remedy


def test_capacity_block_passes_and_skips_the_on_demand_quota(stacks, capsys):
    account = Account()  # no quota response queued: the quota must not be asked for
    publish_dlami()
    rid = account.reservation(kind="capacity-block", available=1, total=1)
    code, checks = account.checks(stacks, stacks("cb", capacityReservationId=rid, capacityBlock=True), capsys)
    assert code == 0
    assert checks["ec2-vcpu-quota"]["status"] == SKIP and "Capacity Block" in checks["ec2-vcpu-quota"]["detail"]
    assert checks["capacity-reservation"]["status"] == PASS
    assert "active Capacity Block, 1 of 1 x p5.48xlarge free in us-east-1a" in checks["capacity-reservation"]["detail"]


def test_unknown_reservation_and_block_flag_mismatch(stacks, capsys):
    account = Account().p_quota(192)
    publish_dlami()
    code, checks = account.checks(stacks, stacks("gone", capacityReservationId="cr-0000000000000dead"), capsys)
    assert code == 1
    assert checks["capacity-reservation"]["detail"] == (
        "cr-0000000000000dead does not exist in this account in us-east-1")
    account = Account().p_quota(192)
    rid = account.reservation(kind="capacity-block")
    code, checks = account.checks(stacks, stacks("flag", capacityReservationId=rid), capsys)
    assert "it is a Capacity Block but capacityBlock is false" in checks["capacity-reservation"]["detail"]


def test_missing_dlami_parameter(stacks, capsys):
    account = Account().p_quota(192)
    code, checks = account.checks(stacks, stacks("pilot"), capsys)
    assert code == 1
    assert checks["dlami-parameter"]["status"] == FAIL
    assert checks["dlami-parameter"]["detail"] == f"{X86_DLAMI} is not published in us-east-1"


def test_jumpstart_checks_the_endpoint_quota_only(stacks, capsys):
    resolved = {"source": "DescribeHubContent", "recordedAt": "2026-11-01T00:00:00Z", "hubContentVersion": "1.0.0",
                "hubContentArn": "arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub/Model/m/1.0.0",
                "instanceType": "ml.p5en.48xlarge", "artifactS3Uri": "s3://jumpstart-bucket/m/",
                "imageUri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.34.0-lmi16.0.0-cu128"}
    jumpstart = {"target": "jumpstart", "instanceType": "ml.p5en.48xlarge",
                 "jumpstart": {"modelId": "m", "acceptEula": True, "maxCapacity": 2, "resolved": resolved}}
    name = stacks("js", **jumpstart)
    other = quota("L-11111111", 4, "sagemaker", "ml.p5.48xlarge for endpoint usage")
    ours = quota("L-22222222", 1, "sagemaker", "ml.p5en.48xlarge for endpoint usage")
    account = Account().endpoint_quotas(other, ours)
    code, checks = account.checks(stacks, name, capsys)
    assert list(checks) == ["plan", "eula-accepted", "credentials", "sagemaker-endpoint-quota"]
    endpoint = checks["sagemaker-endpoint-quota"]
    assert code == 1 and endpoint["status"] == FAIL
    assert endpoint["detail"] == (
        '2 instance(s) needed; L-22222222 ("ml.p5en.48xlarge for endpoint usage") is 1 in us-east-1')
    assert "request an increase of L-22222222 to >= 2" in endpoint["remedy"]
    account = Account().endpoint_quotas({**ours, "Value": 2.0})
    code, checks = account.checks(stacks, name, capsys)
    assert code == 0 and checks["sagemaker-endpoint-quota"]["status"] == PASS


def test_eks_stack_checks_quota_offering_and_reservation_not_the_dlami(stacks, capsys):
    account = Account().p_quota(192)
    name = stacks("eks", target="eks", engine="vllm", eks={"namespace": "nemotron", "maxNodes": 2})
    code, checks = account.checks(stacks, name, capsys)
    assert list(checks) == ["plan", "credentials", "ec2-vcpu-quota", "instance-offering", "capacity-reservation"]
    assert "384 vCPUs needed (2 x p5.48xlarge" in checks["ec2-vcpu-quota"]["detail"]  # the node group's maximum
    assert code == 1


def test_bad_credentials_skip_the_account_checks(stacks, capsys):
    account = Account()
    sts = account.session.client("sts")
    sts_stub = Stubber(sts)
    sts_stub.add_client_error("get_caller_identity", "InvalidClientTokenId", "The security token is invalid")
    sts_stub.activate()
    account.clients = AwsClients(account.session, overrides={"sts": sts, "service-quotas": account.quotas})
    code, checks = account.checks(stacks, stacks("pilot"), capsys)
    assert code == 1
    assert checks["credentials"]["status"] == FAIL and "InvalidClientTokenId" in checks["credentials"]["detail"]
    assert "AWS_PROFILE" in checks["credentials"]["remedy"]
    assert {checks[n]["status"] for n in ("ec2-vcpu-quota", "instance-offering", "dlami-parameter")} == {SKIP}


def test_a_plan_that_does_not_fit_fails(stacks, capsys):
    account = Account().p_quota(192)
    publish_dlami()
    code, checks = account.checks(stacks, stacks("bf16-one-node", precision="bf16"), capsys)
    assert code == 1
    assert checks["plan"]["status"] == FAIL and checks["plan"]["detail"].startswith("does not fit")
    assert "python -m scripts.plan bf16-one-node" in checks["plan"]["remedy"]


def test_unknown_stack_exits_2_naming_it_and_the_allowed_stacks(stacks, capsys):
    stacks("pilot")
    stacks("other")
    assert main(["nope", "--stacks-dir", str(stacks.dir)], clients=Account().clients) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "stack: 'nope' is not valid; allowed: other, pilot" in err


def test_bad_key_exits_2_in_one_line(stacks, capsys):
    name = stacks("bad", nodes=0)
    assert main([name, "--stacks-dir", str(stacks.dir)], clients=Account().clients) == 2
    assert "nemotron-deploy:nodes" in capsys.readouterr().err


def test_table_output_shows_each_check_and_what_to_do(stacks, capsys):
    account = Account().p_quota(96)
    publish_dlami()
    account.stub.activate()
    assert main([stacks("pilot"), "--stacks-dir", str(stacks.dir)], clients=account.clients) == 1
    out = capsys.readouterr().out
    for text in ("check", "what to do", "ec2-vcpu-quota", "fail", "L-417A185B", "1 check(s) failed"):
        assert text in out


@pytest.mark.parametrize(("error", "detail", "remedy"), [
    ("NoSuchResourceException", "is 0 in us-east-1", "request an increase of L-417A185B to >= 192"),
    ("AccessDeniedException", "servicequotas:GetServiceQuota failed: AccessDeniedException",
     "allow servicequotas:GetServiceQuota for this identity"),
])
def test_quota_default_value_and_denied_access(stacks, capsys, error, detail, remedy):
    account = Account()
    account.stub.add_client_error("get_service_quota", error, "no applied value" if "NoSuch" in error else "denied")
    if error == "NoSuchResourceException":  # never raised for this account: AWS's default applies
        account.stub.add_response("get_aws_default_service_quota", {"Quota": quota(P_QUOTA, 0)},
                                  {"ServiceCode": "ec2", "QuotaCode": P_QUOTA})
    publish_dlami()
    code, checks = account.checks(stacks, stacks("pilot"), capsys)
    assert code == 1
    assert detail in checks["ec2-vcpu-quota"]["detail"]
    assert remedy in checks["ec2-vcpu-quota"]["remedy"]


NIM = {"target": "eks", "engine": "nim", "instanceType": "p5en.48xlarge", "precision": "nvfp4",
       "contextTokens": 131072, "concurrency": 16, "eks": {"namespace": "nemotron"}}


def test_a_nim_stack_without_its_ngc_key_fails_before_any_account_check_matters(stacks, capsys):
    """ngcApiKey missing from the stack file fails preflight, read offline: `pulumi up` would fail only inside the
    workload, after the network and cluster had started."""
    account = Account().p_quota(192)
    code, checks = account.checks(stacks, stacks("nim", **NIM), capsys)
    assert list(checks)[:3] == ["plan", "required-secrets", "credentials"]
    secrets = checks["required-secrets"]
    assert code == 1 and secrets["status"] == FAIL
    assert "nemotron-deploy:ngcApiKey is not set" in secrets["detail"] and "NIM pulls" in secrets["detail"]
    assert secrets["remedy"] == "pulumi config set --secret ngcApiKey ... -s nim"


def test_a_nim_stack_holding_its_ngc_key_as_a_secret_passes_that_check(stacks, capsys):
    account = Account().p_quota(192)
    name = stacks("nim", **NIM, ngcApiKey={"secure": "v1:AAAAbm90LWEtcmVhbC1rZXk="})
    code, checks = account.checks(stacks, name, capsys)
    assert checks["required-secrets"] == {"name": "required-secrets", "status": PASS,
                                          "detail": "ngcApiKey set as a Pulumi secret", "remedy": ""}
    assert "required-secrets" not in account.checks(stacks, stacks("vllm", target="eks", engine="vllm",
                                                                    eks={"namespace": "nemotron"}), capsys)[1]


# The staged copy of the weights (weightsS3Uri): its manifest and every file it lists, in a moto bucket.

def _stage(bucket: str, prefix: str, files: dict[str, bytes], manifest: bool = True) -> None:
    import hashlib

    import boto3

    from planner.weights import MANIFEST_NAME, WeightFile, WeightsManifest

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    for path, body in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{path}", Body=body)
    if manifest:
        listed = WeightsManifest("nvidia/x", "abc", tuple(
            WeightFile(path, len(body), hashlib.sha256(body).hexdigest()) for path, body in files.items()))
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST_NAME}", Body=listed.to_json().encode())


SHARDS = {"model-00001-of-00002.safetensors": b"a" * 1000, "model-00002-of-00002.safetensors": b"b" * 500,
          "config.json": b"{}"}


def test_a_complete_staged_copy_passes(stacks, capsys):
    publish_dlami()
    _stage("mirror", "nemotron", SHARDS)
    code, checks = Account().p_quota(192).checks(stacks, stacks("pilot", weightsS3Uri="s3://mirror/nemotron/"),
                                                 capsys)
    assert code == 0 and checks["staged-weights"]["status"] == PASS
    assert "the manifest and every file it lists are there" in checks["staged-weights"]["detail"]


@pytest.mark.parametrize(("staged", "says"), [
    (lambda: _stage("mirror", "nemotron", SHARDS, manifest=False), "no manifest"),
    (lambda: (_stage("mirror", "nemotron", SHARDS),
              __import__("boto3").client("s3", region_name=REGION).put_object(
                  Bucket="mirror", Key="nemotron/config.json", Body=b"{ }")),
     "config.json: 3 bytes, the manifest says 2"),
    (lambda: (_stage("mirror", "nemotron", SHARDS),
              __import__("boto3").client("s3", region_name=REGION).delete_object(
                  Bucket="mirror", Key="nemotron/model-00002-of-00002.safetensors")),
     "model-00002-of-00002.safetensors: missing"),
    (lambda: None, "NoSuchBucket"),
])
def test_an_incomplete_or_unreadable_staged_copy_fails_with_the_command_that_completes_it(stacks, capsys, staged,
                                                                                         says):
    publish_dlami()
    staged()
    code, checks = Account().p_quota(192).checks(stacks, stacks("pilot", weightsS3Uri="s3://mirror/nemotron/"),
                                                 capsys)
    check = checks["staged-weights"]
    assert code == 1 and check["status"] == FAIL
    assert says in check["detail"], check["detail"]
    assert "python -m scripts.stage_weights SOURCE --to s3://mirror/nemotron/" in check["remedy"]
    assert {n: c["status"] for n, c in checks.items() if n != "staged-weights"} == {
        "plan": PASS, "credentials": PASS, "ec2-vcpu-quota": PASS, "instance-offering": PASS,
        "capacity-reservation": SKIP, "dlami-parameter": PASS}  # one failing call fails only its own check
