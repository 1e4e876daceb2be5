"""Pod security of the model pods on EKS, for every container of every variant: no privilege escalation, every
capability dropped (EFA pods get IPC_LOCK back, nothing else, no other pod gets any), the runtime's seccomp profile;
vLLM on one node runs as a non-root user with a writable home and a model cache it can write (fsGroup); the
LeaderWorkerSet's EFA pods stay root because a non-root process cannot use an added capability (docs/eks.md)."""

from __future__ import annotations

import pytest

from planner.targets.eks import EFA_RESOURCE
from tests.eks.cases import manifests_of, shipped_run
from tests.eks.workloads import VARIANTS, plan_of, role_of, templates_by_role

# variant, pod role, container: the user it runs as (0: root), the capabilities it adds back
CONTAINERS = [
    ("eks-vllm", "server", "vllm", 10001, []),
    ("eks-vllm", "server", "compile-cache-save", 10001, []),  # the AWS CLI beside vLLM, as vLLM's user
    ("two-node-vllm", "leader", "vllm", 0, ["IPC_LOCK"]),  # EFA: memory registration beyond RLIMIT_MEMLOCK
    ("two-node-vllm", "worker", "vllm", 0, ["IPC_LOCK"]),
    ("eks-nim", "server", "nim", 1000, []),  # the NIM image's own user
    ("eks-nim", "server", "auth-proxy", 101, []),  # nginx-unprivileged's user
]
VLLM_HOME = "/home/vllm"


def pods(variant: str) -> list[tuple[str, dict]]:
    workload = manifests_of(plan_of(variant), hf_token=True).workload
    return list(templates_by_role(workload).items())


def every_container() -> list[tuple[str, str, str]]:
    return [(variant, role, container["name"]) for variant in VARIANTS for role, template in pods(variant)
            for container in template["spec"]["containers"]]


def find(variant: str, role: str, name: str) -> tuple[dict, dict]:
    """The pod spec and the container."""
    spec = dict(pods(variant))[role]["spec"]
    return spec, next(c for c in spec["containers"] if c["name"] == name)


def effective(spec: dict, container: dict, key: str):
    """A securityContext field as the kubelet applies it: the container's, else the pod's."""
    return container.get("securityContext", {}).get(key, spec.get("securityContext", {}).get(key))


def test_the_table_covers_every_container_of_every_variant():
    assert sorted(row[:3] for row in CONTAINERS) == sorted(every_container())


@pytest.mark.parametrize(("variant", "role", "name", "user", "added"), CONTAINERS)
def test_no_escalation_all_capabilities_dropped_runtime_seccomp(variant, role, name, user, added):
    spec, container = find(variant, role, name)
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert not context.get("privileged")
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["capabilities"].get("add", []) == added
    assert effective(spec, container, "seccompProfile") == {"type": "RuntimeDefault"}
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")


@pytest.mark.parametrize(("variant", "role", "name", "user", "added"), CONTAINERS)
def test_user_and_root(variant, role, name, user, added):
    spec, container = find(variant, role, name)
    assert effective(spec, container, "runAsUser") == user
    # Non-root users are also asserted to the kubelet, which refuses to start a pod that would run as root.
    assert effective(spec, container, "runAsNonRoot") is (True if user else None)


@pytest.mark.parametrize(("variant", "role", "name", "user", "added"), CONTAINERS)
def test_ipc_lock_only_where_the_pod_takes_efa_devices(variant, role, name, user, added):
    _, container = find(variant, role, name)
    efa = EFA_RESOURCE in container["resources"]["limits"]
    assert efa == (plan_of(variant).fit.layout.nodes > 1)
    assert ("IPC_LOCK" in added) == efa


@pytest.mark.parametrize("variant", [v for v in VARIANTS if plan_of(v).engine == "vllm"])
def test_every_vllm_pod_has_a_writable_home_and_can_write_its_model_cache(variant):
    for role, template in pods(variant):
        spec = template["spec"]
        container = next(c for c in spec["containers"] if c["name"] == "vllm")
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        # vLLM, torch.compile, Triton, FlashInfer and Ray write under $HOME; the image's home is /root
        assert env["HOME"] == VLLM_HOME and env["USER"]
        home = mounts[VLLM_HOME]
        assert not home.get("readOnly")
        assert volumes[home["name"]]["emptyDir"]["sizeLimit"].endswith("Gi")
        assert env["HF_HOME"].startswith(next(p for p, m in mounts.items() if m["name"] == "model-cache"))
        context = spec["securityContext"]
        if effective(spec, container, "runAsUser"):  # non-root: the volume's group is the user's
            assert context["fsGroup"] == context["runAsGroup"] == context["runAsUser"]
            assert context["fsGroupChangePolicy"] == "OnRootMismatch", role  # no chown of the cache on restart
        # Not read-only: /tmp (Ray's session, torch's inductor cache) and library paths are written (docs/eks.md).
        assert container["securityContext"].get("readOnlyRootFilesystem") is not True


def test_what_pulumi_declares_carries_the_same_security_contexts():
    declared = shipped_run("eks-vllm").named("eks-vllm-workload-server")["inputs"]["spec"]["template"]["spec"]
    rendered = manifests_of(plan_of("eks-vllm")).workload["spec"]["template"]["spec"]
    assert declared["securityContext"] == rendered["securityContext"]
    assert [c["securityContext"] for c in declared["containers"]] == [
        c["securityContext"] for c in rendered["containers"]]


def test_roles_are_labelled():
    assert {variant: sorted(role_of(t) for _, t in pods(variant)) for variant in VARIANTS} == {
        "eks-nim": ["server"], "eks-vllm": ["server"], "two-node-vllm": ["leader", "worker"]}
