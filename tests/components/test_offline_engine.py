"""The offline engine itself: every stack runs, runs do not leak into each other, unknown invokes and failures are
loud, secrets are masked, and `scripts.plan` gets the contract's resource entries."""

from __future__ import annotations

import types

import pulumi
import pulumi_aws as aws
import pytest

import components.offline as offline
from components.offline import HIDDEN_VALUE, OfflineRunError, accepts_tags, run_program
from planner.plan import plan_stack
from planner.stack_config import load_stack, stack_names
from scripts.plan import plan_entry
from tests.components.runs import EC2_STACKS, NOW, STACKS_DIR


def test_every_shipped_stack_runs_and_every_ec2_stack_declares_its_servers():
    for stack in stack_names(STACKS_DIR):
        run = run_program(stack, now=NOW)
        servers = run.of_type("aws:ec2/instance:Instance")
        if stack in EC2_STACKS:
            assert len(servers) == load_stack(STACKS_DIR, stack).config.nodes
        assert all(r["name"].startswith(f"{stack}-") for r in run.resources)


def test_runs_are_isolated_from_each_other():
    alone = run_program("h100-pilot", now=NOW)
    run_program("h100-bf16", now=NOW)
    again = run_program("h100-pilot", now=NOW)
    assert again.resources == alone.resources
    assert again.outputs == alone.outputs


def _fake_program(monkeypatch, main):
    monkeypatch.setattr(offline, "_program_module", lambda: types.SimpleNamespace(main=main))


def test_an_invoke_the_engine_does_not_know_fails_the_run(monkeypatch):
    def main(stacks_dir, now, provisional_expiry):
        zones = aws.get_availability_zones_output()
        aws.ec2.Vpc("h100-pilot-vpc", cidr_block=zones.names.apply(lambda _: "10.0.0.0/16"))

    _fake_program(monkeypatch, main)
    with pytest.raises(OfflineRunError, match="aws:index/getAvailabilityZones:getAvailabilityZones"):
        run_program("h100-pilot", now=NOW)


def test_an_error_inside_an_apply_fails_the_run(monkeypatch):
    def main(stacks_dir, now, provisional_expiry):
        aws.ec2.Vpc("h100-pilot-vpc", cidr_block=pulumi.Output.from_input("x").apply(lambda _: {}["missing"]))

    _fake_program(monkeypatch, main)
    with pytest.raises(OfflineRunError, match="h100-pilot: the Pulumi program failed"):
        run_program("h100-pilot", now=NOW)


def test_secret_inputs_and_outputs_are_masked(monkeypatch):
    def main(stacks_dir, now, provisional_expiry):
        aws.secretsmanager.Secret("h100-pilot-secret", description=pulumi.Output.secret("hidden-description"))
        pulumi.export("token", pulumi.Output.secret("hidden-output"))

    _fake_program(monkeypatch, main)
    run = run_program("h100-pilot", now=NOW)
    assert run.named("h100-pilot-secret")["inputs"]["description"] == HIDDEN_VALUE
    assert run.outputs == {"token": HIDDEN_VALUE}


def test_plan_entry_lists_the_declared_resources_with_the_plans_tags():
    plan = plan_stack(load_stack(STACKS_DIR, "h200-pilot"), NOW)
    entry = plan_entry(plan)
    assert entry["resources"] and all(set(r) == {"type", "name", "inputs"} for r in entry["resources"])
    server = next(r for r in entry["resources"] if r["type"] == "aws:ec2/instance:Instance")
    assert {k: server["inputs"]["tags"][k] for k in entry["tags"]} == entry["tags"]


@pytest.mark.parametrize(("type_token", "taggable"), [
    ("aws:ec2/instance:Instance", True),
    ("aws:ec2/launchTemplate:LaunchTemplate", True),
    ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", True),
    ("aws:iam/rolePolicy:RolePolicy", False),
    ("aws:ec2/routeTableAssociation:RouteTableAssociation", False),
    ("aws:secretsmanager/secretVersion:SecretVersion", False),
    ("random:index/randomPassword:RandomPassword", False),
    ("nemotron-deploy:index:GpuServerGroup", False),
])
def test_accepts_tags_reads_the_provider_signature(type_token, taggable):
    assert accepts_tags(type_token) is taggable


def test_the_policys_taggable_list_covers_every_taggable_type_the_stacks_declare():
    """The pure policy cannot introspect pulumi_aws; its list must name every taggable type the components use, so a
    resource declared without tags is still caught."""
    from planner.policy import TAGGABLE_TYPES

    declared = {r["type"] for stack in stack_names(STACKS_DIR) for r in run_program(stack, now=NOW).resources}
    taggable = {t for t in declared if t.startswith("aws:") and accepts_tags(t)}
    assert taggable and taggable <= TAGGABLE_TYPES, sorted(taggable - TAGGABLE_TYPES)
