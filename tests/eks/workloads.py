"""Every EKS variant whose Kubernetes manifests differ, as fitted plans: NIM on one node, vLLM on one node, and vLLM on
two nodes (a LeaderWorkerSet with EFA), for the pod-security and checkov tests."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from planner.plan import StackPlan
from planner.targets.eks import pod_templates
from tests.eks.cases import EKS_STACKS, shipped_plan, variant_plan, write_variant

# Variants beyond the shipped stacks: a copy of a shipped stack with top-level keys changed (cases.write_variant).
# two-node-vllm also takes the gp3 model cache, so the fallback's StorageClass and claim templates stay covered.
DERIVED = {"two-node-vllm": ("eks-vllm", {"nodes": 2, "precision": "bf16", "concurrency": 8,
                                          "eks": {"modelCache": "gp3"}})}
VARIANTS = (*EKS_STACKS, *DERIVED)


@cache
def plan_of(variant: str) -> StackPlan:
    """The fitted plan of a variant (the stack file is read once and planned; the copy is not kept)."""
    if variant in EKS_STACKS:
        return shipped_plan(variant)
    base, changes = DERIVED[variant]
    with tempfile.TemporaryDirectory() as stacks_dir:
        return variant_plan(Path(stacks_dir), write_variant(Path(stacks_dir), base, **changes))


def role_of(template: dict) -> str:
    """The pod's role label: server (one node), leader or worker (LeaderWorkerSet)."""
    return template["metadata"]["labels"]["nemotron-deploy/role"]


def templates_by_role(workload: dict) -> dict[str, dict]:
    return {role_of(template): template for template in pod_templates(workload)}
