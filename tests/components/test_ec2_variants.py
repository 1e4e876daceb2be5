"""Stack configs beyond the shipped ones: allowed CIDRs, a weights mirror, an HF token, an existing network,
capacity reservations and Capacity Blocks, a fixed Availability Zone, a configured or generated API key."""

from __future__ import annotations

import json

import pytest

from components.offline import run_program
from tests.components.runs import (
    API_KEY,
    HF_TOKEN,
    INGRESS_RULE,
    LAUNCH_TEMPLATE,
    NOW,
    SECRETS,
    boot_text,
    only,
    servers,
    stack_variant,
)

PORT = 8000


def _api_rules(run) -> list[dict]:
    return [r["inputs"] for r in run.of_type(INGRESS_RULE) if r["inputs"].get("fromPort") == PORT]


def test_allowed_cidrs_open_the_api_port_to_exactly_those_networks(tmp_path):
    name = stack_variant(tmp_path, "h100-pilot", allowedCidrs=["10.0.0.0/16"])
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    group = only(run, LAUNCH_TEMPLATE)["inputs"]["networkInterfaces"][0]["securityGroups"][0]
    assert _api_rules(run) == [{
        "securityGroupId": group, "ipProtocol": "tcp", "fromPort": PORT, "toPort": PORT, "cidrIpv4": "10.0.0.0/16",
        "description": "vLLM API (key required)", "tags": run.named(f"{name}-servers-api-in-0")["inputs"]["tags"]}]


def test_without_allowed_cidrs_the_api_port_has_no_rule():
    run = run_program("h100-pilot", now=NOW)
    assert _api_rules(run) == []
    assert [r["name"] for r in run.of_type(INGRESS_RULE) if "api-in" in r["name"]] == []


def test_an_ipv6_cidr_becomes_an_ipv6_rule(tmp_path):
    name = stack_variant(tmp_path, "h100-pilot", allowedCidrs=["10.1.0.0/16", "2001:db8::/32"])
    rules = _api_rules(run_program(name, stacks_dir=tmp_path, now=NOW))
    assert [(r.get("cidrIpv4"), r.get("cidrIpv6")) for r in rules] == [("10.1.0.0/16", None), (None, "2001:db8::/32")]


@pytest.mark.parametrize("loader", ["stream", "nvme"])
def test_weights_mirror_grants_read_on_exactly_its_prefix_and_the_compile_cache_read_write(tmp_path, loader):
    changes = {"weightsS3Uri": "s3://model-mirror/nemotron/fp8/"} | ({"weightsLoader": "nvme"} if loader == "nvme"
                                                                     else {})
    name = stack_variant(tmp_path, "h100-pilot", **changes)
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    statements = json.loads(run.named(f"{name}-servers-access")["inputs"]["policy"])["Statement"]
    cache = statements[3]["Condition"]["StringLike"]["s3:prefix"][0]
    assert cache.startswith("nemotron-deploy/compile-cache/") and len(cache.rsplit("/", 1)[-1]) == 16
    assert statements[1:] == [
        {"Sid": "WeightsList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::model-mirror",
         "Condition": {"StringLike": {"s3:prefix": ["nemotron/fp8", "nemotron/fp8/*"]}}},
        {"Sid": "WeightsRead", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::model-mirror/nemotron/fp8/*"},
        {"Sid": "CompileCacheList", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": "arn:aws:s3:::model-mirror", "Condition": {"StringLike": {"s3:prefix": [cache, f"{cache}/*"]}}},
        {"Sid": "CompileCacheReadWrite", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:aws:s3:::model-mirror/{cache}/*"},
    ]
    user_data = boot_text(servers(run)[0])
    assert "WEIGHTS_S3_URI=s3://model-mirror/nemotron/fp8/" in user_data
    assert f"WEIGHTS_LOADER={loader}" in user_data
    assert f"COMPILE_CACHE_URI=s3://model-mirror/{cache}/" in user_data
    mirror = "MIRROR_SNAPSHOT=hf/hub/models--nvidia--NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4/"
    entry = user_data[user_data.index("/entry.sh"):]
    if loader == "nvme":  # staged on the NVMe into the HF cache layout: the repo id resolves offline
        assert mirror + "snapshots/" in user_data
        assert "vllm serve nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4 " in entry
        assert "runai_streamer" not in user_data
    else:  # streamed: vLLM reads the staged copy itself, each rank its share
        assert mirror not in user_data
        assert "vllm serve s3://model-mirror/nemotron/fp8/ --served-model-name nvidia/NVIDIA-Nemotron-3-Ultra" in entry
        assert ("--load-format runai_streamer --model-loader-extra-config "
                "'{\"distributed\":true,\"concurrency\":32,\"memory_limit\":8589934592}'") in entry
    # the image still comes from Docker Hub, so the network keeps its NAT gateway
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == 1


def test_hf_token_reaches_the_secret_but_no_resource(tmp_path):
    name = stack_variant(tmp_path, "h200-pilot", hfToken={"secure": "v1:cipher"}, apiKey={"secure": "v1:cipher"},
                         weightsS3Uri=None)  # the token is for the hub, without a staged copy
    run = run_program(name, stacks_dir=tmp_path, now=NOW, secrets=SECRETS)
    assert run.of_type("random:index/randomPassword:RandomPassword") == []  # the configured key is used
    description = run.named(f"{name}-serving-secret")["inputs"]["description"]
    assert "VLLM_API_KEY" in description and "HF_TOKEN" in description
    text = json.dumps(run.resources) + json.dumps(run.outputs)
    assert API_KEY not in text and HF_TOKEN not in text


def test_a_missing_api_key_is_generated_as_a_secret():
    run = run_program("h100-pilot", now=NOW)
    generated = only(run, "random:index/randomPassword:RandomPassword")
    assert generated["inputs"] == {"length": 48, "special": False}
    assert "offline-generated" not in json.dumps(run.resources)


def test_an_existing_network_is_used_as_is(tmp_path):
    name = stack_variant(tmp_path, "b200-nvfp4",
                         network={"vpcId": "vpc-0123456789abcdef0", "subnetId": "subnet-0123456789abcdef0"})
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    created = {r["type"] for r in run.resources}
    assert not created & {"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway",
                          "aws:ec2/vpcEndpoint:VpcEndpoint"}
    assert run.named(f"{name}-servers-sg")["inputs"]["vpcId"] == "vpc-0123456789abcdef0"
    interfaces = only(run, LAUNCH_TEMPLATE)["inputs"]["networkInterfaces"]
    assert {i["subnetId"] for i in interfaces} == {"subnet-0123456789abcdef0"}


def test_a_capacity_block_is_targeted_without_a_placement_group(tmp_path):
    name = stack_variant(tmp_path, "h100-pilot", capacityReservationId="cr-0123456789abcdef0", capacityBlock=True,
                         availabilityZone="us-east-1d")
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    template = only(run, LAUNCH_TEMPLATE)["inputs"]
    assert template["instanceMarketOptions"] == {"marketType": "capacity-block"}
    assert template["capacityReservationSpecification"] == {
        "capacityReservationTarget": {"capacityReservationId": "cr-0123456789abcdef0"}}
    assert "placement" not in template and run.of_type("aws:ec2/placementGroup:PlacementGroup") == []
    assert run.named(f"{name}-network-private-subnet")["inputs"]["availabilityZone"] == "us-east-1d"


def test_an_on_demand_reservation_is_targeted_inside_the_placement_group(tmp_path):
    name = stack_variant(tmp_path, "h100-pilot", capacityReservationId="cr-0123456789abcdef0")
    template = only(run_program(name, stacks_dir=tmp_path, now=NOW), LAUNCH_TEMPLATE)["inputs"]
    assert template["capacityReservationSpecification"]["capacityReservationTarget"] == {
        "capacityReservationId": "cr-0123456789abcdef0"}
    assert "instanceMarketOptions" not in template
    assert template["placement"] == {"groupName": f"{name}-servers-placement"}


def test_without_a_zone_the_first_zone_offering_the_type_is_used():
    run = run_program("h100-pilot", now=NOW)
    subnets = {r["name"]: r["inputs"]["availabilityZone"] for r in run.of_type("aws:ec2/subnet:Subnet")}
    assert subnets == {"h100-pilot-network-private-subnet": "us-east-1a", "h100-pilot-network-public-subnet":
                       "us-east-1a"}


@pytest.mark.parametrize("stack", ["jumpstart", "eks-nim", "eks-vllm"])
def test_other_targets_run_without_error(stack):
    assert run_program(stack, now=NOW).outputs["expires_at"] == "2026-12-01T17:30:00Z"


@pytest.mark.parametrize(("stack", "key", "blank"), [
    ("h100-pilot", "apiKey", ""), ("h100-pilot", "apiKey", " \n"), ("eks-vllm", "apiKey", ""),
    ("eks-nim", "ngcApiKey", " "), ("eks-vllm", "hfToken", ""),
])
def test_a_blank_secret_is_refused_before_anything_is_declared(stack, key, blank):
    """An empty VLLM_API_KEY turns vLLM's own check off: `pulumi config set --secret apiKey ''` must not deploy."""
    from components.offline import OfflineRunError

    with pytest.raises(OfflineRunError, match=f"nemotron-deploy:{key}: an empty value is not valid"):
        run_program(stack, secrets={key: blank})


def test_pulumi_up_without_a_required_secret_stops_before_anything_is_declared(monkeypatch):
    """eks-nim needs the NGC key: the program stops at once, before the network and cluster, naming the command."""
    import components.offline as offline

    monkeypatch.setattr(offline, "required_secret_keys", lambda config: ())  # no placeholder, as a real `pulumi up`
    with pytest.raises(offline.OfflineRunError, match="nemotron-deploy:ngcApiKey is not set: stack eks-nim cannot "
                                                      "deploy without it"):
        run_program("eks-nim")
