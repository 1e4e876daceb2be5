"""`python -m scripts.plan --json` and `python -m planner fit --json` keep their JSON contracts."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from planner.__main__ import main as planner_main
from planner.plan import plan_stack
from planner.stack_config import load_stack, stack_names
from scripts.plan import main as plan_main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["b200-nvfp4", "b300-bf16", "eks-nim", "eks-vllm", "h100-bf16", "h100-pilot", "h200-pilot", "jumpstart"]
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_every_required_stack_is_shipped():
    assert set(SHIPPED) <= set(stack_names(REPO / "stacks"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_stack_is_valid_and_fits(name):
    plan = plan_stack(load_stack(REPO / "stacks", name), NOW)
    assert plan.fit.fits, plan.fit.reasons
    assert plan.tags == {"nemotron-deploy:stack": name, "nemotron-deploy:owner": plan.config.owner,
                         "nemotron-deploy:expires-at": "2026-12-01T18:00:00Z"}


def test_stack_shapes_the_issue_asks_for():
    plans = {n: plan_stack(load_stack(REPO / "stacks", n), NOW) for n in SHIPPED}
    h100 = plans["h100-pilot"]
    # NVIDIA publishes no FP8 checkpoint: the Hopper stacks serve its NVFP4 one (W4A16 there)
    assert (h100.instance.name, h100.config.nodes, h100.config.precision) == ("p5.48xlarge", 1, "nvfp4")
    assert (h100.config.context_tokens, h100.config.concurrency) == (262_144, 16)  # the article's pilot
    bf16 = plans["h100-bf16"]
    assert (bf16.instance.name, bf16.config.nodes, bf16.config.precision, bf16.fit.pipeline_parallel) == \
        ("p5.48xlarge", 2, "bf16", 2)
    h200 = plans["h200-pilot"]
    assert (h200.instance.gpu, h200.config.precision, h200.config.context_tokens) == ("h200", "nvfp4", 1_000_000)
    b200 = plans["b200-nvfp4"]
    assert (b200.instance.name, b200.config.precision) == ("p6-b200.48xlarge", "nvfp4")
    assert plans["eks-nim"].engine == "nim" and plans["eks-vllm"].engine == "vllm"
    assert plans["jumpstart"].target == "jumpstart"


def test_plan_json_contract(capsys):
    assert plan_main(["--json", "--now", "2026-12-01T10:00:00+00:00"]) == 0
    document = json.loads(capsys.readouterr().out)
    entries = {e["stack"]: e for e in document["stacks"]}
    assert set(SHIPPED) <= set(entries)
    for entry in entries.values():
        assert {"stack", "target", "fit", "serving", "cost", "resources", "violations"} <= set(entry)
        assert isinstance(entry["resources"], list) and isinstance(entry["violations"], list)
        for resource in entry["resources"]:
            assert set(resource) == {"type", "name", "inputs"}
        assert entry["expires_at"] == "2026-12-01T18:00:00Z"
    serving = entries["h100-pilot"]["serving"]
    assert serving["argv"][:2] == ["vllm", "serve"] and "VLLM_API_KEY" in serving["secret_env"]
    assert entries["eks-nim"]["serving"]["engine"] == "nim"


def test_plan_table_names_every_stack(capsys):
    assert plan_main([]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert "vllm serve" in out and "$55.04/h" in out


FIT_KEYS = {"fits", "weights_gib", "per_gpu_free_gib", "kv_cache_bytes_per_token", "mamba_state_bytes_per_sequence",
            "max_concurrent_sequences", "tensor_parallel", "pipeline_parallel", "reasons"}


@pytest.mark.parametrize(("nodes", "fits"), [(2, False), (4, True)])
def test_fit_json_contract(nodes, fits, capsys):
    code = planner_main(["fit", "--model", "nemotron-3-ultra", "--gpu", "gb10", "--gpus-per-node", "1", "--nodes",
                         str(nodes), "--precision", "nvfp4", "--context", "32768", "--concurrency", "4", "--json"])
    assert code == 0  # a verdict either way
    result = json.loads(capsys.readouterr().out)
    assert FIT_KEYS <= set(result)
    assert result["fits"] is fits
    assert result["kv_cache_bytes_per_token"] == 6144
    assert result["mamba_state_bytes_per_sequence"] == 407_961_600
    assert all(isinstance(r, str) for r in result["reasons"])
    assert bool(result["alternatives"]) is not fits


def test_article_command_is_rejected_with_numbers(capsys):
    assert planner_main(["article"]) == 0
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "1,044.0 GiB" in out and "method mtp" in out
    # what exists, and the article's pilot served with NVIDIA's NVFP4 checkpoint
    assert "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4 (NVIDIA's nvfp4 checkpoint), 352.3 GB" in out
    assert "nvfp4, context 262,144, concurrency 16: FITS" in out


def test_ec2_stacks_declare_resources_without_violations(capsys):
    assert plan_main(["h100-pilot", "h100-bf16", "--json"]) == 0
    for entry in json.loads(capsys.readouterr().out)["stacks"]:
        types = {r["type"] for r in entry["resources"]}
        assert "aws:ec2/launchTemplate:LaunchTemplate" in types and "aws:ec2/instance:Instance" in types
        assert entry["violations"] == []


def test_a_policy_finding_is_reported_and_fails_the_plan(monkeypatch, capsys):
    import scripts.plan as plan_script

    world_open = {"type": "aws:ec2/securityGroup:SecurityGroup", "name": "leaky-sg",
                  "inputs": {"ingress": [{"fromPort": 8000, "toPort": 8000, "protocol": "tcp",
                                          "cidrBlocks": ["0.0.0.0/0"]}], "tags": {}}}
    monkeypatch.setattr(plan_script, "declared_resources", lambda *a, **k: [world_open])
    assert plan_main(["h100-pilot", "--json"]) == 1
    violations = json.loads(capsys.readouterr().out)["stacks"][0]["violations"]
    assert {(v["rule"], v["resource"]) for v in violations} >= {("world-open-ingress", "leaky-sg"),
                                                                 ("missing-tags", "leaky-sg")}
