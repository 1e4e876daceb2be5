"""The CrossGuard pack enforces exactly the rules `make plan` reports, through the same implementation."""

import importlib.util
from pathlib import Path

import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationArgs

from planner.policy import RULE_NAMES
from tests.library_internals import policy_validate

REPO = Path(__file__).resolve().parents[2]
TAGS = {"nemotron-deploy:stack": "s", "nemotron-deploy:owner": "o",
        "nemotron-deploy:expires-at": "2026-12-01T18:00:00Z"}


def load_pack_module():
    spec = importlib.util.spec_from_file_location("nemotron_policies", REPO / "policies" / "nemotron_policies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


POLICIES = {p.name: p for p in load_pack_module().resource_policies()}


def run(resource_type, props):
    """Call every policy as the engine would; returns {policy name: [messages]}."""
    args = ResourceValidationArgs(resource_type, props, "urn:pulumi:s::nemotron-deploy::t::n", "n", None, None)
    reports = {}
    for name, policy in POLICIES.items():
        validate = policy_validate(policy)
        validate(args, lambda message, urn, name=name: reports.setdefault(name, []).append(message))
    return reports


def test_one_mandatory_policy_per_rule():
    assert tuple(POLICIES) == RULE_NAMES
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in POLICIES.values())


GOOD_TEMPLATE = {"metadataOptions": {"httpTokens": "required"},
                 "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true", "volumeSize": 500}}],
                 "tagSpecifications": [{"resourceType": "instance", "tags": TAGS},
                                       {"resourceType": "volume", "tags": TAGS}],
                 "tags": TAGS}


@pytest.mark.parametrize(("resource_type", "props", "fired"), [
    ("aws:ec2/launchTemplate:LaunchTemplate", GOOD_TEMPLATE, set()),
    ("aws:ec2/launchTemplate:LaunchTemplate", {**GOOD_TEMPLATE, "metadataOptions": {"httpTokens": "optional"}},
     {"imdsv1-allowed"}),
    ("aws:ec2/launchTemplate:LaunchTemplate", {**GOOD_TEMPLATE, "tags": {}}, {"missing-tags"}),
    ("aws:ec2/securityGroup:SecurityGroup",
     {"ingress": [{"fromPort": 22, "toPort": 22, "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"]}], "tags": TAGS},
     {"world-open-ingress"}),
    ("aws:eks/cluster:Cluster", {"vpcConfig": {"endpointPublicAccess": True}, "tags": TAGS}, {"public-eks-endpoint"}),
    ("aws:iam/rolePolicy:RolePolicy",
     {"policy": '{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'}, {"wildcard-iam"}),
])
def test_pack_fires_the_same_rules_as_make_plan(resource_type, props, fired):
    assert set(run(resource_type, props)) == fired


def test_pack_entry_point_builds_the_pack_from_these_policies():
    text = (REPO / "policies" / "__main__.py").read_text()
    assert "PolicyPack(name=PACK_NAME, policies=resource_policies())" in text
    assert "virtualenv: ../.venv" in (REPO / "policies" / "PulumiPolicy.yaml").read_text()
