"""Policy rules, table-driven: each bad resource fires exactly its rule, each good one fires none, and a small
secure stack is clean. Resources are built as the Pulumi mocks deliver them (camelCase inputs)."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from planner.policy import (
    REQUIRED_TAG_KEYS,
    RULE_NAMES,
    TAGGABLE_TYPES,
    Violation,
    check_resources,
    rules_for,
    secret_like,
)
from tests.library_internals import policy_validate

TAGS = {"nemotron-deploy:stack": "h100-pilot", "nemotron-deploy:owner": "platform-team",
        "nemotron-deploy:expires-at": "2026-12-01T18:00:00Z"}
HF = "hf_" + "A1b2C3d4" * 5  # token-shaped test values, assembled so no scanner mistakes this file for a leak
NVAPI = "nvapi-" + "Zx9" * 10
AKIA = "AKIA" + "ABCDEFGHIJ234567"
SG, SG_RULE, INGRESS = ("aws:ec2/securityGroup:SecurityGroup", "aws:ec2/securityGroupRule:SecurityGroupRule",
                        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
LT, INSTANCE, VOLUME = ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance", "aws:ebs/volume:Volume")
DEPLOYMENT, DAEMONSET = "kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:DaemonSet"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
SECRETS_READ = ("export HF_TOKEN=$(aws secretsmanager get-secret-value --secret-id hf --query SecretString "
                "--output text)")


def res(rtype: str, name: str, **inputs) -> dict:
    """A resource as the engine reports it; taggable AWS types get the good tags unless the case sets its own."""
    if rtype in TAGGABLE_TYPES and "tags" not in inputs:
        inputs["tags"] = dict(TAGS)
    return {"type": rtype, "name": name, "inputs": inputs}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource="arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-AbCdEf", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


GOOD_IMDS = {"httpTokens": "required", "httpEndpoint": "enabled", "httpPutResponseHopLimit": 2}
GOOD_BDM = [{"deviceName": "/dev/sda1", "ebs": {"volumeSize": 500, "encrypted": "true", "volumeType": "gp3"}}]
GOOD_SPECS = [{"resourceType": "instance", "tags": dict(TAGS)}, {"resourceType": "volume", "tags": dict(TAGS)}]


def launch_template(name="gpu-lt", **overrides) -> dict:
    inputs = {"metadataOptions": GOOD_IMDS, "blockDeviceMappings": GOOD_BDM, "tagSpecifications": GOOD_SPECS,
              "userData": b64(f"#!/bin/bash\n{SECRETS_READ}\n")}
    inputs.update(overrides)
    return res(LT, name, **inputs)


def instance(name="gpu-node", **overrides) -> dict:
    inputs = {"instanceType": "p5.48xlarge", "metadataOptions": GOOD_IMDS,
              "rootBlockDevice": {"encrypted": True, "volumeSize": 500},
              "userData": f"#!/bin/bash\n{SECRETS_READ}\nvllm serve m --api-key \"$VLLM_API_KEY\"\n"}
    inputs.update(overrides)
    return res(INSTANCE, name, **inputs)


def container(name="vllm", env=(), privileged=False, args=()) -> dict:
    c = {"name": name, "image": "vllm/vllm-openai:v0.11.0", "env": list(env), "args": list(args)}
    if privileged:
        c["securityContext"] = {"privileged": True}
    return c


def pod_template(*containers) -> dict:
    return {"metadata": {"labels": {"app": "vllm"}}, "spec": {"containers": list(containers)}}


def deployment(name="vllm", kind=DEPLOYMENT, *containers) -> dict:
    return res(kind, name, metadata={"name": name, "namespace": "nemotron"},
               spec={"replicas": 1, "template": pod_template(*(containers or (container(),)))})


def lws(name="vllm-lws", leader=None, worker=None) -> dict:
    return res(LWS, name, apiVersion="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet",
               metadata={"name": name}, spec={"replicas": 1, "leaderWorkerTemplate": {
                   "size": 2, "leaderTemplate": pod_template(leader or container("leader")),
                   "workerTemplate": pod_template(worker or container("worker"))}})


SECRET_REF = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}

BAD = [
    # 1 world-open ingress
    ("world-open-ingress", res(SG, "sg-world", ingress=[{"fromPort": 8000, "toPort": 8000, "protocol": "tcp",
                                                          "cidrBlocks": ["0.0.0.0/0"]}])),
    ("world-open-ingress", res(SG, "sg-world6", ingress=[{"fromPort": 22, "toPort": 22, "protocol": "tcp",
                                                           "ipv6CidrBlocks": ["::/0"]}])),
    ("world-open-ingress", res(SG, "sg-half-world", ingress=[{"fromPort": 0, "toPort": 0, "protocol": "-1",
                                                               "cidrBlocks": ["0.0.0.0/1", "128.0.0.0/1"]}])),
    ("world-open-ingress", res("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "default-sg-world",
                               vpcId="vpc-1", ingress=[{"fromPort": 0, "toPort": 0, "protocol": "-1",
                                                        "cidrBlocks": ["0.0.0.0/0"]}])),
    ("world-open-ingress", res(INGRESS, "ingress-world", cidrIpv4="0.0.0.0/0", fromPort=8000, toPort=8000,
                               ipProtocol="tcp")),
    ("world-open-ingress", res(SG_RULE, "rule-world", type="ingress", fromPort=443, toPort=443, protocol="tcp",
                               cidrBlocks=["10.0.0.0/8", "0.0.0.0/0"])),
    # 2 IMDSv1
    ("imdsv1-allowed", launch_template("lt-no-imds", metadataOptions=None)),
    ("imdsv1-allowed", instance("node-imds-optional", metadataOptions={"httpTokens": "optional"})),
    # 3 unencrypted volumes
    ("unencrypted-volume", launch_template("lt-plain-ebs", blockDeviceMappings=[
        {"deviceName": "/dev/sda1", "ebs": {"volumeSize": 500, "encrypted": "false"}}])),
    ("unencrypted-volume", launch_template("lt-no-mappings", blockDeviceMappings=None)),
    ("unencrypted-volume", instance("node-no-root", rootBlockDevice=None)),
    ("unencrypted-volume", instance("node-plain-data", ebsBlockDevices=[{"deviceName": "/dev/sdf",
                                                                         "encrypted": False}])),
    ("unencrypted-volume", res(VOLUME, "vol-plain", size=1000, availabilityZone="us-east-1a")),
    # 4 tags
    ("missing-tags", res("aws:ec2/vpc:Vpc", "vpc-untagged", cidrBlock="10.20.0.0/16", tags=None)),
    ("missing-tags", instance("node-no-owner", tags={k: v for k, v in TAGS.items() if not k.endswith("owner")})),
    ("missing-tags", res(VOLUME, "vol-bad-expiry", encrypted=True,
                         tags={**TAGS, "nemotron-deploy:expires-at": "2026-12-01 18:00"})),
    ("missing-tags", launch_template("lt-no-volume-spec", tagSpecifications=GOOD_SPECS[:1])),
    ("missing-tags", launch_template("lt-spec-untagged", tagSpecifications=[
        GOOD_SPECS[0], {"resourceType": "volume", "tags": {"Name": "data"}}])),
    ("missing-tags", res("aws:fsx/lustreFileSystem:LustreFileSystem", "fsx-unknown-type", tags={"Name": "x"})),
    # 5 wildcard IAM
    ("wildcard-iam", res("aws:iam/policy:Policy", "pol-star", policy=policy(allow("*", "*")))),
    ("wildcard-iam", res("aws:iam/rolePolicy:RolePolicy", "rp-s3-star", role="r",
                         policy=policy(allow(["s3:*"], "arn:aws:s3:::weights/*")))),
    ("wildcard-iam", res("aws:iam/rolePolicy:RolePolicy", "rp-notaction", role="r",
                         policy=policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}))),
    ("wildcard-iam", res("aws:iam/rolePolicy:RolePolicy", "rp-secrets-everywhere", role="r",
                         policy=policy(allow("secretsmanager:GetSecretValue", "*")))),
    ("wildcard-iam", res("aws:iam/rolePolicy:RolePolicy", "rp-get-star-objects", role="r",
                         policy=policy(allow(["s3:Get*"], "arn:aws:s3:::*/*")))),
    ("wildcard-iam", res("aws:iam/role:Role", "role-inline-star", assumeRolePolicy=policy(
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}),
        inlinePolicies=[{"name": "all", "policy": policy(allow("ec2:*", "*"))}])),
    ("wildcard-iam", res("aws:iam/role:Role", "role-anyone", assumeRolePolicy=policy(
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}))),
    ("wildcard-iam", res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "attach-admin", role="r",
                         policyArn="arn:aws:iam::aws:policy/AdministratorAccess")),
    # 6 plaintext secrets
    ("plaintext-secret", deployment("dep-env-literal", DEPLOYMENT,
                                    container(env=[{"name": "HF_TOKEN", "value": HF}]))),
    ("plaintext-secret", deployment("dep-api-key-word", DEPLOYMENT,
                                    container(env=[{"name": "VLLM_API_KEY", "value": "changeme"}]))),
    ("plaintext-secret", lws("lws-worker-ngc", worker=container("worker", env=[{"name": "NGC_API_KEY",
                                                                                  "value": NVAPI}]))),
    ("plaintext-secret", deployment("dep-aws-key-shape", DEPLOYMENT,
                                    container(env=[{"name": "EXTRA", "value": AKIA}]))),
    ("plaintext-secret", deployment("dep-args-api-key", DEPLOYMENT,
                                    container(args=["--model", "m", "--api-key", "s3cr3t-value"]))),
    ("plaintext-secret", res("aws:sagemaker/model:Model", "sm-env-token", executionRoleArn="arn:aws:iam::1:role/x",
                             primaryContainer={"image": "x", "environment": {"HF_MODEL_ID": "m", "HF_TOKEN": HF}})),
    ("plaintext-secret", instance("node-userdata-export", userData=f"#!/bin/bash\nexport HF_TOKEN={HF}\n")),
    ("plaintext-secret", instance("node-userdata-docker", userData="#!/bin/bash\ndocker run -e "
                                                                    "VLLM_API_KEY=abc123 vllm/vllm-openai\n")),
    ("plaintext-secret", instance("node-userdata-curl", userData="#!/bin/bash\ncurl -H 'Authorization: Bearer "
                                                                  f"{NVAPI}' https://api.ngc.nvidia.com\n")),
    ("plaintext-secret", instance("node-userdata-flag", userData="#!/bin/bash\nvllm serve m --api-key abc123\n")),
    ("plaintext-secret", launch_template("lt-b64-secret", userData=b64("#cloud-config\nwrite_files:\n"
                                                                       "  - path: /etc/vllm.env\n    content: |\n"
                                                                       "      VLLM_API_KEY=abc123\n"))),
    ("plaintext-secret", launch_template("lt-gzip-secret", userData=base64.b64encode(
        gzip.compress(f"#!/bin/bash\nexport HF_TOKEN={HF}\n".encode())).decode())),
    ("plaintext-secret", res("kubernetes:helm.sh/v3:Release", "helm-ngc-literal", chart="nim-llm",
                             values={"model": {"ngcAPIKey": NVAPI, "name": "nemotron"}})),
    ("plaintext-secret", res("kubernetes:core/v1:ConfigMap", "cm-password", data={"DB_PASSWORD": "hunter2"})),
    # 7 public EKS endpoint
    ("public-eks-endpoint", res("aws:eks/cluster:Cluster", "eks-default-public", roleArn="arn:aws:iam::1:role/eks",
                                vpcConfig={"subnetIds": ["subnet-1"]})),
    ("public-eks-endpoint", res("aws:eks/cluster:Cluster", "eks-public-no-cidrs", roleArn="r",
                                vpcConfig={"endpointPublicAccess": True, "subnetIds": ["subnet-1"]})),
    ("public-eks-endpoint", res("aws:eks/cluster:Cluster", "eks-public-world", roleArn="r",
                                vpcConfig={"endpointPublicAccess": "true", "publicAccessCidrs": ["0.0.0.0/0"]})),
    # 8 privileged pods
    ("privileged-pod", deployment("dep-privileged", DEPLOYMENT, container(privileged=True))),
    ("privileged-pod", lws("lws-privileged-worker", worker=container("worker", privileged=True))),
    ("privileged-pod", deployment("debug-agent", DAEMONSET, container("agent", privileged=True))),
    ("privileged-pod", deployment("nvidia-device-plugin", DEPLOYMENT, container("plugin", privileged=True))),
]

GOOD = [
    ("world-open-ingress", res(SG, "sg-private", ingress=[{"fromPort": 8000, "toPort": 8000, "protocol": "tcp",
                                                            "cidrBlocks": ["10.0.0.0/8", "203.0.113.0/24"]},
                                                           {"fromPort": 0, "toPort": 0, "protocol": "-1",
                                                            "self": True}],
                               egress=[{"fromPort": 0, "toPort": 0, "protocol": "-1", "cidrBlocks": ["0.0.0.0/0"],
                                        "ipv6CidrBlocks": ["::/0"]}])),
    ("world-open-ingress", res(SG_RULE, "rule-egress-world", type="egress", fromPort=0, toPort=0, protocol="-1",
                               cidrBlocks=["0.0.0.0/0"])),
    ("world-open-ingress", res(INGRESS, "ingress-office", cidrIpv4="198.51.100.0/24", fromPort=8000, toPort=8000)),
    ("imdsv1-allowed", launch_template()),
    ("imdsv1-allowed", instance("node-imds-off", metadataOptions={"httpEndpoint": "disabled"})),
    ("unencrypted-volume", instance("node-encrypted-data", ebsBlockDevices=[{"deviceName": "/dev/sdf",
                                                                              "encrypted": "true"}])),
    ("unencrypted-volume", res(VOLUME, "vol-encrypted", size=1000, encrypted=True)),
    ("missing-tags", res(SG_RULE, "rule-not-taggable", type="egress", cidrBlocks=["10.0.0.0/8"])),
    ("missing-tags", res("aws:iam/rolePolicy:RolePolicy", "rp-not-taggable", role="r",
                         policy=policy(allow("secretsmanager:GetSecretValue")))),
    ("wildcard-iam", res("aws:iam/policy:Policy", "pol-describe", policy=policy(
        allow(["ec2:DescribeInstances", "ec2:Describe*"], "*"),
        {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))),
    ("wildcard-iam", res("aws:iam/role:Role", "role-ec2", assumeRolePolicy=policy(
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}),
        managedPolicyArns=["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"])),
    ("plaintext-secret", res("aws:secretsmanager/secretVersion:SecretVersion", "hf-version", secretId="x",
                             secretString=HF)),
    ("plaintext-secret", res("kubernetes:core/v1:Secret", "hf-k8s", stringData={"token": HF})),
    ("plaintext-secret", deployment("dep-refs", DEPLOYMENT, container(
        env=[SECRET_REF, {"name": "MAX_TOKENS", "value": "4096"}, {"name": "HF_TOKEN_FILE", "value": "/run/s/hf"},
             {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "key"}}}],
        args=["--api-key", "$(VLLM_API_KEY)", "--max-num-seqs", "8"]))),
    ("plaintext-secret", res("kubernetes:helm.sh/v3:Release", "helm-ngc-ref", chart="nim-llm", values={
        "model": {"ngcAPISecret": "ngc-api", "name": "nemotron"}, "imagePullSecrets": [{"name": "ngc-registry"}]})),
    ("plaintext-secret", instance("node-arn-ref", userData=(
        "#!/bin/bash\nHF_TOKEN_SECRET_ARN=arn:aws:secretsmanager:us-east-1:1:secret:hf\n"
        "export VLLM_API_KEY=\"$(cat k)\"\n"))),
    ("public-eks-endpoint", res("aws:eks/cluster:Cluster", "eks-private", roleArn="r",
                                vpcConfig={"endpointPublicAccess": False, "endpointPrivateAccess": True})),
    ("public-eks-endpoint", res("aws:eks/cluster:Cluster", "eks-office", roleArn="r",
                                vpcConfig={"endpointPublicAccess": True, "publicAccessCidrs": ["198.51.100.0/24"]})),
    ("privileged-pod", deployment("nvidia-device-plugin", DAEMONSET, container("plugin", privileged=True))),
    ("privileged-pod", deployment("aws-efa-k8s-device-plugin", DAEMONSET, container("efa", privileged=True))),
]


def bad(name: str) -> dict:
    return next(r for _, r in BAD if r["name"] == name)


@pytest.mark.parametrize(("rule", "resource"), BAD, ids=[r["name"] for _, r in BAD])
def test_bad_resource_fires_its_rule_and_only_it(rule, resource):
    violations = check_resources([resource])
    assert violations, f"{rule} did not fire"
    assert {(v.rule, v.resource, v.type) for v in violations} == {(rule, resource["name"], resource["type"])}
    assert all(v.message for v in violations)


@pytest.mark.parametrize(("rule", "resource"), GOOD, ids=[r["name"] for _, r in GOOD])
def test_good_resource_fires_nothing(rule, resource):
    assert rule in RULE_NAMES
    assert check_resources([resource]) == []


def test_every_rule_has_bad_and_good_cases():
    assert {rule for rule, _ in BAD} == set(RULE_NAMES) == {rule for rule, _ in GOOD}
    assert len(RULE_NAMES) == 8


def test_a_small_secure_stack_is_clean():
    stack = [r for _, r in GOOD] + [
        res("aws:ec2/vpc:Vpc", "net", cidrBlock="10.20.0.0/16"),
        res("aws:eks/nodeGroup:NodeGroup", "gpu-pool", clusterName="c", capacityType="ON_DEMAND",
            launchTemplate={"name": "gpu-lt", "version": "1"}),
        res("aws:sagemaker/model:Model", "sm-model", executionRoleArn="arn:aws:iam::1:role/sm",
            primaryContainer={"image": "x", "environment": {"HF_MODEL_ID": "nvidia/x", "SM_NUM_GPUS": "8"}}),
        lws(worker=container("worker", env=[SECRET_REF])),
    ]
    assert check_resources(stack, TAGS) == []


def test_messages_never_repeat_the_secret():
    secret_cases = [r for rule, r in BAD if rule == "plaintext-secret"]
    for violation in check_resources(secret_cases):
        for secret in (HF, NVAPI, AKIA, "s3cr3t-value", "abc123", "hunter2", "changeme"):
            assert secret not in violation.message


def test_messages_say_where_and_what_to_do():
    [open_sg] = check_resources([BAD[0][1]])
    assert "0.0.0.0/0" in open_sg.message and "port 8000" in open_sg.message and "allowedCidrs" in open_sg.message
    [env] = check_resources([bad("dep-env-literal")])
    assert "HF_TOKEN" in env.message and "secretKeyRef" in env.message
    [user_data] = check_resources([bad("node-userdata-export")])
    assert "userData line 2" in user_data.message and "Secrets Manager" in user_data.message
    [tags] = check_resources([bad("node-no-owner")])
    assert "nemotron-deploy:owner" in tags.message
    [iam] = check_resources([bad("rp-secrets-everywhere")])
    assert "'secretsmanager:GetSecretValue' on every resource" in iam.message


def test_required_tag_values_catch_a_resource_tagged_for_another_stack():
    volume = res(VOLUME, "vol", encrypted=True)
    assert check_resources([volume], TAGS) == []
    other = {**TAGS, "nemotron-deploy:stack": "b200-nvfp4"}
    [violation] = check_resources([volume], other)
    assert violation.rule == "missing-tags"
    assert "'h100-pilot', expected 'b200-nvfp4'" in violation.message


def test_provider_default_tags_count_when_the_engine_reports_them():
    volume = {"type": VOLUME, "name": "vol", "inputs": {"encrypted": True, "tagsAll": dict(TAGS)}}
    assert check_resources([volume]) == []


def test_violation_json_and_bad_input():
    violation = Violation("imdsv1-allowed", "lt", LT, "m")
    assert violation.to_json() == {"rule": "imdsv1-allowed", "resource": "lt", "type": LT, "message": "m"}
    with pytest.raises(ValueError, match=r"resources\[0\]"):
        check_resources([{"name": "no-type"}])
    with pytest.raises(ValueError, match=r"resources\[1\]\.inputs"):
        check_resources([res(VOLUME, "v", encrypted=True), {"type": VOLUME, "name": "x", "inputs": [1]}])


@pytest.mark.parametrize(("name", "secret"), [
    ("HF_TOKEN", True), ("NGC_API_KEY", True), ("VLLM_API_KEY", True), ("apiKey", True), ("password", True),
    ("CLIENT_SECRET", True), ("AWS_SECRET_ACCESS_KEY", True), ("HUGGING_FACE_HUB_TOKEN", True),
    ("MAX_TOKENS", False), ("TOKENIZER", False), ("httpTokens", False), ("HF_TOKEN_FILE", False),
    ("apiKeySecretArn", False), ("ngcAPISecret", False), ("imagePullSecrets", False), ("kmsKeyId", False),
    ("NIM_PASSTHROUGH_ARGS", False), ("passwordLength", False),
])
def test_secret_like_names(name, secret):
    assert secret_like(name) is secret


def test_rules_wrap_into_a_crossguard_policy():
    """Issue 7's pack wraps each rule as a ResourceValidationPolicy; the signature must fit without adapters."""
    from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

    policies = [ResourceValidationPolicy(
        name=rule.name, description=rule.description,
        validate=lambda args, report, rule=rule: [report(m, None) for m in rule.check(args.resource_type, args.props)])
        for rule in rules_for(REQUIRED_TAG_KEYS)]
    resource = bad("sg-world")
    args = ResourceValidationArgs(resource["type"], resource["inputs"], "urn:pulumi:s::p::t::n", resource["name"],
                                  None, None)
    reports: dict[str, list[str]] = {}
    for p in policies:
        validate = policy_validate(p)  # the function the policy engine calls
        validate(args, lambda message, urn, name=p.name: reports.setdefault(name, []).append(message))
    assert list(reports) == ["world-open-ingress"]
    assert "0.0.0.0/0" in reports["world-open-ingress"][0]
