"""The cold start every cloud stack's plan shows (planner/startup.py), as `make plan --json` carries it. The
figures are hand-computed in tests/user_data/test_user_data.py (EC2) and tests/eks/test_manifests.py (EKS)."""

from __future__ import annotations

from planner.startup import BOOT_S, WARM_CACHE_WARMUP_S, WARMUP_S
from scripts.plan import cold_start_text
from tests.components.runs import shipped_plan
from tests.jumpstart.stacks import STACKS_DIR as JUMPSTART_STACKS
from tests.jumpstart.stacks import plan_of as jumpstart_plan_of

STREAMED = ("h100-pilot", "h200-pilot", "b200-nvfp4", "b300-bf16", "eks-vllm")


def test_every_stack_that_streams_its_staged_copy_loads_in_minutes_and_says_how():
    for stack in STREAMED:
        cold = shipped_plan(stack).to_json()["cold_start"]
        assert cold["loader"] == "stream" and cold["stage_s"] == 0, stack
        assert cold["weight_load_s"] < 3 * 60, (stack, cold["weight_load_s"])  # S3 into GPU memory
        assert cold["total_s"] == BOOT_S + cold["load_s"] + WARMUP_S
        assert cold["rates"] and all("GB/s" in rate for rate in cold["rates"])
        assert "cold start ~ " in cold["summary"] and "per cold start" in cold["summary"]
    # the compile cache is persisted by the EC2 servers and one-node EKS pods: a redeploy skips most of the warm-up
    for stack in ("h100-pilot", "eks-vllm"):
        cold = shipped_plan(stack).to_json()["cold_start"]
        assert cold["warm_total_s"] == BOOT_S + cold["load_s"] + WARM_CACHE_WARMUP_S < 10 * 60


def test_stacks_without_a_staged_copy_say_where_the_weights_come_from():
    nim = shipped_plan("eks-nim").to_json()["cold_start"]
    assert (nim["loader"], nim["source"]) == ("hub", "NGC") and nim["rates"][0].startswith("NGC 0.2 GB/s")
    bf16 = shipped_plan("h100-bf16").to_json()["cold_start"]
    assert (bf16["loader"], bf16["source"]) == ("hub", "Hugging Face")
    assert bf16["usd_per_cold_start"] == round(bf16["total_s"] / 3600 * 110.08, 2)  # both servers


def test_jumpstart_shows_sagemakers_download_and_load_with_its_own_timeouts():
    entry = jumpstart_plan_of(JUMPSTART_STACKS, "jumpstart").to_json()
    cold = entry["cold_start"]
    assert cold["source"] == "the JumpStart artifact prefix (S3)" and cold["stage_gb_s"] == 1.0
    text = cold_start_text(entry)
    assert "SageMaker's timeouts: download" in text and "the startup timeout is" not in text
