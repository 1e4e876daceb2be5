"""eks-nim and eks-vllm through the offline engine (the path `make plan` takes): the GPU node group (instance type,
taint, EFA, IMDSv2, encryption), the private cluster and its roles, the Kubernetes provider, pinned add-ons, and the
workload as pulumi_kubernetes declared it: schema-valid, GPU limits from the layout, secrets only by reference."""

from __future__ import annotations

import json

import pytest

from components.offline import HIDDEN_VALUE
from planner.policy import check_resources
from planner.targets.eks import CLUSTER_POLICIES, EFA_DEVICE_PLUGIN, NODE_POLICIES, NVIDIA_DEVICE_PLUGIN
from tests.eks.cases import (
    API_KEY,
    CLUSTER,
    EKS_STACKS,
    HELM_RELEASE,
    HF_TOKEN,
    K8S_SECRET,
    LAUNCH_TEMPLATE,
    NGC_KEY,
    NODE_GROUP,
    declared_manifest,
    kubernetes_version,
    only,
    shipped_plan,
    shipped_run,
    validate,
)

EFA_CARDS = {"eks-nim": 16, "eks-vllm": 32}  # p5en.48xlarge, p5.48xlarge (docs/sources.md#aws-limits)


@pytest.fixture(params=EKS_STACKS)
def stack(request):
    return request.param


def gpu_nodes(run, stack: str) -> dict:
    return run.named(f"{stack}-gpu-nodes")


def gpu_template(run, stack: str) -> dict:
    return run.named(f"{stack}-gpu-template")


def test_gpu_node_group_has_the_plans_instance_type_gpu_ami_taint_labels_and_bounds(stack):
    inputs, plan = gpu_nodes(shipped_run(stack), stack)["inputs"], shipped_plan(stack)
    assert inputs["instanceTypes"] == [plan.instance.name]
    assert inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    assert inputs["capacityType"] == "ON_DEMAND"
    assert inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert inputs["labels"]["nemotron-deploy/pool"] == "gpu" and inputs["labels"]["nvidia.com/gpu.present"] == "true"
    assert inputs["scalingConfig"] == {"minSize": 1, "maxSize": 1, "desiredSize": plan.config.nodes}
    assert inputs["clusterName"] == f"nemotron-deploy-{stack}"


def test_gpu_launch_template_requires_imdsv2_encrypts_and_attaches_efa_on_every_card(stack):
    run = shipped_run(stack)
    template = gpu_template(run, stack)["inputs"]
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    # EKS tags every managed node with kubernetes.io/cluster/<name>: tag keys with "/" make a launch with instance
    # tags in IMDS fail, so the setting is off explicitly (not left to the account default).
    assert template["metadataOptions"]["instanceMetadataTags"] == "disabled"
    (root,) = template["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda"
    assert root["ebs"] == {"volumeSize": 200, "volumeType": "gp3", "encrypted": "true",
                                "deleteOnTermination": "true"}
    interfaces = template["networkInterfaces"]
    assert len(interfaces) == EFA_CARDS[stack] == shipped_plan(stack).instance.efa_cards
    assert [i["networkCardIndex"] for i in interfaces] == list(range(EFA_CARDS[stack]))
    assert [i["interfaceType"] for i in interfaces] == ["efa"] + ["efa-only"] * (EFA_CARDS[stack] - 1)
    assert [i["deviceIndex"] for i in interfaces] == [0] + [1] * (EFA_CARDS[stack] - 1)
    assert all("subnetId" not in i for i in interfaces)  # the node group places them in its subnet
    # Every interface in the one security group EKS creates for the cluster (members reach each other on every
    # port, as EFA needs), not one the stack declares.
    groups = {tuple(i["securityGroups"]) for i in interfaces}
    endpoint_groups = {g for r in run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
                       for g in r["inputs"].get("securityGroupIds", [])}
    assert len(groups) == 1 and len(next(iter(groups))) == 1
    assert next(iter(groups))[0].startswith("sg-") and not set(next(iter(groups))) & endpoint_groups
    assert "imageId" not in template and "iamInstanceProfile" not in template  # EKS chooses; the node group has them
    placement = run.named(f"{stack}-gpu-placement")["inputs"]
    assert placement["strategy"] == "cluster" and template["placement"] == {"groupName": f"{stack}-gpu-placement"}
    assert gpu_nodes(run, stack)["inputs"]["launchTemplate"]["id"].startswith("lt-")


def test_cluster_is_private_logs_the_control_plane_and_uses_access_entries(stack):
    cluster = only(shipped_run(stack), CLUSTER)["inputs"]
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["vpcConfig"]["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in cluster["vpcConfig"]
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    assert cluster["version"] == "1.35" and cluster["name"] == f"nemotron-deploy-{stack}"
    assert len(cluster["vpcConfig"]["subnetIds"]) == 2  # the nodes' subnet and one in a second zone
    logs = shipped_run(stack).named(f"{stack}-eks-logs")["inputs"]
    assert logs["name"] == f"/aws/eks/nemotron-deploy-{stack}/cluster" and logs["retentionInDays"] == 7


def _attached_arns(run, prefix: str) -> set[str]:
    return {r["inputs"]["policyArn"] for r in run.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if r["name"].startswith(prefix)}


def _attached(run, prefix: str) -> set[str]:
    return {arn.rsplit("/", 1)[-1] for arn in _attached_arns(run, prefix)}


def test_roles_carry_exactly_the_managed_policies_they_need(stack):
    run = shipped_run(stack)
    assert _attached(run, f"{stack}-gpu-") == set(NODE_POLICIES) == {
        "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryPullOnly"}
    assert _attached(run, f"{stack}-eks-system-nodes-") == set(NODE_POLICIES)
    assert _attached(run, f"{stack}-eks-amazoneks") == set(CLUSTER_POLICIES) == {"AmazonEKSClusterPolicy"}
    # The whole ARN, path included: AWS keeps this one under service-role/ (a bare policy/ ARN does not exist).
    assert _attached_arns(run, f"{stack}-eks-ebs-csi") == {
        "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"}
    # Container Insights' agent, through Pod Identity: AWS's agent policy on its own role, nowhere else
    assert _attached_arns(run, f"{stack}-eks-cloudwatch-agent") == {
        "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"}
    assert _attached_arns(run, f"{stack}-gpu-") == {
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy", "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly"}
    trust = {r["name"]: json.loads(r["inputs"]["assumeRolePolicy"])["Statement"][0]["Principal"]["Service"]
             for r in run.of_type("aws:iam/role:Role")}
    assert trust == {f"{stack}-eks-role": "eks.amazonaws.com", f"{stack}-gpu-role": "ec2.amazonaws.com",
                     f"{stack}-eks-system-nodes-role": "ec2.amazonaws.com",
                     f"{stack}-eks-ebs-csi-role": "pods.eks.amazonaws.com",
                     f"{stack}-eks-cloudwatch-agent-role": "pods.eks.amazonaws.com",
                     f"{stack}-metrics-role": "pods.eks.amazonaws.com"} | (
                         {f"{stack}-workload-weights-role": "pods.eks.amazonaws.com"} if stack == "eks-vllm" else {})
    # no inline grants but the metrics agent's (tests/eks/test_metrics_agent.py) and, on vLLM, the model pods' read of
    # the staged weights, and no managed policy on either
    assert sorted(r["name"] for r in run.of_type("aws:iam/rolePolicy:RolePolicy")) == (
        [f"{stack}-metrics-policy"] + ([f"{stack}-workload-weights-read"] if stack == "eks-vllm" else []))
    assert not _attached_arns(run, f"{stack}-metrics") and not _attached_arns(run, f"{stack}-workload")


def test_network_policy_enforcement_and_storage_add_ons(stack):
    run = shipped_run(stack)
    cni = run.named(f"{stack}-eks-vpc-cni")["inputs"]
    assert json.loads(cni["configurationValues"]) == {"enableNetworkPolicy": "true"}
    csi = run.named(f"{stack}-eks-ebs-csi-driver")["inputs"]
    assert csi["podIdentityAssociations"][0]["serviceAccount"] == "ebs-csi-controller-sa"
    system = run.named(f"{stack}-eks-system-nodes")["inputs"]
    insights = run.named(f"{stack}-eks-cloudwatch-observability")
    assert (insights["inputs"]["addonName"], insights["inputs"]["addonVersion"]) == (
        "amazon-cloudwatch-observability", "v4.10.3-eksbuild.1")
    assert insights["inputs"]["podIdentityAssociations"][0]["serviceAccount"] == "cloudwatch-agent"
    # Fluent Bit's container logs on (the GPU-error alarm reads them); every group the add-on writes is declared
    # first, with the cluster's retention and the stack's tags: none is left to be created without an expiry
    assert json.loads(insights["inputs"]["configurationValues"]) == {"containerLogs": {"enabled": True}}
    for kind in ("performance", "application", "dataplane", "host"):
        group = run.named(f"{stack}-eks-container-insights-{kind}-logs")
        assert group["inputs"]["name"] == f"/aws/containerinsights/nemotron-deploy-{stack}/{kind}"
        assert group["inputs"]["retentionInDays"] == 7 and group["inputs"]["tags"] == shipped_plan(stack).tags
    assert "taints" not in system and system["scalingConfig"]["desiredSize"] == 2
    system_template = run.named(f"{stack}-eks-system-template")["inputs"]
    assert system_template["metadataOptions"]["httpTokens"] == "required"
    assert system_template["metadataOptions"]["instanceMetadataTags"] == "disabled"
    assert system_template["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"


def test_kubernetes_provider_is_built_from_the_cluster_outputs_without_credentials(stack):
    run = shipped_run(stack)
    provider = only(run, "pulumi:providers:kubernetes")
    assert provider["name"] == f"{stack}-kubernetes"
    config = json.loads(provider["inputs"]["kubeconfig"])
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://") and cluster["server"].endswith(".eks.amazonaws.com")
    assert cluster["certificate-authority-data"]
    user = config["users"][0]["user"]
    assert list(user) == ["exec"] and user["exec"]["args"][-4:-2] == ["--cluster-name", f"nemotron-deploy-{stack}"]


def test_device_plugins_are_pinned_helm_releases_that_tolerate_the_gpu_taint(stack):
    releases = {r["inputs"]["name"]: r["inputs"] for r in shipped_run(stack).of_type(HELM_RELEASE)}
    assert set(releases) == {"nvidia-device-plugin", "aws-efa-k8s-device-plugin"}
    assert releases["nvidia-device-plugin"]["version"] == NVIDIA_DEVICE_PLUGIN.version
    assert releases["aws-efa-k8s-device-plugin"]["version"] == EFA_DEVICE_PLUGIN.version
    assert releases["nvidia-device-plugin"]["repositoryOpts"] == {"repo": "https://nvidia.github.io/k8s-device-plugin"}
    for release in releases.values():
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
            release["values"]["tolerations"]
    efa = releases["aws-efa-k8s-device-plugin"]["values"]["supportedInstanceLabels"]["values"]
    assert efa == [shipped_plan(stack).instance.name]


def test_every_declared_kubernetes_object_validates_against_the_schemas(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    declared = [r for r in run.resources if r["type"].startswith("kubernetes:") and r["type"] != HELM_RELEASE]
    kinds = sorted(r["type"].rsplit(":", 1)[-1] for r in declared)
    # the model cache on the p5's instance store: no StorageClass or PersistentVolumeClaim (gp3 is the fallback)
    expected = ["Deployment", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Secret",
                "Service", "ConfigMap"] + (["Secret"] if plan.engine == "nim" else [])
    # the metrics agent (tests/eks/test_metrics_agent.py); on vLLM also the model pods' account
    expected += ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy"]
    if plan.engine == "vllm":
        expected += ["ServiceAccount"]
    assert kinds == sorted(expected)
    for resource in declared:
        validate(declared_manifest(resource), kubernetes_version(plan))


def test_gpu_limits_of_the_declared_deployment_equal_the_layout(stack):
    plan = shipped_plan(stack)
    pod = shipped_run(stack).named(f"{stack}-workload-server")["inputs"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["resources"]["limits"] == {"nvidia.com/gpu": str(plan.fit.layout.gpus_per_node)}
    assert server["startupProbe"]["failureThreshold"] * server["startupProbe"]["periodSeconds"] == \
        plan.eks.sizing.probe.allowed_s


def test_secret_values_reach_kubernetes_secrets_only_masked(stack):
    run = shipped_run(stack)
    text = json.dumps(run.resources) + json.dumps(run.outputs)
    for value in (API_KEY, NGC_KEY, HF_TOKEN):
        assert value not in text
    secrets = run.of_type(K8S_SECRET)
    assert secrets and all(s["inputs"]["stringData"] == HIDDEN_VALUE for s in secrets)
    assert run.outputs["api_key"] == HIDDEN_VALUE
    assert not run.of_type("random:index/randomPassword:RandomPassword")  # the configured key is used


def test_no_policy_violation_and_every_taggable_resource_carries_the_plan_tags(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    assert check_resources(run.resources, plan.tags) == []
    tagged = [r for r in run.resources if r["type"].startswith("aws:") and "tags" in r["inputs"]]
    assert {r["type"] for r in tagged} >= {CLUSTER, NODE_GROUP, LAUNCH_TEMPLATE, "aws:eks/addon:Addon",
                                           "aws:cloudwatch/logGroup:LogGroup"}
    assert all(r["inputs"]["tags"] == plan.tags for r in tagged)


def test_gpu_nodes_scale_to_zero_at_the_stacks_expiry(stack):
    run, plan = shipped_run(stack), shipped_plan(stack)
    schedule = run.named(f"{stack}-gpu-expiry")["inputs"]
    assert schedule["startTime"] == plan.tags["nemotron-deploy:expires-at"]
    assert (schedule["minSize"], schedule["desiredCapacity"]) == (0, 0)
    assert schedule["autoscalingGroupName"].startswith(f"eks-{stack}-gpu-nodes-")


def test_exports_say_how_to_reach_the_endpoint(stack):
    outputs = shipped_run(stack).outputs
    assert outputs["service_url"] == f"http://{stack}.nemotron.svc.cluster.local:8000/v1"
    assert outputs["port_forward"] == f"kubectl -n nemotron port-forward svc/{stack} 8000:8000"
    assert outputs["kubeconfig_command"] == \
        f"aws eks update-kubeconfig --region us-east-1 --name nemotron-deploy-{stack}"
    assert outputs["startup_budget_s"] == {"eks-vllm": 2141, "eks-nim": 4977}[stack]  # test_manifests derives them


def test_a_streaming_vllm_stack_reads_exactly_its_staged_copy_through_pod_identity():
    run, plan = shipped_run("eks-vllm"), shipped_plan("eks-vllm")
    assert (plan.eks.weights.bucket, plan.eks.weights.prefix) == (
        "nemotron-model-mirror-us-east-1", "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4")
    policy = json.loads(run.named("eks-vllm-workload-weights-read")["inputs"]["policy"])["Statement"]
    bucket = "arn:aws:s3:::nemotron-model-mirror-us-east-1"
    cache = plan.eks.compile_cache.prefix
    assert cache.startswith("nemotron-deploy/compile-cache/") and plan.eks.compile_cache.bucket == (
        "nemotron-model-mirror-us-east-1")
    assert policy == [
        {"Sid": "WeightsList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
         "Condition": {"StringLike": {"s3:prefix": [plan.eks.weights.prefix, f"{plan.eks.weights.prefix}/*"]}}},
        {"Sid": "WeightsRead", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"{bucket}/{plan.eks.weights.prefix}/*"},
        {"Sid": "CompileCacheList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
         "Condition": {"StringLike": {"s3:prefix": [cache, f"{cache}/*"]}}},
        {"Sid": "CompileCacheReadWrite", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"{bucket}/{cache}/*"}]
    association = run.named("eks-vllm-workload-weights-pod-identity")["inputs"]
    assert (association["namespace"], association["serviceAccount"]) == ("nemotron", "eks-vllm-model")
    pod = run.named("eks-vllm-workload-server")["inputs"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "eks-vllm-model" and pod["automountServiceAccountToken"] is False
    server = pod["containers"][0]
    assert {"name": "AWS_REGION", "value": "us-east-1"} in server["env"]
    launch = server["command"][-1]
    assert "vllm serve s3://nemotron-model-mirror-us-east-1/nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4/ " in launch
    assert "--load-format runai_streamer" in launch
    # vLLM's compile cache: restored before the server starts, saved beside it once healthy, as vLLM's user, both
    # with the model pods' account; vLLM keeps it on the model cache
    assert {"name": "VLLM_CACHE_ROOT", "value": "/models/vllm-cache"} in server["env"]
    (restore,) = pod["initContainers"]
    save = next(c for c in pod["containers"] if c["name"] == "compile-cache-save")
    uri = f"s3://nemotron-model-mirror-us-east-1/{cache}/"
    for container, step in ((restore, f"aws s3 sync --only-show-errors {uri} /models/vllm-cache"),
                            (save, f"aws s3 sync --only-show-errors /models/vllm-cache {uri}")):
        assert container["image"].startswith("public.ecr.aws/aws-cli/aws-cli:")
        assert step in container["command"][-1]
        assert container["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "(( SECONDS > 2141 ))" in save["command"][-1]  # bounded by the startup timeout
    assert "exit 0" in restore["command"][-1]  # a missing cache never fails the pod
    # NIM fetches from NGC: no weights role, no service account of its own
    nim = shipped_run("eks-nim")
    assert not [r for r in nim.resources if "weights" in r["name"]]
