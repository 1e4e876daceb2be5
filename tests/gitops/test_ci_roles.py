"""The CI roles' IAM documents (deploy/ci-roles/): each parses, each trust policy admits only GitHub's OIDC tokens for
sts.amazonaws.com with one exact sub claim, no statement grants every action, and what deletes is held by the
toolkit's expiry tag."""

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLES_DIR = REPO / "deploy" / "ci-roles"
OIDC_PROVIDER = "arn:aws:iam::ACCOUNT_ID:oidc-provider/token.actions.githubusercontent.com"
EXPECTED_SUB = {
    "preview": "repo:OWNER/REPO:pull_request",
    "deploy": "repo:OWNER/REPO:environment:production",
    "reaper": "repo:OWNER/REPO:ref:refs/heads/main",
}
EXPIRES_TAG = "nemotron-deploy:expires-at"
# IAM's limits on a policy's size, whitespace not counted: managed policy 6,144 characters, a role's inline ones 10,240
INLINE_LIMIT = 10_240
DESTRUCTIVE = re.compile(
    r":(Delete|Terminate|Deregister|Remove|Detach|Revoke|Release|Disassociate|Untag|Modify|Update)")


def load(name: str) -> dict:
    return json.loads((ROLES_DIR / name).read_text())


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_every_role_has_a_trust_and_a_permission_document():
    names = {p.name for p in ROLES_DIR.glob("*.json")}
    assert names == {f"{role}-{kind}.json" for role in EXPECTED_SUB for kind in ("trust", "permissions")}


@pytest.mark.parametrize("role", sorted(EXPECTED_SUB))
def test_trust_pins_audience_and_the_exact_sub_claim(role):
    document = load(f"{role}-trust.json")
    assert document["Version"] == "2012-10-17"
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Federated": OIDC_PROVIDER}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    # StringEquals only: a StringLike with a wildcard would admit other branches, environments or repositories
    assert statement["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": EXPECTED_SUB[role]}}


@pytest.mark.parametrize("role", sorted(EXPECTED_SUB))
def test_no_statement_grants_every_action(role):
    document = load(f"{role}-permissions.json")
    assert document["Version"] == "2012-10-17"
    assert len(json.dumps(document, separators=(",", ":"))) <= INLINE_LIMIT
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            service, _, name = action.partition(":")
            assert service and name and name != "*" and action != "*", f"{statement['Sid']}: {action}"
            # a wildcard only completes a read verb (ec2:Describe*)
            assert "*" not in name or re.fullmatch(r"(Describe|List|Get)\*", name), f"{statement['Sid']}: {action}"


def test_preview_only_reads():
    for statement in load("preview-permissions.json")["Statement"]:
        for action in as_list(statement["Action"]):
            name = action.split(":", 1)[1]
            assert re.match(r"(Describe|List|Get|View)", name), f"{statement['Sid']}: {action} is not a read"
            assert action != "secretsmanager:GetSecretValue"


def test_reaper_deletes_only_what_carries_the_expiry_tag():
    for statement in load("reaper-permissions.json")["Statement"]:
        if not any(DESTRUCTIVE.search(a) for a in as_list(statement["Action"])):
            continue
        condition = json.dumps(statement.get("Condition", {}))
        by_tag = f"ResourceTag/{EXPIRES_TAG}" in condition
        by_name = all(r.endswith("budget/nemotron-deploy-*") for r in as_list(statement["Resource"]))
        assert by_tag or by_name, statement["Sid"]


def test_deploy_creates_tagged_and_changes_only_tagged():
    for statement in load("deploy-permissions.json")["Statement"]:
        actions = as_list(statement["Action"])
        condition = json.dumps(statement.get("Condition", {}))
        resources = as_list(statement["Resource"])
        if any(re.search(r":Create(Vpc|Subnet|SecurityGroup|Role|Cluster|Nodegroup|Endpoint|Model|Secret|LogGroup)",
                         a) for a in actions):
            assert f"RequestTag/{EXPIRES_TAG}" in condition, statement["Sid"]
        # the exceptions are scoped by name: the state bucket, the toolkit's budgets, EKS node groups' ASGs, and
        # schedules (they take no tags) in the toolkit's schedule groups
        scoped_by_name = all(r.startswith("arn:aws:s3:::STATE_BUCKET") or "budget/nemotron-deploy-" in r
                             or "autoScalingGroupName/eks-" in r or ":schedule/nemotron-" in r for r in resources)
        if any(DESTRUCTIVE.search(a) for a in actions) and not scoped_by_name:
            assert f"ResourceTag/{EXPIRES_TAG}" in condition, statement["Sid"]
        if "iam:PassRole" in actions:
            assert "iam:PassedToService" in condition
