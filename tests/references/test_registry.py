"""Every external name a rendered artifact carries is in the registry (planner/references.py), with a source.

The artifacts are what `make plan` renders for every shipped stack (resources with their inputs: user data,
Kubernetes manifests, Helm releases, IAM attachments), the AMI parameters the EC2 stacks read, and the two-node
EKS variant's add-ons. A name found there and missing from the registry fails here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from planner import references
from planner.plan import plan_stack
from planner.stack_config import load_stack
from scripts.plan import main as plan_main

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
POLICY_ARN = re.compile(r"arn:aws[\w-]*:iam::aws:policy/[\w/+=,.@-]+")
IMAGE = re.compile(r'"image": "([^"]+)"|IMAGE=([^\s\\"]+)')
CHECKPOINT = re.compile(r"\b[\w-]+/NVIDIA-Nemotron-[\w.-]+")
SOURCES = (REPO / "docs" / "sources.md").read_text()


@pytest.fixture(scope="module")
def rendered() -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert plan_main(["--json", "--now", NOW.isoformat()]) == 0
    return json.loads(out.getvalue())


def test_every_image_rendered_is_registered(rendered):
    text = json.dumps(rendered)
    found = {a or b for a, b in IMAGE.findall(text)}
    assert found, "no image found: the extraction is broken"
    assert found <= references.registered("image"), found - references.registered("image")


def test_every_checkpoint_rendered_is_registered(rendered):
    served_names = {e["serving"].get("argv", [None] * 5)[4] for e in rendered["stacks"] if "argv" in e["serving"]}
    found = set(CHECKPOINT.findall(json.dumps(rendered))) - served_names
    assert "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4" in found
    assert found <= references.registered("checkpoint"), found - references.registered("checkpoint")
    assert not any(name.endswith("-FP8") and name.startswith("nvidia/") for name in found)  # no such checkpoint


def test_every_managed_policy_arn_is_registered_with_its_path(rendered):
    found = set(POLICY_ARN.findall(json.dumps(rendered)))
    assert "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy" in found
    assert found <= references.registered("managed-policy"), found - references.registered("managed-policy")


def test_helm_charts_and_the_kubernetes_version_are_registered(rendered, tmp_path):
    releases = [r["inputs"] for e in rendered["stacks"] for r in e["resources"]
                if r["type"] == "kubernetes:helm.sh/v3:Release"]
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.eks-vllm.yaml").read_text())
    document["config"]["nemotron-deploy:nodes"] = 2
    (tmp_path / "Pulumi.two.yaml").write_text(yaml.safe_dump(document))
    two = plan_stack(load_stack(tmp_path, "two"), NOW)
    charts = {(r["chart"], r["version"]) for r in releases}
    charts |= {(h.chart.rsplit("/", 1)[-1], h.version) for h in two.eks.addons}
    registered = {(r.name, r.version) for r in references.REFERENCES if r.kind == "helm-chart"}
    assert charts == registered
    versions = {r["inputs"]["version"] for e in rendered["stacks"] for r in e["resources"]
                if r["type"] == "aws:eks/cluster:Cluster"}
    assert versions == references.registered("kubernetes-version")


def test_ami_parameters_are_registered():
    parameters = {plan_stack(load_stack(REPO / "stacks", name), NOW).ec2.boot_image.ssm_parameter
                  for name in ("h100-pilot", "h200-pilot", "b200-nvfp4", "b300-bf16", "h100-bf16")}
    assert parameters <= references.registered("ssm-parameter")


@pytest.mark.parametrize("entry", references.REFERENCES, ids=lambda r: r.key)
def test_every_entry_has_a_kind_a_dated_source_and_a_section_in_docs(entry):
    assert entry.kind in references.KINDS
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry.checked)
    assert entry.source and f'<a id="{entry.source}"></a>' in SOURCES, f"docs/sources.md lacks #{entry.source}"


def test_keys_are_unique():
    assert len({r.key for r in references.REFERENCES}) == len(references.REFERENCES)
