"""The shipped EC2 stacks under the offline engine: what a reviewer checks before `pulumi up`.

IMDSv2, encryption, closed ingress, one EFA interface per network card, the cluster placement group, tags on every
taggable resource, the planner's exact argv in the boot script with no secret in sight, the dead-man switch, and
the outputs a user needs. Every assertion names a concrete value, so each test fails when the property breaks.
"""

from __future__ import annotations

import json
import shlex

import pytest

from components.offline import HIDDEN_VALUE, accepts_tags, run_program
from planner.policy import check_resources
from planner.tags import TAG_EXPIRES_AT
from tests.components.runs import (
    API_KEY,
    EC2_STACKS,
    HF_TOKEN,
    INGRESS_RULE,
    LAUNCH_TEMPLATE,
    NOW,
    SECRETS,
    SECURITY_GROUP,
    boot_text,
    only,
    servers,
    shipped_plan,
    shipped_run,
)

pytestmark = pytest.mark.parametrize("stack", sorted(EC2_STACKS))


def test_imdsv2_is_required_and_instance_tags_are_readable(stack):
    run = shipped_run(stack)
    expected = {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1,
                "instanceMetadataTags": "enabled"}
    assert only(run, LAUNCH_TEMPLATE)["inputs"]["metadataOptions"] == expected
    for server in servers(run):
        assert server["inputs"]["metadataOptions"] == expected


def test_root_volume_is_encrypted_gp3(stack):
    run = shipped_run(stack)
    assert only(run, LAUNCH_TEMPLATE)["inputs"]["blockDeviceMappings"] == [{
        "deviceName": "/dev/sda1",
        "ebs": {"volumeSize": 200, "volumeType": "gp3", "encrypted": "true", "deleteOnTermination": "true"}}]
    for server in servers(run):
        assert server["inputs"]["rootBlockDevice"]["encrypted"] is True
        assert server["inputs"]["rootBlockDevice"]["volumeType"] == "gp3"


def test_no_ingress_but_members_and_endpoints_by_default(stack):
    run = shipped_run(stack)
    servers_group = only(run, LAUNCH_TEMPLATE)["inputs"]["networkInterfaces"][0]["securityGroups"][0]
    endpoints_group = run.named(f"{stack}-network-ssm-endpoint")["inputs"]["securityGroupIds"][0]
    assert all("ingress" not in r["inputs"] for r in run.of_type(SECURITY_GROUP))  # no inline rules
    sources = {(r["inputs"]["securityGroupId"], r["inputs"].get("referencedSecurityGroupId"),
                r["inputs"].get("cidrIpv4"), r["inputs"].get("cidrIpv6"), r["inputs"].get("fromPort"))
               for r in run.of_type(INGRESS_RULE)}
    assert sources == {
        (servers_group, servers_group, None, None, None),  # members only: EFA, NCCL, Ray
        (endpoints_group, None, "10.64.0.0/16", None, 443),  # HTTPS to the VPC endpoints from inside the VPC
    }
    assert len(run.of_type(INGRESS_RULE)) == 2


def test_one_efa_interface_per_network_card(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    interfaces = only(run, LAUNCH_TEMPLATE)["inputs"]["networkInterfaces"]
    assert len(interfaces) == EC2_STACKS[stack] == plan.instance.efa_cards
    assert [i["networkCardIndex"] for i in interfaces] == list(range(EC2_STACKS[stack]))
    assert [i["interfaceType"] for i in interfaces] == ["efa"] + ["efa-only"] * (EC2_STACKS[stack] - 1)
    assert {i["deviceIndex"] for i in interfaces} == {0}
    assert {i["deleteOnTermination"] for i in interfaces} == {"true"}
    private_subnet = run.named(f"{stack}-network-ssm-endpoint")["inputs"]["subnetIds"][0]
    assert {i["subnetId"] for i in interfaces} == {private_subnet}
    assert len({tuple(i["securityGroups"]) for i in interfaces}) == 1


def test_servers_launch_into_a_cluster_placement_group(stack):
    run = shipped_run(stack)
    group = only(run, "aws:ec2/placementGroup:PlacementGroup")
    assert group["inputs"]["strategy"] == "cluster"
    assert only(run, LAUNCH_TEMPLATE)["inputs"]["placement"] == {"groupName": group["name"]}


def test_every_taggable_resource_carries_the_plan_tags(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    taggable = [r for r in run.resources if accepts_tags(r["type"])]
    assert len(taggable) >= 25
    for resource in taggable:
        tags = resource["inputs"].get("tags", {})
        assert {k: tags.get(k) for k in plan.tags} == plan.tags, resource["name"]
    template = only(run, LAUNCH_TEMPLATE)["inputs"]
    assert {s["resourceType"]: s["tags"] for s in template["tagSpecifications"]} == {
        "instance": plan.tags, "volume": plan.tags, "network-interface": plan.tags}
    for server in servers(run):
        assert server["inputs"]["volumeTags"] == plan.tags
    assert plan.tags[TAG_EXPIRES_AT] == "2026-12-01T17:30:00Z"  # NOW + 8 h TTL


def test_boot_script_runs_the_planners_exact_argv(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    head = boot_text(servers(run)[0])
    # the planner's argv, which ends with the middleware that puts the API key on every path (vLLM guards only /v1)
    assert f"exec {shlex.join(plan.serving.argv)}\n" in head
    assert plan.serving.argv[-2:] == ("--middleware", "nemotron_auth.require_api_key")
    assert "--api-key" not in plan.serving.argv


def test_no_secret_value_in_resources_user_data_or_outputs(stack):
    run = shipped_run(stack)
    for server in servers(run):
        assert boot_text(server).startswith("#cloud-config\n")  # plain text: no secret flowed into it
    version = only(run, "aws:secretsmanager/secretVersion:SecretVersion")
    assert version["inputs"]["secretString"] == HIDDEN_VALUE
    text = json.dumps(run.resources) + json.dumps(run.outputs)
    for value in SECRETS.values():
        assert value not in text
    assert API_KEY not in text and HF_TOKEN not in text


def test_declared_resources_pass_the_policy_rules(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    assert check_resources(run.resources, plan.tags) == []


def test_dead_man_switch_terminates_at_the_expiry_tag(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    assert only(run, LAUNCH_TEMPLATE)["inputs"]["instanceInitiatedShutdownBehavior"] == "terminate"
    for server in servers(run):
        user_data = boot_text(server)
        assert "- [systemctl, enable, --now, nemotron-deadman.timer]" in user_data
        assert "OnUnitActiveSec=1min" in user_data
        assert "EXPIRY_TAG=nemotron-deploy:expires-at" in user_data
        assert 'imds "tags/instance/$EXPIRY_TAG"' in user_data
        assert "shutdown -h now" in user_data
        assert plan.tags[TAG_EXPIRES_AT] not in user_data  # read from the tag, so renewal needs no new server


def test_a_later_plan_retags_but_keeps_the_boot_script(stack):
    first = shipped_run(stack)
    later = run_program(stack, now=NOW.replace(hour=15), secrets=SECRETS)
    assert [boot_text(s) for s in servers(later)] == [boot_text(s) for s in servers(first)]
    assert servers(later)[0]["inputs"]["tags"][TAG_EXPIRES_AT] == "2026-12-01T23:30:00Z"


def test_instance_role_reads_exactly_the_stack_secret(stack):
    run = shipped_run(stack)
    secret_arn = run.outputs["api_key_secret_arn"]
    policy = json.loads(run.named(f"{stack}-servers-access")["inputs"]["policy"])
    assert policy["Statement"][0] == {"Sid": "StackSecret", "Effect": "Allow",
                                      "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}
    # with a staged copy: read its prefix, read and write the compile cache's (test_ec2_variants pins them)
    staged = shipped_plan(stack).config.weights_s3_uri is not None
    assert [s["Sid"] for s in policy["Statement"][1:]] == (
        ["WeightsList", "WeightsRead", "CompileCacheList", "CompileCacheReadWrite"] if staged else [])
    attachment = only(run, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")["inputs"]
    assert attachment["policyArn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    trust = json.loads(run.named(f"{stack}-servers-role")["inputs"]["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_outputs_say_how_to_reach_the_endpoint(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    outputs = run.outputs
    assert len(outputs["instance_ids"]) == len(outputs["private_ips"]) == plan.config.nodes == len(servers(run))
    head_id, head_ip = outputs["instance_ids"][0], outputs["private_ips"][0]
    assert outputs["endpoint_url"] == f"http://{head_ip}:8000/v1"
    assert outputs["ssm_port_forward"] == (
        f"aws ssm start-session --region {plan.region} --target {head_id} --document-name "
        "AWS-StartPortForwardingSession --parameters portNumber=8000,localPortNumber=8000")
    assert outputs["usd_per_hour"] == plan.cost.usd_per_hour
    assert outputs["expires_at"] == plan.tags[TAG_EXPIRES_AT]
