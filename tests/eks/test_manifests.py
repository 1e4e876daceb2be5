"""The Kubernetes manifests the planner renders for EKS stacks: schema-valid, sized from the plan, secrets only by
reference, probes from the startup budget, NIM behind an API-key proxy, a LeaderWorkerSet when the layout spans nodes,
and golden snapshots of all of it (NEMOTRON_UPDATE_SNAPSHOTS=1 rewrites them)."""

from __future__ import annotations

import copy
import os
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from planner.policy import check_resources, plaintext_secrets, privileged_pods
from planner.serving import API_KEY_GUARD
from planner.targets.eks import (
    AUTH_PROXY_PORT,
    CLIENT_LABEL,
    EFA_RESOURCE,
    GPU_RESOURCE,
    Manifests,
    kubeconfig,
    pod_templates,
    selector_labels,
)
from tests.eks.cases import (
    EKS_STACKS,
    kubernetes_version,
    manifests_of,
    shipped_plan,
    validate,
    variant_plan,
    write_variant,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"
PLANS = [*EKS_STACKS, "two-node-vllm"]


@pytest.fixture(scope="module")
def two_node_plan(tmp_path_factory):
    stacks_dir = tmp_path_factory.mktemp("stacks")
    # BF16 over TP 8 x PP 2 leaves 71.64 - 4 GiB reserve - 65.27 GiB weights = 2.37 GiB per GPU: 8 sequences of
    # 131,072 tokens (216.3 MiB each = 1.69 GiB) fit, 16 (3.38 GiB) do not
    # ... and the gp3 model cache (eks.modelCache), so the fallback's StorageClass and claim templates are covered
    return variant_plan(stacks_dir, write_variant(stacks_dir, "eks-vllm", eks={"modelCache": "gp3"}, nodes=2,
                                                  precision="bf16", concurrency=8))


@pytest.fixture(params=PLANS)
def plan(request, two_node_plan):
    return two_node_plan if request.param == "two-node-vllm" else shipped_plan(request.param)


def type_token(manifest: dict) -> str:
    """The Pulumi type of a manifest, as pulumi_kubernetes declares it (core group as core/v1)."""
    api_version = manifest["apiVersion"] if "/" in manifest["apiVersion"] else f"core/{manifest['apiVersion']}"
    return f"kubernetes:{api_version}:{manifest['kind']}"


def containers(manifest: dict) -> list[dict]:
    return [c for template in pod_templates(manifest) for c in template["spec"]["containers"]]


def test_every_manifest_validates_against_the_kubernetes_schemas(plan):
    manifests = manifests_of(plan, hf_token=True)
    version = kubernetes_version(plan)
    checked = [kind for manifest in manifests.all() for kind in validate(manifest, version)]
    expected = {"Namespace", "Secret", "ConfigMap", "Service", "NetworkPolicy", "PodDisruptionBudget"} | (
        set() if plan.eks.sizing.cache_on_nvme else {"StorageClass"})
    assert expected <= set(checked)
    if plan.fit.layout.nodes > 1:
        assert checked.count("PodTemplate") == 2  # the LWS's contents
        assert ("PersistentVolumeClaim" in checked) == (not plan.eks.sizing.cache_on_nvme)
    else:
        assert "Deployment" in checked
        assert ("PersistentVolumeClaim" in checked) == (not plan.eks.sizing.cache_on_nvme)


def test_the_schema_check_can_fail_and_knows_no_leaderworkerset():
    manifests = manifests_of(shipped_plan("eks-vllm"))
    broken = copy.deepcopy(manifests.workload)
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = 8
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, "1.35")
    lws = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "x"}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(lws, "1.35", strict=True)


def test_gpu_limits_and_pod_count_equal_the_layout(plan):
    layout, workload = plan.fit.layout, manifests_of(plan).workload
    servers = [c for c in containers(workload) if c["name"] in ("vllm", "nim")]
    assert servers and all(c["resources"]["limits"][GPU_RESOURCE] == str(layout.gpus_per_node) for c in servers)
    assert all(c["resources"]["requests"][GPU_RESOURCE] == str(layout.gpus_per_node) for c in servers)
    if workload["kind"] == "Deployment":
        assert layout.nodes == 1 and workload["spec"]["replicas"] == 1
        assert all(EFA_RESOURCE not in c["resources"]["limits"] for c in servers)  # one node: no EFA traffic
    else:
        assert workload["spec"]["leaderWorkerTemplate"]["size"] == layout.nodes == 2
        assert all(c["resources"]["limits"][EFA_RESOURCE] == str(plan.instance.efa_cards) for c in servers)


def test_pods_land_on_the_gpu_pool_of_the_plans_instance_type(plan):
    for template in pod_templates(manifests_of(plan).workload):
        spec = template["spec"]
        assert spec["nodeSelector"] == {"nemotron-deploy/pool": "gpu",
                                        "node.kubernetes.io/instance-type": plan.instance.name}
        assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_startup_probe_allows_the_derived_budget_and_at_most_one_period_more(plan):
    budget = plan.eks.startup  # the plan's startup budget, reused, not re-derived
    workload = manifests_of(plan).workload
    probes = [c["startupProbe"] for c in containers(workload) if "startupProbe" in c]
    assert len(probes) == 1  # the serving container (the LWS leader); workers serve nothing
    allowed = probes[0]["periodSeconds"] * probes[0]["failureThreshold"]
    assert budget.timeout_s <= allowed < budget.timeout_s + probes[0]["periodSeconds"]
    server = next(c for c in containers(workload) if "startupProbe" in c)
    assert {"readinessProbe", "livenessProbe"} <= set(server)


@pytest.mark.parametrize(("stack", "cold_s", "budget_s", "threshold"), [
    # NVFP4, 352.3 GB streamed from the staged copy at 7.5 GB/s (47 s) + boot 180 s + warm-up 1,200 s; x 1.5
    ("eks-vllm", 180 + 47 + 1200, 2141, 72),
    # NIM fetches its profile from NGC, modelled as the hub: 1,762 s at 0.2 GB/s + 176 s load; x 1.5
    ("eks-nim", 180 + 1762 + 176 + 1200, 4977, 166),
])
def test_probe_budget_figures(stack, cold_s, budget_s, threshold):
    probe = shipped_plan(stack).eks.sizing.probe
    assert (probe.budget.total_s, probe.budget.timeout_s, probe.failure_threshold, probe.period_s) == (
        cold_s, budget_s, threshold, 30)


def test_probes_hit_each_engines_health_endpoints():
    nim = next(c for c in containers(manifests_of(shipped_plan("eks-nim")).workload) if c["name"] == "nim")
    assert nim["startupProbe"]["httpGet"]["path"] == nim["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"
    assert nim["livenessProbe"]["httpGet"]["path"] == "/v1/health/live"
    vllm = containers(manifests_of(shipped_plan("eks-vllm")).workload)[0]
    assert {vllm[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {"/health"}


def test_secrets_are_referenced_never_inlined(plan):
    manifests = manifests_of(plan, hf_token=True)
    secret_name = manifests.serving_secret["metadata"]["name"]
    refs = {}
    for container in containers(manifests.workload):
        for env in container["env"]:
            if "valueFrom" in env and "secretKeyRef" in env["valueFrom"]:
                assert "value" not in env
                assert env["valueFrom"]["secretKeyRef"]["name"] == secret_name
                refs[env["name"]] = env["valueFrom"]["secretKeyRef"]["key"]
    wanted = {"nim": {"NGC_API_KEY": "NGC_API_KEY", "NEMOTRON_API_KEY": "API_KEY"},
              "vllm": {"VLLM_API_KEY": "API_KEY", "HF_TOKEN": "HF_TOKEN"}}[plan.engine]
    assert refs == wanted
    assert set(manifests.serving_secret["stringData"]) == set(wanted.values())
    resources = [{"type": type_token(m), "name": m["metadata"]["name"], "inputs": m} for m in manifests.all()]
    assert [v for v in check_resources(resources, ()) if v.rule in ("plaintext-secret", "privileged-pod")] == []


def test_the_secret_check_catches_an_inlined_key():
    workload = copy.deepcopy(manifests_of(shipped_plan("eks-vllm")).workload)
    env = workload["spec"]["template"]["spec"]["containers"][0]["env"]
    key_env = next(e for e in env if e["name"] == "VLLM_API_KEY")
    key_env.pop("valueFrom")
    key_env["value"] = "sk-live-0123456789abcdefghijkl"
    assert plaintext_secrets("kubernetes:apps/v1:Deployment", workload)
    workload["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    assert privileged_pods("kubernetes:apps/v1:Deployment", workload)


def test_shared_memory_and_model_cache_are_sized_from_node_and_weights(plan):
    manifests, size = manifests_of(plan), plan.eks.sizing
    for template in pod_templates(manifests.workload):
        shm = next(v for v in template["spec"]["volumes"] if v["name"] == "dshm")
        assert shm == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}}  # 2,048 GiB / 32
        for container in template["spec"]["containers"]:
            if container["name"] in ("vllm", "nim"):
                assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    # weights x 1.25 rounded up to 64 GiB: NVFP4 328.1 GiB -> 448 GiB; BF16 1,044.0 GiB -> 1,344 GiB
    assert size.cache_gib == {328: 448, 1044: 1344}[round(plan.fit.weights_gib)]
    if size.cache_on_nvme:  # p5/p5en: 8 x 3.8 TB of instance store, one RAID0 under the kubelet (node_user_data)
        assert manifests.storage_class is None and manifests.model_cache is None
        for template in pod_templates(manifests.workload):
            cache = next(v for v in template["spec"]["volumes"] if v["name"] == "model-cache")
            assert cache == {"name": "model-cache", "emptyDir": {"sizeLimit": f"{size.cache_gib}Gi"}}
        assert plan.eks.gpu_pool.local_storage == "RAID0"
        return
    assert plan.eks.gpu_pool.local_storage is None
    if manifests.model_cache is not None:
        claim = manifests.model_cache["spec"]
    else:
        claim = manifests.workload["spec"]["leaderWorkerTemplate"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == f"{size.cache_gib}Gi"
    assert claim["storageClassName"] == manifests.storage_class["metadata"]["name"]
    parameters = manifests.storage_class["parameters"]
    assert parameters["type"] == "gp3" and parameters["encrypted"] == "true"
    assert sorted(v for k, v in parameters.items() if k.startswith("tagSpecification_")) == sorted(
        f"{k}={v}" for k, v in plan.tags.items())


def test_the_gpu_nodes_bootstrap_joins_their_instance_store_into_one_raid0():
    from email import message_from_string

    import yaml

    from planner.targets.eks import node_user_data

    pool = shipped_plan("eks-vllm").eks.gpu_pool
    message = message_from_string(node_user_data(pool))
    assert message.is_multipart() and message.get_content_type() == "multipart/mixed"  # what EKS merges
    (part,) = message.get_payload()
    assert part.get_content_type() == "application/node.eks.aws"
    config = yaml.safe_load(part.get_payload())
    assert config == {"apiVersion": "node.eks.aws/v1alpha1", "kind": "NodeConfig",
                      "spec": {"instance": {"localStorage": {"strategy": "RAID0"}}}}


def test_network_policy_admits_labelled_clients_on_the_api_port_only(plan):
    manifests = manifests_of(plan)
    spec = manifests.network_policy["spec"]
    port = AUTH_PROXY_PORT if plan.engine == "nim" else 8000
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["podSelector"]["matchLabels"] == selector_labels(plan, plan.eks)
    clients = spec["ingress"][0]
    assert clients == {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}}],
                       "ports": [{"protocol": "TCP", "port": port}]}
    rules = spec["ingress"][1:]
    # the stack's metrics agent, on the model's own port only: vLLM's api port, NIM's (not the auth proxy's)
    # (tests/eks/test_metrics_agent.py)
    agent = rules.pop()
    assert agent["ports"] == [{"protocol": "TCP", "port": plan.serving.port}]
    assert "namespaceSelector" not in agent["from"][0]
    if plan.fit.layout.nodes > 1:  # the group's own pods reach each other on every port (Ray, NCCL)
        assert rules == [{"from": [{"podSelector": {"matchLabels": spec["podSelector"]["matchLabels"]}}]}]
    else:
        assert rules == []


def test_service_and_disruption_budget(plan):
    manifests = manifests_of(plan)
    service = manifests.service["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [{"name": "http", "port": 8000, "targetPort": "api", "protocol": "TCP"}]
    api_ports = [p for c in containers(manifests.workload) for p in c.get("ports", []) if p["name"] == "api"]
    assert [p["containerPort"] for p in api_ports] == [AUTH_PROXY_PORT if plan.engine == "nim" else 8000]
    if plan.fit.layout.nodes > 1:
        assert service["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"  # the leader serves
    budget = manifests.disruption_budget["spec"]
    assert budget["maxUnavailable"] == 0 and budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_nim_sits_behind_an_api_key_proxy_and_pulls_with_the_ngc_key():
    manifests = manifests_of(shipped_plan("eks-nim"))
    pod = manifests.workload["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["nim", "auth-proxy"]
    nim, proxy = pod["containers"]
    assert [p["name"] for p in nim["ports"]] == ["nim"]  # not what the Service targets
    assert pod["imagePullSecrets"] == [{"name": manifests.pull_secret["metadata"]["name"]}]
    assert manifests.pull_secret["type"] == "kubernetes.io/dockerconfigjson"
    template = manifests.auth_proxy_config["data"]["default.conf.template"]
    assert '"Bearer ${NEMOTRON_API_KEY}" 1;' in template and "return 401;" in template
    assert "proxy_pass http://127.0.0.1:8000;" in template
    assert {"name": "model-cache", "mountPath": "/opt/nim/.cache"} in nim["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 1000


def test_vllm_loads_the_api_key_middleware_from_a_read_only_config_map(plan):
    # vLLM checks VLLM_API_KEY only under /v1 (vllm#58144); the planner's argv ends with --middleware, whose module
    # the serving pod (the LWS leader: workers only run Ray) mounts from a ConfigMap and finds on PYTHONPATH.
    manifests = manifests_of(plan)
    if plan.engine == "nim":
        assert manifests.serving_modules is None and manifests.auth_proxy_config is not None
        return
    config_map = manifests.serving_modules
    assert config_map["data"] == plan.serving.modules and set(config_map["data"]) == {"nemotron_auth.py"}
    serving, *workers = pod_templates(manifests.workload)
    spec = serving["spec"]
    server = spec["containers"][0]
    assert server["command"][:2] == ["bash", "-c"]
    script = server["command"][2]
    assert script.endswith(f"exec {shlex.join(plan.serving.argv)}")
    # the API-key guard runs first: a missing key stops the pod before the download, Ray and the model load
    assert API_KEY_GUARD in script.splitlines()[:2]
    assert script.index(API_KEY_GUARD) < script.index("exec ")
    assert plan.serving.argv[-2:] == ("--middleware", "nemotron_auth.require_api_key")
    volume = next(v for v in spec["volumes"] if v["name"] == "serving-modules")
    assert volume["configMap"] == {"name": config_map["metadata"]["name"], "defaultMode": 0o444}
    mount = next(m for m in server["volumeMounts"] if m["name"] == "serving-modules")
    assert mount == {"name": "serving-modules", "mountPath": "/opt/nemotron-deploy/auth", "readOnly": True}
    env = {e["name"]: e for e in server["env"]}
    assert env["PYTHONPATH"] == {"name": "PYTHONPATH", "value": mount["mountPath"]}
    assert "secretKeyRef" in env["VLLM_API_KEY"]["valueFrom"]
    for worker in workers:
        assert all(v["name"] != "serving-modules" for v in worker["spec"]["volumes"])
        assert all(e["name"] != "PYTHONPATH" for e in worker["spec"]["containers"][0]["env"])


def test_two_nodes_make_a_leader_worker_set_with_ray(two_node_plan):
    plan, workload = two_node_plan, manifests_of(two_node_plan).workload
    assert workload["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and workload["kind"] == "LeaderWorkerSet"
    # The LWS controller creates a headless Service named after the set (the pods' subdomain, through which
    # LWS_LEADER_ADDRESS resolves) and silently reuses an existing Service of that name: a ClusterIP one would leave
    # the leader's address unresolvable and the workers outside the Ray cluster.
    assert workload["metadata"]["name"] != manifests_of(two_node_plan).service["metadata"]["name"]
    template = workload["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2 and template["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    worker = template["workerTemplate"]["spec"]["containers"][0]
    leader_script, worker_script = leader["command"][2], worker["command"][2]
    assert leader["command"][:2] == worker["command"][:2] == ["bash", "-c"]
    head = leader_script.index("ray start --head")
    wait = leader_script.index('sys.exit(sum(n["Alive"] for n in ray.nodes()) < 2)')
    serve = leader_script.index(f"exec {shlex.join(plan.serving.argv)}")
    assert head < wait < serve
    assert "--pipeline-parallel-size 2" in leader_script and "--distributed-executor-backend ray" in leader_script
    assert "ray start --address=$(LWS_LEADER_ADDRESS):6379 --block" in worker_script
    assert "vllm serve" not in worker_script and "--head" not in worker_script
    assert all(c["resources"]["limits"][GPU_RESOURCE] == "8" for c in (leader, worker))
    assert "startupProbe" in leader and "startupProbe" not in worker and "ports" not in worker
    assert [c["metadata"]["name"] for c in template["volumeClaimTemplates"]] == ["model-cache"]
    env = {e["name"]: e for e in worker["env"]}
    assert env["VLLM_HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["NCCL_SOCKET_IFNAME"]["value"] == "eth0" and "VLLM_API_KEY" not in env
    assert [r.name for r in plan.eks.addons] == ["nvidia-device-plugin", "aws-efa-k8s-device-plugin", "lws"]


def test_single_node_stacks_install_no_leader_worker_set_controller():
    for stack in EKS_STACKS:
        assert [r.name for r in shipped_plan(stack).eks.addons] == ["nvidia-device-plugin",
                                                                          "aws-efa-k8s-device-plugin"]


def test_a_renewed_expiry_changes_no_pod_template():
    from dataclasses import replace

    plan = shipped_plan("eks-vllm")
    renewed = replace(plan, tags=plan.tags | {"nemotron-deploy:expires-at": "2026-12-02T09:30:00Z"})
    assert pod_templates(manifests_of(plan).workload) == pod_templates(manifests_of(renewed).workload)
    assert manifests_of(plan).workload["metadata"] != manifests_of(renewed).workload["metadata"]


def test_kubeconfig_authenticates_with_aws_eks_get_token():
    text = kubeconfig("c1", "https://x.eks.amazonaws.com", "Q0E=", "us-east-1", profile="dev")
    user = yaml.safe_load(text)["users"][0]["user"]
    assert set(user) == {"exec"}
    assert user["exec"]["command"] == "aws" and user["exec"]["args"][2:5] == ["eks", "get-token", "--cluster-name"]
    assert user["exec"]["env"] == [{"name": "AWS_PROFILE", "value": "dev"}]
    assert "token" not in text.replace("get-token", "") and "password" not in text


def _snapshot_text(manifests: Manifests) -> str:
    return yaml.safe_dump_all(manifests.all(), sort_keys=False, width=120)


def test_manifests_match_their_snapshots(plan, request):
    name = request.node.callspec.params["plan"]
    path = SNAPSHOTS / f"{name}.yaml"
    text = _snapshot_text(manifests_of(plan))
    if os.environ.get("NEMOTRON_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.is_file(), f"no snapshot {path}; run with NEMOTRON_UPDATE_SNAPSHOTS=1 and review the file"
    assert text == path.read_text(), f"{name}: manifests changed; review, then NEMOTRON_UPDATE_SNAPSHOTS=1"
