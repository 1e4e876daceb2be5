"""The real command line (`python -m scripts.teardown` in a subprocess) against a plain moto server: no client-side
fakes, so what moto lacks (DescribePlacementGroups answers an HTML 500) must show up as one listing error of that
kind while everything else is reaped; and without credentials, one line naming the chain that was tried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from tests.moto_server import fake_aws_env, running_moto_server
from tests.teardown.aws_fakes import REGION, ROLE, at_now, spec, toolkit_tags

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def moto_server(monkeypatch):
    """A moto server on 127.0.0.1 (moto's backends are per process: reset when the test is done)."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)  # the test's own clients name their credentials
    with running_moto_server() as url:
        yield url


def cli(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.teardown", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_the_cli_reaps_what_moto_serves_and_names_what_it_cannot_list(moto_server, tmp_path):
    def client(service):
        return boto3.client(service, region_name=REGION, endpoint_url=moto_server, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    now = at_now()
    expired, live = toolkit_tags("alpha", now - timedelta(hours=1)), toolkit_tags("beta", now + timedelta(hours=4))
    ec2, sm, secrets = client("ec2"), client("sagemaker"), client("secretsmanager")
    sg = ec2.create_security_group(GroupName="alpha-api", Description="a",
                                   TagSpecifications=spec("security-group", expired))["GroupId"]
    p5 = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5.48xlarge",
                           SecurityGroupIds=[sg], TagSpecifications=spec("instance", expired)
                           )["Instances"][0]["InstanceId"]
    volume = ec2.create_volume(Size=10, AvailabilityZone=f"{REGION}a",
                               TagSpecifications=spec("volume", expired))["VolumeId"]
    secret = secrets.create_secret(Name="alpha-serving-secret", SecretString="{}", Tags=expired)["ARN"]
    sm.create_model(ModelName="alpha-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"}, Tags=expired)
    sm.create_endpoint_config(EndpointConfigName="alpha-config", Tags=expired, ProductionVariants=[{
        "VariantName": "main", "ModelName": "alpha-model", "InstanceType": "ml.g4dn.xlarge",
        "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="alpha-endpoint", EndpointConfigName="alpha-config", Tags=expired)
    beta = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="p5en.48xlarge",
                             TagSpecifications=spec("instance", live))["Instances"][0]["InstanceId"]
    beta_volume = ec2.create_volume(Size=10, AvailabilityZone=f"{REGION}a",
                                    TagSpecifications=spec("volume", live))["VolumeId"]
    foreign = ec2.create_volume(Size=10, AvailabilityZone=f"{REGION}a")["VolumeId"]
    env = fake_aws_env(tmp_path, moto_server)

    def running() -> set[str]:
        return {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                if i["State"]["Name"] not in ("terminated", "shutting-down")}

    def volumes() -> set[str]:
        return {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}

    dry = cli(["--expired"], env)
    assert dry.returncode == 1, dry.stderr  # the view is incomplete: placement groups could not be listed
    assert "Traceback" not in dry.stderr + dry.stdout and "<" not in dry.stdout, dry.stdout + dry.stderr
    unlisted = [line for line in dry.stdout.splitlines() if "could not list" in line]
    assert unlisted == ["  could not list us-east-1 ec2:placement-group: ec2:DescribePlacementGroups failed: "
                        "HTTP 500 (the service answered with an HTML error page)"], dry.stdout
    assert p5 in dry.stdout and "would terminate" in dry.stdout  # the p5 is not hidden behind the placement groups
    assert {p5, beta} <= running() and {volume, beta_volume, foreign} <= volumes()  # a dry run changes nothing

    done = cli(["--expired", "--yes", "--json"], env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    assert report["listing_errors"] == [
        "us-east-1 ec2:placement-group: ec2:DescribePlacementGroups failed: HTTP 500 (the service answered with an "
        "HTML error page)",
        "(verify) us-east-1 ec2:placement-group: ec2:DescribePlacementGroups failed: HTTP 500 (the service answered "
        "with an HTML error page)"]
    assert report["unlisted"] == [{"region": REGION, "kind": "ec2:placement-group"}]
    outcomes = {(d["kind"], d["label"]): d["outcome"] for d in report["deletions"]}
    assert outcomes == {("ec2:instance", p5): "deleted", ("ec2:volume", volume): "deleted",
                        ("ec2:security-group", sg): "deleted", ("secretsmanager:secret", "alpha-serving-secret"):
                        "deleted", ("sagemaker:endpoint", "alpha-endpoint"): "deleted",
                        ("sagemaker:endpoint-config", "alpha-config"): "deleted",
                        ("sagemaker:model", "alpha-model"): "deleted"}
    assert report["left"] == []
    assert p5 not in running() and beta in running()
    assert volume not in volumes() and {beta_volume, foreign} <= volumes()
    assert sg not in {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert secret not in {s["ARN"] for s in secrets.list_secrets(IncludePlannedDeletion=True)["SecretList"]}
    assert not sm.list_endpoints()["Endpoints"] and not sm.list_models()["Models"]


def test_without_credentials_one_line_names_the_chain_tried(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # should anything be called, it goes nowhere
    result = cli(["--expired", "--region", REGION], env, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.strip()
    assert line.startswith("python -m scripts.teardown: no AWS credentials: checked environment variables, "
                           f"shared config/credentials files (profile default: {tmp_path}/.aws/credentials, "
                           f"{tmp_path}/.aws/config)"), line
    assert "container and instance metadata" in line and "NoCredentialsError" not in line
