"""checkov's Kubernetes checks over every manifest every EKS variant renders, in one offline run per session: a finding
not accepted in checkov_skips.yaml (one line of reason each) fails, and so does a skip that no longer matches anything.

checkov lives in .venv-checkov/ (requirements-checkov.txt, built by `make test` or `make venv-checkov`): it pins boto3
exactly, to a version requirements.txt's boto3 cannot share a virtualenv with. checkov does not know the
LeaderWorkerSet (a CRD), so each of its pod templates is also written as a Deployment `<set>-<role>`, which gets the
workload checks. A deliberately insecure copy of a workload (the canary) rides in the same run to show that the gate
sees a new finding.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from planner.targets.eks import pod_templates
from tests.eks.cases import manifests_of
from tests.eks.workloads import VARIANTS, plan_of, role_of

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
SKIPS_FILE = Path(__file__).with_name("checkov_skips.yaml")
# Offline: --skip-download and BC_SKIP_MAPPING keep checkov from fetching policy metadata from the Prisma Cloud API,
# CKV_SKIP_PACKAGE_UPDATE_CHECK from asking PyPI for a newer checkov; without an API key nothing is uploaded.
OFFLINE_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
# No --quiet: the passed checks in the report show that every workload was evaluated.
COMMAND = ["--framework", "kubernetes", "-o", "json", "--compact", "--skip-download"]
CANARY = "canary"
WORKLOAD_KINDS = ("Deployment",)


@dataclass(frozen=True)
class Finding:
    check: str
    name: str
    where: str  # <variant>:<checkov resource>, e.g. eks-vllm:Deployment.nemotron.eks-vllm


@dataclass(frozen=True)
class Skip:
    check: str
    why: str
    only: tuple[str, ...]

    def covers(self, finding: Finding) -> bool:
        return finding.check == self.check and any(fnmatch(finding.where, pattern) for pattern in self.only)


@dataclass(frozen=True)
class CheckovRun:
    failed: tuple[Finding, ...]
    evaluated: frozenset[str]  # every <variant>:<resource> with at least one passed or failed check
    seconds: float


def load_skips() -> list[Skip]:
    return [Skip(entry["check"], entry["why"], tuple(entry.get("only", ["*"])))
            for entry in yaml.safe_load(SKIPS_FILE.read_text())]


def checkov_documents(manifests: list[dict]) -> list[dict]:
    """The manifests, plus each LeaderWorkerSet pod template as a Deployment named after the set and the role."""
    documents = []
    for manifest in manifests:
        documents.append(manifest)
        if manifest["kind"] == "LeaderWorkerSet":
            for template in pod_templates(manifest):
                metadata = copy.deepcopy(manifest["metadata"])
                metadata["name"] = f"{metadata['name']}-{role_of(template)}"
                documents.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                                  "spec": {"replicas": 1, "template": template,
                                           "selector": {"matchLabels": template["metadata"]["labels"]}}})
    return documents


def canary(workload: dict) -> dict:
    """A copy of a one-node Deployment with what no skip may cover: a privileged container on the host's network."""
    insecure = copy.deepcopy(workload)
    insecure["metadata"]["name"] = CANARY
    spec = insecure["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    spec["containers"][0]["securityContext"] = {"privileged": True}
    return insecure


def workload_resources(variant: str) -> set[str]:
    """The workloads of a variant as checkov names them (kind.namespace.name)."""
    documents = checkov_documents(manifests_of(plan_of(variant), hf_token=True).all())
    return {f"{variant}:{d['kind']}.{d['metadata']['namespace']}.{d['metadata']['name']}"
            for d in documents if d["kind"] in WORKLOAD_KINDS}


@pytest.fixture(scope="session")
def checkov_run(tmp_path_factory) -> CheckovRun:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(REPO)} is missing: run `make venv-checkov` (`make test` builds it)")
    directory = tmp_path_factory.mktemp("checkov")
    for variant in VARIANTS:
        manifests = manifests_of(plan_of(variant), hf_token=True).all()
        (directory / f"{variant}.yaml").write_text(yaml.safe_dump_all(checkov_documents(manifests), sort_keys=False))
    one_node = manifests_of(plan_of("eks-vllm")).workload
    (directory / f"{CANARY}.yaml").write_text(yaml.safe_dump(canary(one_node), sort_keys=False))
    started = time.monotonic()
    result = subprocess.run([str(CHECKOV), "-d", str(directory), *COMMAND], capture_output=True, text=True,
                            cwd=directory, env=os.environ | OFFLINE_ENV, timeout=300, check=False)
    seconds = time.monotonic() - started
    assert result.returncode in (0, 1), f"checkov exited {result.returncode}: {result.stderr[-2000:]}"
    reports = json.loads(result.stdout)
    (report,) = reports if isinstance(reports, list) else [reports]
    assert report["check_type"] == "kubernetes" and report["summary"]["parsing_errors"] == 0, report["summary"]

    def where(entry: dict) -> str:
        return f"{Path(entry['file_path']).stem}:{entry['resource']}"

    results = report["results"]
    failed = tuple(Finding(e["check_id"], e["check_name"], where(e)) for e in results["failed_checks"])
    evaluated = frozenset(where(e) for e in results["failed_checks"] + results["passed_checks"])
    return CheckovRun(failed, evaluated, seconds)


def test_checkov_evaluated_every_workload_of_every_variant(checkov_run):
    wanted = set().union(*(workload_resources(variant) for variant in VARIANTS))
    assert {"two-node-vllm:Deployment.nemotron.eks-vllm-group-leader",
            "two-node-vllm:Deployment.nemotron.eks-vllm-group-worker"} <= wanted
    assert wanted <= checkov_run.evaluated
    assert checkov_run.seconds < 120  # one run for every manifest (about 3 s)


def test_no_finding_without_a_skip(checkov_run):
    skips = load_skips()
    unskipped = sorted({f"{f.check} {f.name}: {f.where}" for f in checkov_run.failed
                        if not f.where.startswith(f"{CANARY}:") and not any(s.covers(f) for s in skips)})
    assert unskipped == [], "fix these in planner/targets/eks.py, or skip them with a reason in checkov_skips.yaml"


def test_every_skip_has_a_one_line_reason_and_still_matches_a_finding(checkov_run):
    findings = [f for f in checkov_run.failed if not f.where.startswith(f"{CANARY}:")]
    for skip in load_skips():
        assert skip.check.startswith("CKV_K8S_") and skip.why.strip() and "\n" not in skip.why.strip(), skip
        assert any(skip.covers(f) for f in findings), f"{skip} matches no finding any more: remove it"


def test_the_gate_sees_a_new_finding(checkov_run):
    skips = load_skips()
    new = {f.check for f in checkov_run.failed if f.where == f"{CANARY}:Deployment.nemotron.{CANARY}"
           and not any(s.covers(f) for s in skips)}
    assert {"CKV_K8S_16", "CKV_K8S_19"} <= new  # privileged container, host network
