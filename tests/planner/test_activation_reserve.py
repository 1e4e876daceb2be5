"""The runtime reserve follows --max-num-batched-tokens, and the vLLM command agrees with the fit.

Reserve per GPU = 2 GiB fixed (CUDA context, NCCL buffers, CUDA graphs, allocator) + batched tokens x hidden size
x 2 B (bf16) x 16 hidden-widths live per token (docs/sources.md#activation-reserve). Every figure below is computed
by hand from that formula, not read from the planner's constants.
"""

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from planner.errors import PlanInputError
from planner.fit import FitRequest, plan_fit, vllm_default_max_num_batched_tokens
from planner.hardware import GPUS
from planner.models import NEMOTRON_3_ULTRA
from planner.plan import plan_stack
from planner.serving import ServingOptions, render_nim, render_vllm
from planner.stack_config import load_stack

GIB = 2**30
REPO = Path(__file__).resolve().parents[2]
HIDDEN = 8192  # Nemotron 3 Ultra


def reserve_gib(tokens: int) -> float:
    return 2.0 + tokens * HIDDEN * 2 * 16 / GIB


# (batched tokens, reserve in GiB by hand)
RESERVES = [
    (8_192, 4.0),  # 2 + 8,192 x 8,192 x 2 x 16 B = 2 + 2 GiB
    (32_768, 10.0),  # 2 + 8 GiB
    (131_072, 34.0),  # 2 + 32 GiB
]


def fit(gpu="h200", precision="nvfp4", context=131072, concurrency=16, tokens=None, **kw):
    return plan_fit(FitRequest(NEMOTRON_3_ULTRA, GPUS[gpu], 8, 1, precision, context, concurrency,
                               max_num_batched_tokens=tokens, **kw), with_alternatives=False)


@pytest.mark.parametrize(("tokens", "gib"), RESERVES, ids=[str(t) for t, _ in RESERVES])
def test_reserve_at_batched_tokens(tokens, gib):
    assert reserve_gib(tokens) == gib
    result = fit(tokens=tokens)
    assert result.max_num_batched_tokens == tokens
    assert result.runtime_reserve_gib == pytest.approx(gib)
    # H200: 140.4 GiB x 0.9 = 126.36 GiB, minus the reserve
    assert result.per_gpu_budget_gib == pytest.approx(140.4 * 0.9 - gib)
    assert result.per_gpu_free_gib == pytest.approx(140.4 * 0.9 - gib - 352.3e9 / GIB / 8)
    assert any(f"{tokens:,} batched tokens x hidden 8,192 x 2 B x 16" in r for r in result.reasons)


def test_the_default_budget_is_vllms_default_for_the_gpu():
    # vllm serve (vLLM 0.33.0, EngineArgs.get_batch_defaults) on a >= 70 GiB GPU that is not an A100 or a GB10: 8,192
    result = fit()
    assert result.max_num_batched_tokens == 8192
    assert result.runtime_reserve_gib == pytest.approx(4.0)
    assert vllm_default_max_num_batched_tokens(GPUS["h100"]) == 8192
    assert vllm_default_max_num_batched_tokens(GPUS["h200"]) == 8192  # 140.4 GiB
    # >= 160 GiB: 16,384 tokens, so 2 GiB + 16,384 x 8,192 x 2 B x 16 = 2 + 4 = 6 GiB for this model
    assert vllm_default_max_num_batched_tokens(GPUS["b200"]) == 16384  # 178.35 GiB
    assert vllm_default_max_num_batched_tokens(GPUS["b300"]) == 16384
    assert fit(gpu="b200").runtime_reserve_gib == pytest.approx(6.0)
    # the GB10 has the memory (119.2 GiB) but vLLM keeps it on the small tier
    assert vllm_default_max_num_batched_tokens(GPUS["gb10"]) == 2048
    # below 70 GiB, or any A100: 2,048
    assert vllm_default_max_num_batched_tokens(replace(GPUS["h100"], memory_gib=44.0)) == 2048
    assert vllm_default_max_num_batched_tokens(replace(GPUS["h100"], name="A100 SXM4 80GB", memory_gib=80.0)) == 2048


def test_a_prefill_budget_of_131072_tokens_does_not_fit_8x_h100_nvfp4():
    # 79.6 x 0.9 = 71.64 GiB - 34 GiB reserve = 37.64 GiB budget < 41.0 GiB of NVFP4 weights per GPU
    result = fit(gpu="h100", tokens=131_072)
    assert not result.fits
    assert result.per_gpu_budget_gib == pytest.approx(79.6 * 0.9 - 34.0)
    assert any("exceed the 37.6 GiB budget by 3.4 GiB" in r for r in result.reasons), result.reasons
    # the same GPUs at vLLM's default budget fit
    assert fit(gpu="h100").fits


def test_an_explicit_reserve_still_overrides_the_model():
    result = fit(runtime_reserve_gib=3.0)
    assert result.runtime_reserve_gib == pytest.approx(3.0)
    assert result.per_gpu_budget_gib == pytest.approx(140.4 * 0.9 - 3.0)


def test_a_budget_below_the_concurrency_is_refused():
    with pytest.raises(PlanInputError) as err:
        fit(tokens=8, concurrency=16)
    assert err.value.field == "max_num_batched_tokens"
    assert "at least the concurrency (16)" in err.value.allowed


def test_command_passes_the_budget_only_when_it_differs_from_vllms_default():
    default = list(render_vllm(fit()).argv)
    assert "--max-num-batched-tokens" not in default
    same = list(render_vllm(fit(tokens=8192)).argv)
    assert "--max-num-batched-tokens" not in same
    argv = list(render_vllm(fit(tokens=32_768)).argv)
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "32768"
    nim = render_nim(fit(tokens=32_768)).env["NIM_PASSTHROUGH_ARGS"]
    assert "--max-num-batched-tokens 32768" in nim


def test_extra_args_cannot_set_the_budget_behind_the_fit():
    with pytest.raises(PlanInputError) as err:
        render_vllm(fit(), ServingOptions(extra_args=("--max-num-batched-tokens", "32768")))
    assert "change maxNumBatchedTokens in the stack config" in err.value.allowed


def test_stack_key_reaches_the_fit_and_the_command(tmp_path):
    shutil.copy(REPO / "stacks" / "Pulumi.h100-pilot.yaml", tmp_path / "Pulumi.h100-pilot.yaml")
    with (tmp_path / "Pulumi.h100-pilot.yaml").open("a") as f:
        f.write("  nemotron-deploy:maxNumBatchedTokens: 32768\n")
    plan = plan_stack(load_stack(tmp_path, "h100-pilot"), datetime(2026, 12, 1, tzinfo=UTC))
    assert plan.fit.max_num_batched_tokens == 32768
    assert plan.fit.runtime_reserve_gib == pytest.approx(10.0)
    assert plan.fit.per_gpu_budget_gib == pytest.approx(79.6 * 0.9 - 10.0)
    argv = list(plan.serving.argv)
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "32768"


def test_shipped_stack_without_the_key_keeps_vllms_default():
    plan = plan_stack(load_stack(REPO / "stacks", "h100-pilot"), datetime(2026, 12, 1, tzinfo=UTC))
    assert plan.fit.max_num_batched_tokens == 8192
    assert "--max-num-batched-tokens" not in plan.serving.argv


def test_jumpstart_refuses_the_key_its_container_would_ignore(tmp_path):
    shutil.copy(REPO / "stacks" / "Pulumi.jumpstart.yaml", tmp_path / "Pulumi.jumpstart.yaml")
    with (tmp_path / "Pulumi.jumpstart.yaml").open("a") as f:
        f.write("  nemotron-deploy:maxNumBatchedTokens: 32768\n")
    with pytest.raises(PlanInputError) as err:
        load_stack(tmp_path, "jumpstart")
    assert err.value.field == "nemotron-deploy:maxNumBatchedTokens"
    assert err.value.allowed.startswith("not used by target jumpstart")
