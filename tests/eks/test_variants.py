"""EKS stack configs beyond the shipped ones: an existing cluster by name, two nodes (LeaderWorkerSet with Ray), a
Capacity Block, a public endpoint for named CIDRs, an existing network, clusters that already run the add-ons, a
generated API key, and the config errors that stop a stack before anything is declared."""

from __future__ import annotations

import json
import shlex

import pytest

from components.offline import OfflineMocks, OfflineRunError, run_program
from planner.errors import PlanInputError
from planner.policy import check_resources
from planner.stack_config import parse_stack
from planner.targets.eks import LWS_CHART, required_secret_keys
from tests.components.runs import NOW
from tests.eks.cases import (
    CLUSTER,
    DEPLOYMENT,
    HELM_RELEASE,
    LWS,
    NODE_GROUP,
    SECRETS,
    declared_manifest,
    only,
    validate,
    variant_plan,
    write_variant,
)

NETWORK = {"vpcId": "vpc-0123456789abcdef0", "subnetId": "subnet-0123456789abcdef0"}


def test_an_existing_cluster_gets_a_node_group_and_the_workload_only(tmp_path):
    name = write_variant(tmp_path, "eks-vllm", eks={"clusterName": "platform-prod"}, network=NETWORK)
    run = run_program(name, stacks_dir=tmp_path, now=NOW, secrets=SECRETS)
    assert run.of_type(CLUSTER) == [] and run.of_type("aws:ec2/vpc:Vpc") == []
    assert run.of_type("aws:eks/addon:Addon") == []
    # the stack's own metrics agent (its log group and Pod Identity role) comes with the workload
    assert [r["inputs"]["name"] for r in run.of_type("aws:cloudwatch/logGroup:LogGroup")] == [
        f"/nemotron-deploy/{name}/prometheus"]
    assert [r["name"] for r in run.of_type(NODE_GROUP)] == [f"{name}-gpu-nodes"]  # no system nodes
    assert [r["name"] for r in run.of_type("aws:iam/role:Role")] == [
        f"{name}-gpu-role", f"{name}-metrics-role", f"{name}-workload-weights-role"]
    nodes = run.named(f"{name}-gpu-nodes")["inputs"]
    assert nodes["clusterName"] == "platform-prod" and nodes["subnetIds"] == [NETWORK["subnetId"]]
    # the looked-up cluster's security group and endpoint reach the template and the provider
    found = OfflineMocks("us-east-1")._existing_eks_cluster({"name": "platform-prod"})  # what getCluster answers
    interfaces = run.named(f"{name}-gpu-template")["inputs"]["networkInterfaces"]
    assert {tuple(i["securityGroups"]) for i in interfaces} == {(found["vpcConfig"]["clusterSecurityGroupId"],)}
    kubeconfig = json.loads(only(run, "pulumi:providers:kubernetes")["inputs"]["kubeconfig"])
    assert kubeconfig["clusters"][0]["name"] == "platform-prod"
    assert kubeconfig["clusters"][0]["cluster"] == {
        "server": found["endpoint"], "certificate-authority-data": found["certificateAuthorities"][0]["data"]}
    assert sorted(r["name"] for r in run.of_type(DEPLOYMENT)) == [f"{name}-metrics-agent", f"{name}-workload-server"]
    assert run.outputs["cluster_name"] == "platform-prod"
    assert check_resources(run.resources, variant_plan(tmp_path, name).tags) == []


def test_an_existing_network_with_control_plane_subnets_creates_no_network(tmp_path):
    subnets = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]
    name = write_variant(tmp_path, "eks-vllm", eks={"controlPlaneSubnetIds": subnets}, network=NETWORK)
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    assert run.of_type("aws:ec2/vpc:Vpc") == [] and run.of_type("aws:ec2/subnet:Subnet") == []
    assert only(run, CLUSTER)["inputs"]["vpcConfig"]["subnetIds"] == subnets
    assert run.named(f"{name}-gpu-nodes")["inputs"]["subnetIds"] == [NETWORK["subnetId"]]


def test_two_nodes_declare_a_leader_worker_set_and_its_controller(tmp_path):
    name = write_variant(tmp_path, "eks-vllm", nodes=2, precision="bf16", concurrency=8)
    run, plan = run_program(name, stacks_dir=tmp_path, now=NOW), variant_plan(tmp_path, name)
    assert [r["name"] for r in run.of_type(DEPLOYMENT)] == [f"{name}-metrics-agent"]  # the model is an LWS
    assert run.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    lws = only(run, LWS)["inputs"]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and lws["kind"] == "LeaderWorkerSet"
    template = lws["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    worker = template["workerTemplate"]["spec"]["containers"][0]
    assert f"exec {shlex.join(plan.serving.argv)}" in leader["command"][2]
    assert "ray start --address=$(LWS_LEADER_ADDRESS):6379 --block" in worker["command"][2]
    for container in (leader, worker):
        assert container["resources"]["limits"] == {"nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32"}
    validate(declared_manifest(only(run, LWS)), "1.35")
    releases = {r["inputs"]["name"]: r["inputs"] for r in run.of_type(HELM_RELEASE)}
    assert releases["lws"]["chart"] == "oci://registry.k8s.io/lws/charts/lws"
    assert releases["lws"]["version"] == LWS_CHART.version and releases["lws"]["namespace"] == "lws-system"
    assert run.named(f"{name}-gpu-nodes")["inputs"]["scalingConfig"]["desiredSize"] == 2
    assert check_resources(run.resources, plan.tags) == []


def test_a_capacity_block_changes_capacity_type_and_market_and_drops_the_placement_group(tmp_path):
    name = write_variant(tmp_path, "eks-vllm", capacityBlock=True, capacityReservationId="cr-0123456789abcdef0")
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    assert run.named(f"{name}-gpu-nodes")["inputs"]["capacityType"] == "CAPACITY_BLOCK"
    template = run.named(f"{name}-gpu-template")["inputs"]
    assert template["instanceMarketOptions"] == {"marketType": "capacity-block"}
    assert template["capacityReservationSpecification"] == {
        "capacityReservationTarget": {"capacityReservationId": "cr-0123456789abcdef0"}}
    assert "placement" not in template and run.of_type("aws:ec2/placementGroup:PlacementGroup") == []


def test_scaling_bounds_come_from_the_eks_section(tmp_path):
    name = write_variant(tmp_path, "eks-vllm", eks={"minNodes": 0, "maxNodes": 3})
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    assert run.named(f"{name}-gpu-nodes")["inputs"]["scalingConfig"] == {"minSize": 0, "maxSize": 3,
                                                                          "desiredSize": 1}


def test_public_access_cidrs_open_the_endpoint_to_those_networks_only(tmp_path):
    name = write_variant(tmp_path, "eks-nim", eks={"publicAccessCidrs": ["203.0.113.0/24"]})
    run = run_program(name, stacks_dir=tmp_path, now=NOW)
    vpc = only(run, CLUSTER)["inputs"]["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True and vpc["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert vpc["endpointPrivateAccess"] is True
    assert [v.rule for v in check_resources(run.resources, variant_plan(tmp_path, name).tags)] == []
    opened = [dict(r, inputs=dict(r["inputs"], vpcConfig=dict(vpc, publicAccessCidrs=["0.0.0.0/0"])))
              for r in run.of_type(CLUSTER)]
    assert [v.rule for v in check_resources(opened)] == ["public-eks-endpoint"]


def test_clusters_that_already_run_the_add_ons_get_no_helm_release(tmp_path):
    name = write_variant(tmp_path, "eks-vllm", eks={"installAddons": False})
    assert run_program(name, stacks_dir=tmp_path, now=NOW).of_type(HELM_RELEASE) == []


def test_a_missing_api_key_is_generated_and_exported_as_a_secret():
    run = run_program("eks-vllm", now=NOW)
    (password,) = run.of_type("random:index/randomPassword:RandomPassword")
    assert password["inputs"]["length"] == 48 and password["inputs"]["special"] is False
    assert run.outputs["api_key"] == "[secret]"


def test_nim_cannot_deploy_without_its_ngc_key_and_the_engine_supplies_a_placeholder(tmp_path):
    plan = variant_plan(tmp_path, write_variant(tmp_path, "eks-nim"))
    assert required_secret_keys(plan.config) == ("ngcApiKey",)
    assert required_secret_keys(variant_plan(tmp_path, write_variant(tmp_path, "eks-vllm")).config) == ()
    run = run_program("eks-nim", stacks_dir=tmp_path, now=NOW)  # no secrets given: a placeholder NGC key
    assert len(run.of_type("kubernetes:core/v1:Secret")) == 2


def test_a_plan_that_does_not_fit_declares_nothing(tmp_path):
    name = write_variant(tmp_path, "eks-vllm", precision="bf16")  # 1,024 GiB on 8x H100
    with pytest.raises(OfflineRunError, match="does not fit"):
        run_program(name, stacks_dir=tmp_path, now=NOW)


BASE = {"aws:region": "us-east-1", "nemotron-deploy:target": "eks", "nemotron-deploy:owner": "t",
        "nemotron-deploy:instanceType": "p5.48xlarge", "nemotron-deploy:precision": "fp8"}


@pytest.mark.parametrize(("changes", "field", "value", "allowed"), [
    ({"eks": {"minNodes": 2}}, "nemotron-deploy:eks.minNodes", 2, "at most nodes (1)"),
    ({"nodes": 2, "eks": {"maxNodes": 1}}, "nemotron-deploy:eks.maxNodes", 1, "at least nodes (2)"),
    ({"engine": "nim", "nodes": 2}, "nemotron-deploy:nodes", 2, "1 for engine nim on eks"),
    ({"eks": {"clusterName": "prod"}}, "nemotron-deploy:network", None, "needs network.vpcId"),
    ({"network": NETWORK}, "nemotron-deploy:eks.controlPlaneSubnetIds", None, "two or more subnets"),
    ({"eks": {"publicAccessCidrs": ["0.0.0.0/0"]}}, "nemotron-deploy:eks.publicAccessCidrs", ["0.0.0.0/0"],
     "would open the API to the world"),
    ({"eks": {"controlPlaneSubnetIds": ["sn-1"]}}, "nemotron-deploy:eks.controlPlaneSubnetIds", ["sn-1"],
     "subnet ids such as"),
    ({"eks": {"namespace": "Bad_NS"}}, "nemotron-deploy:eks.namespace", "Bad_NS", "a Kubernetes name"),
    ({"allowedCidrs": ["10.0.0.0/16"]}, "nemotron-deploy:allowedCidrs", ["10.0.0.0/16"], "not used by target eks"),
    ({"engine": "nim", "weightsS3Uri": "s3://bucket/prefix"}, "nemotron-deploy:weightsS3Uri", "s3://bucket/prefix",
     "not used by engine nim"),
    ({"weightsS3Uri": "s3://bucket/prefix", "weightsLoader": "nvme"}, "nemotron-deploy:weightsLoader", "nvme",
     "only for target ec2"),
    ({"eks": {"clusterName": "prod", "publicAccessCidrs": ["10.0.0.0/16"]}, "network": NETWORK},
     "nemotron-deploy:eks.clusterName", "prod", "keeps its own subnets and endpoint"),
])
def test_bad_eks_configs_name_the_key_and_what_is_allowed(changes, field, value, allowed):
    raw = BASE | {f"nemotron-deploy:{key}": v for key, v in changes.items()}
    with pytest.raises(PlanInputError) as err:
        parse_stack("bad", raw, "stacks/Pulumi.bad.yaml")
    assert err.value.field == field
    assert err.value.value == value
    assert allowed in err.value.allowed
