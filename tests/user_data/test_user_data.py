"""The EC2 boot script renderer (planner/targets/ec2.py): snapshots, structure, shell syntax, the dead-man switch run
against a fake metadata service, and the numbers it derives (startup budget, egress, secret variables).

Refresh the snapshots after an intended change with `NEMOTRON_UPDATE_SNAPSHOTS=1 pytest tests/user_data`.
"""

from __future__ import annotations

import base64
import gzip
import os
import shlex
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from planner.errors import PlanInputError
from planner.plan import plan_stack
from planner.serving import API_KEY_GUARD
from planner.stack_config import load_stack, parse_stack
from planner.targets.ec2 import (
    USER_DATA_LIMIT_BYTES,
    gzipped,
    hf_cache_snapshot,
    internet_egress_reasons,
    render_user_data,
    user_data_base64,
)

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
SNAPSHOTS = Path(__file__).with_name("snapshots")
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:h100-pilot-serving-secret-Ab12Cd"
HEAD_IP = "10.64.3.17"
NODES = [("h100-pilot", 0), ("h100-bf16", 0), ("h100-bf16", 1), ("h200-pilot", 0), ("b200-nvfp4", 0),
         ("b300-bf16", 0)]


def plan_of(stack: str, now: datetime = NOW, **config):
    if not config:
        return plan_stack(load_stack(STACKS_DIR, stack), now)
    document = yaml.safe_load((STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())
    document["config"].update({f"nemotron-deploy:{key}": value for key, value in config.items()})
    document["config"] = {key: value for key, value in document["config"].items() if value is not None}  # None: unset
    return plan_stack(parse_stack(stack, document["config"], "test"), now)


def render(stack: str, node: int, now: datetime = NOW) -> str:
    plan = plan_of(stack, now)
    return render_user_data(plan, plan.ec2, node, SECRET_ARN, head_ip=HEAD_IP if node else None)


def written_files(user_data: str) -> dict[str, str]:
    document = yaml.safe_load(user_data)
    return {f["path"]: f["content"] for f in document["write_files"]}


@pytest.mark.parametrize(("stack", "node"), NODES)
def test_user_data_matches_its_snapshot(stack, node):
    text = render(stack, node)
    snapshot = SNAPSHOTS / f"{stack}-node{node}.yaml"
    if os.environ.get("NEMOTRON_UPDATE_SNAPSHOTS") == "1":
        snapshot.write_text(text)
    assert text == snapshot.read_text(), f"{snapshot.name} differs; review, then NEMOTRON_UPDATE_SNAPSHOTS=1"


@pytest.mark.parametrize(("stack", "node"), NODES)
def test_user_data_is_cloud_config_with_valid_shell_and_units(stack, node):
    text = render(stack, node)
    # EC2's 16 KiB apply to what the instance gets: the gzipped text
    assert text.startswith("#cloud-config\n") and len(gzipped(text)) <= USER_DATA_LIMIT_BYTES
    assert gzip.decompress(base64.b64decode(user_data_base64(text))).decode() == text
    document = yaml.safe_load(text)
    assert document["runcmd"][:2] == [["systemctl", "daemon-reload"],
                                      ["systemctl", "enable", "--now", "nemotron-deadman.timer"]]
    files = written_files(text)
    for path, content in files.items():
        if content.startswith("#!/bin/bash"):
            subprocess.run(["bash", "-n"], input=content, text=True, check=True)
        if path.startswith("/etc/systemd/system/"):
            assert content.startswith("[Unit]\n"), path
    units = {Path(p).name for p in files if p.startswith("/etc/systemd/system/")}
    expected = {"nemotron-deadman.service", "nemotron-deadman.timer", "nemotron-prepare.service",
                "nemotron-stage.service", "nemotron-serve.service"}
    assert units == (expected if node else expected | {"nemotron-ready.service", "nemotron-serve-failed.service"})


def _unit(text: str, name: str) -> dict[str, dict[str, list[str]]]:
    """A rendered unit file as {section: {key: [values]}}."""
    sections: dict[str, dict[str, list[str]]] = {}
    for line in written_files(text)[f"/etc/systemd/system/{name}"].splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


@pytest.mark.parametrize(("stack", "node"), NODES)
def test_a_crash_looping_server_stops_restarting_and_says_so(stack, node):
    text = render(stack, node)
    serve = _unit(text, "nemotron-serve.service")
    if node == 0:  # the vLLM server: 5 failed starts within 5 startup budgets (+ restart delays) is a crash loop
        budget = plan_of(stack).ec2.startup.timeout_s
        assert serve["Unit"]["StartLimitBurst"] == ["5"]
        assert serve["Unit"]["StartLimitIntervalSec"] == [str(5 * (30 + budget))]
        assert serve["Unit"]["OnFailure"] == ["nemotron-serve-failed.service"]
        assert serve["Service"]["Restart"] == ["on-failure"]
        failed = _unit(text, "nemotron-serve-failed.service")
        assert failed["Service"]["ExecStart"] == ["/usr/local/sbin/nemotron-node serve-failed"]
        assert "Install" not in failed  # started by OnFailure only, never at boot
        assert "nemotron-serve-failed.service" not in str(yaml.safe_load(text)["runcmd"])
    else:  # a Ray worker fails for as long as the head is down: it keeps retrying
        assert "StartLimitBurst" not in serve["Unit"] and serve["Service"]["Restart"] == ["always"]


@pytest.mark.parametrize(("stack", "node"), [n for n in NODES if n[1] == 0])
def test_the_wait_for_a_healthy_endpoint_does_not_hold_up_boot(stack, node):
    # a oneshot unit wanted by multi-user.target holds the target (and `systemctl is-system-running`) until it ends
    ready = _unit(render(stack, node), "nemotron-ready.service")
    assert ready["Service"]["Type"] == ["exec"] and "RemainAfterExit" not in ready["Service"]
    assert "TimeoutStartSec" not in ready["Service"]


@pytest.mark.parametrize(("stack", "node"), NODES)
def test_serving_nodes_exec_the_planners_argv_and_read_secrets_at_boot(stack, node):
    plan, text = plan_of(stack), render(stack, node)
    entry = written_files(text)["/etc/nemotron/container/entry.sh"]
    if node == 0:
        # the planner's argv, which ends with the middleware that puts the API key on every path
        assert entry.rstrip("\n").endswith(f"exec {shlex.join(plan.serving.argv)}")
        assert plan.serving.argv[-2:] == ("--middleware", "nemotron_auth.require_api_key")
        assert 'export PYTHONPATH="/etc/nemotron/container${PYTHONPATH:+:$PYTHONPATH}"' in entry
        assert written_files(text)["/etc/nemotron/container/nemotron_auth.py"] == \
            plan.serving.modules["nemotron_auth.py"]
    else:
        assert "vllm serve" not in entry and "/etc/nemotron/container/nemotron_auth.py" not in written_files(text)
    assert f"SECRET_ARN={SECRET_ARN}" in text
    assert "aws secretsmanager get-secret-value" in text and 'mv "$ETC/vllm.env.new" "$ETC/vllm.env"' in text
    assert "umask 077" in text
    env = written_files(text)["/etc/nemotron/serving.env"].splitlines()
    assert env == [f"{k}={v}" for k, v in plan.serving.env.items()] + [
        "HF_HOME=/models/hf", "HF_HUB_OFFLINE=1", "VLLM_CACHE_ROOT=/models/vllm-cache", f"AWS_REGION={plan.region}"]


class _Request:
    def __init__(self, path: str, authorization: str | None = None, method: str = "POST"):
        self.method, self.url = method, type("Url", (), {"path": path})()
        self.headers = {} if authorization is None else {"authorization": authorization}


def test_the_entry_script_refuses_a_missing_key_before_ray_and_vllm():
    # vLLM imports --middleware only after the model has loaded: the guard runs first, on every serving node
    for stack, node in (("h100-pilot", 0), ("h100-bf16", 0)):
        entry = written_files(render(stack, node))["/etc/nemotron/container/entry.sh"]
        assert API_KEY_GUARD in entry
        assert entry.index(API_KEY_GUARD) < entry.index("exec vllm serve")
        if "ray start --head" in entry:
            assert entry.index(API_KEY_GUARD) < entry.index("ray start --head")
    worker = written_files(render("h100-bf16", 1))["/etc/nemotron/container/entry.sh"]
    assert API_KEY_GUARD not in worker  # a worker only runs Ray and holds no key


def test_the_api_key_guards_every_path_of_the_server_not_only_v1(monkeypatch, tmp_path):
    # vLLM checks VLLM_API_KEY only under /v1: /invocations runs a full completion without it (vllm#58144).
    import asyncio
    import importlib.util
    import sys
    import types

    path = tmp_path / "nemotron_auth.py"
    path.write_text(written_files(render("h100-pilot", 0))["/etc/nemotron/container/nemotron_auth.py"])
    responses = types.ModuleType("starlette.responses")
    responses.JSONResponse = lambda content, status_code: ("denied", status_code)
    monkeypatch.setitem(sys.modules, "starlette", types.ModuleType("starlette"))
    monkeypatch.setitem(sys.modules, "starlette.responses", responses)

    def load():
        spec = importlib.util.spec_from_file_location("nemotron_auth", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="VLLM_API_KEY is unset"):  # no key: the server does not start open
        load()
    for blank in ("", " ", "\n"):  # vLLM turns its own check off for an empty key; so must not we
        monkeypatch.setenv("VLLM_API_KEY", blank)
        with pytest.raises(SystemExit, match="VLLM_API_KEY is empty"):
            load()
    monkeypatch.setenv("VLLM_API_KEY", "k3y")
    module = load()

    async def served(request):
        return "served"

    def call(request):
        return asyncio.run(module.require_api_key(request, served))

    for path in ("/invocations", "/v1/chat/completions", "/tokenize", "/pooling", "/metrics"):
        assert call(_Request(path)) == ("denied", 401), path
        assert call(_Request(path, "Bearer wrong")) == ("denied", 401), path
        assert call(_Request(path, "Bearer k3y")) == "served", path
        assert call(_Request(path, "bearer k3y")) == "served", path  # the scheme is case-insensitive (RFC 7235)
        assert call(_Request(path, "BEARER k3y")) == "served", path
        assert call(_Request(path, "Bearer ")) == ("denied", 401), path  # an empty credential never matches
        assert call(_Request(path, "Basic k3y")) == ("denied", 401), path
        assert call(_Request(path, "Bearer k3y2")) == ("denied", 401), path
    assert call(_Request("/health", method="GET")) == "served"  # the readiness probe needs no key


def test_the_expiry_is_not_in_the_boot_script_so_renewal_keeps_the_server():
    early, late = render("h100-bf16", 1, NOW), render("h100-bf16", 1, NOW + timedelta(hours=5))
    assert early == late
    assert plan_of("h100-bf16").tags["nemotron-deploy:expires-at"] not in early


def test_a_worker_needs_the_head_ip_and_nodes_are_bounded():
    plan = plan_of("h100-bf16")
    with pytest.raises(PlanInputError, match="head_ip"):
        render_user_data(plan, plan.ec2, 1, SECRET_ARN)
    with pytest.raises(PlanInputError, match="node_index"):
        render_user_data(plan, plan.ec2, 2, SECRET_ARN, head_ip=HEAD_IP)


def test_only_ec2_vllm_plans_get_user_data():
    with pytest.raises(PlanInputError, match="ec2"):
        plan = plan_of("jumpstart")
        render_user_data(plan, plan.ec2, 0, SECRET_ARN)


def test_a_weights_mirror_is_staged_into_the_hugging_face_cache_layout():
    plan = plan_of("h100-pilot", weightsS3Uri="s3://model-mirror/nemotron/fp8", weightsLoader="nvme")
    text = render_user_data(plan, plan.ec2, 0, SECRET_ARN)
    snapshot, revision = hf_cache_snapshot(plan.serving.model_repo, "s3://model-mirror/nemotron/fp8")
    assert snapshot == f"hub/models--nvidia--NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4/snapshots/{revision}"
    assert len(revision) == 40 and int(revision, 16) >= 0
    assert f"MIRROR_SNAPSHOT=hf/{snapshot}" in text  # under MODEL_CACHE=/opt/dlami/nvme/nemotron
    assert f"MIRROR_REVISION={revision}" in text
    assert plan.ec2.weights.bucket == "model-mirror" and plan.ec2.weights.prefix == "nemotron/fp8"


# NVIDIA's NVFP4 checkpoint is 352.3 GB as published; a p5.48xlarge's 3,200 Gb/s over 32 network cards leave 100 Gb/s
# for S3 (one ENI), at the streamer's measured 0.6 of line rate: 7.5 GB/s. Boot 180 s, cold warm-up 1,200 s, warm
# 300 s; timeout x 1.5.
@pytest.mark.parametrize(("config", "stage_s", "load_s", "total_s", "timeout_s", "warm_s"), [
    # from Hugging Face at 0.2 GB/s (1,762 s), loaded at 2 GB/s (176 s); no compile cache without an S3 copy
    ({"weightsS3Uri": None}, 1762, 176, 180 + 1762 + 176 + 1200, 4977, 3318),
    # streamed from the staged copy: nothing staged, 352.3 / 7.5 = 47 s into GPU memory
    ({"weightsS3Uri": "s3://model-mirror/fp8"}, 0, 47, 180 + 47 + 1200, 2141, 180 + 47 + 300),
    # staged on the NVMe at 7.5 GB/s, then 2 GB/s per GPU x 8 = 16 GB/s into GPU memory (22 s)
    ({"weightsS3Uri": "s3://model-mirror/fp8", "weightsLoader": "nvme"}, 47, 22, 1449, 2174, 180 + 47 + 22 + 300),
    ({"weightsS3Uri": None, "ttlHours": 0.5}, 1762, 176, 1800, 1800, 1800),  # never longer than the TTL
])
def test_startup_budget_follows_weights_size_and_sourced_rates(config, stage_s, load_s, total_s, timeout_s, warm_s):
    plan = plan_of("h100-pilot", **config)
    budget = plan.ec2.startup
    assert (budget.stage_s, budget.load_s, budget.total_s, budget.timeout_s, budget.warm_total_s) == (
        stage_s, load_s, total_s, timeout_s, warm_s)
    assert f"STARTUP_BUDGET_S={timeout_s}" in render_user_data(plan, plan.ec2, 0, SECRET_ARN)
    assert budget.usd_per_cold_start() == round(total_s / 3600 * 55.04, 2)


def test_the_done_when_of_cold_start_h100_pilot_loads_in_under_3_minutes_and_redeploys_in_under_10():
    budget = plan_of("h100-pilot", weightsS3Uri="s3://model-mirror/fp8").ec2.startup
    assert budget.weight_load_s < 3 * 60 and budget.warm_total_s < 10 * 60
    assert budget.summary() == ("cold start ~ 23.8 min: boot 3.0 min, stage 0.0 min, load 0.8 min, warm-up 20.0 min; "
                                "redeploy with warm caches ~ 8.8 min; $21.82 per cold start")


def test_internet_egress_is_needed_for_public_images_and_hugging_face_only():
    assert len(plan_of("h100-pilot", weightsS3Uri=None).ec2.internet_egress_reasons) == 2
    mirrored = plan_of("h100-pilot", weightsS3Uri="s3://model-mirror/fp8")
    assert mirrored.ec2.internet_egress_reasons == (
        "the image vllm/vllm-openai:v0.33.0 is pulled from a public registry",)
    private = replace(mirrored, serving=replace(mirrored.serving,
                                                image="123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm:v0.33.0"))
    assert internet_egress_reasons(private) == ()  # the target's function, on a plan with an ECR image


def test_the_secret_holds_the_api_key_and_the_hf_token_only_when_hugging_face_is_used():
    assert plan_of("h100-pilot", weightsS3Uri=None).ec2.secret_env_names == ("VLLM_API_KEY",)
    assert plan_of("h100-pilot", hfToken={"secure": "v1:x"}, weightsS3Uri=None).ec2.secret_env_names == (
        "VLLM_API_KEY", "HF_TOKEN")
    mirrored = plan_of("h100-pilot", hfToken={"secure": "v1:x"}, weightsS3Uri="s3://model-mirror/fp8")
    assert mirrored.ec2.secret_env_names == ("VLLM_API_KEY",)


def test_the_boot_image_is_the_x86_dlami_for_hopper_and_blackwell():
    for stack in ("h100-pilot", "b200-nvfp4"):
        image = plan_of(stack).ec2.boot_image
        assert image.ssm_parameter == \
            "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
        assert (image.root_device, image.root_volume_gib) == ("/dev/sda1", 200)
