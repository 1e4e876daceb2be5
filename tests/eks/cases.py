"""Shared plans, engine runs and schema checks for the EKS tests (the shipped stacks and a two-node variant)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import kubernetes_validate
import yaml

from components.offline import HIDDEN_VALUE, OfflineRun, run_program
from planner.plan import StackPlan, plan_stack
from planner.stack_config import load_stack
from planner.targets.eks import Manifests, pod_templates, render_manifests
from tests.components.runs import NOW, STACKS_DIR

EKS_STACKS = ("eks-nim", "eks-vllm")
# Shaped like real keys, so a leak would also trip the policy rules' token shapes.
API_KEY = "sk-test-" + "k3y" * 12
NGC_KEY = "nvapi-" + "Ng0C" * 12
HF_TOKEN = "hf_" + "T0ken" * 8
SECRETS = {"apiKey": API_KEY, "ngcApiKey": NGC_KEY, "hfToken": HF_TOKEN}

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
CLUSTER = "aws:eks/cluster:Cluster"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
K8S_SECRET = "kubernetes:core/v1:Secret"


@cache
def shipped_plan(stack: str) -> StackPlan:
    return plan_stack(load_stack(STACKS_DIR, stack), NOW)


def manifests_of(plan: StackPlan, hf_token: bool = False) -> Manifests:
    """The manifests of a fitted EKS plan, rendered from its EksPlan."""
    return render_manifests(plan, plan.eks, hf_token=hf_token)


@cache
def shipped_run(stack: str) -> OfflineRun:
    """One engine run per shipped stack with every secret configured (cached: runs are deterministic)."""
    return run_program(stack, now=NOW, secrets=SECRETS)


def write_variant(stacks_dir: Path, base: str, eks: dict | None = None, **changes) -> str:
    """A copy of a shipped EKS stack with top-level keys changed and its eks section merged with `eks`."""
    document = yaml.safe_load((STACKS_DIR / f"Pulumi.{base}.yaml").read_text())
    config = document["config"]
    for key, value in changes.items():
        config[f"nemotron-deploy:{key}"] = value
    if eks is not None:
        config["nemotron-deploy:eks"] = dict(config.get("nemotron-deploy:eks") or {}) | eks
    (stacks_dir / f"Pulumi.{base}.yaml").write_text(yaml.safe_dump(document))
    return base


def variant_plan(stacks_dir: Path, name: str) -> StackPlan:
    return plan_stack(load_stack(stacks_dir, name), NOW)


def only(run: OfflineRun, type_token: str) -> dict:
    found = run.of_type(type_token)
    assert len(found) == 1, f"{len(found)} resources of type {type_token}"
    return found[0]


def validate(manifest: dict, kubernetes_version: str) -> list[str]:
    """Validate one manifest strictly against the Kubernetes schemas of the cluster's version; returns what was
    validated. A LeaderWorkerSet (a CRD the schemas do not carry) is validated through what it embeds: its pod
    templates as PodTemplates and its volume claim templates as PersistentVolumeClaims."""
    if manifest["kind"] != "LeaderWorkerSet":
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
        return [manifest["kind"]]
    checked = []
    for template in pod_templates(manifest):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                      "metadata": {"name": manifest["metadata"]["name"]}, "template": template},
                                     kubernetes_version, strict=True)
        checked.append("PodTemplate")
    for claim in manifest["spec"]["leaderWorkerTemplate"].get("volumeClaimTemplates", []):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PersistentVolumeClaim"} | claim,
                                     kubernetes_version, strict=True)
        checked.append("PersistentVolumeClaim")
    return checked


def declared_manifest(resource: dict) -> dict:
    """A Kubernetes resource as the engine saw it declared, with masked secret fields given placeholder values."""
    inputs = dict(resource["inputs"])
    for key in ("stringData", "data"):
        if inputs.get(key) == HIDDEN_VALUE:
            inputs[key] = {"masked": "value"}
    return inputs


def kubernetes_version(plan: StackPlan) -> str:
    return plan.eks.settings.kubernetes_version
