"""The verdicts the article and the arithmetic must agree on, from a table of cases."""

from pathlib import Path

import pytest
import yaml

from planner.fit import FitRequest, alternatives, plan_fit
from planner.hardware import GPUS
from planner.models import NEMOTRON_3_ULTRA

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "fit_verdicts.yaml").read_text())


def request(gpu, **kw) -> FitRequest:
    return FitRequest(model=NEMOTRON_3_ULTRA, gpu=GPUS[gpu], **kw)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_fit_verdict(case):
    result = plan_fit(request(**case["request"]))
    assert result.fits is case["fits"], result.reasons
    if "tensor_parallel" in case:
        assert result.tensor_parallel == case["tensor_parallel"]
    if "pipeline_parallel" in case:
        assert result.pipeline_parallel == case["pipeline_parallel"]
    if "reason_contains" in case:
        assert any(case["reason_contains"] in r for r in result.reasons), result.reasons


# The runtime reserve at vLLM's default 8,192 batched tokens (>= 70 GiB GPUs): 2 GiB fixed + 8,192 tokens x hidden
# 8,192 x 2 B x 16 = 2 GiB of activations = 4 GiB per GPU.
RESERVE_GIB = 2.0 + 8192 * 8192 * 2 * 16 / 2**30
# vLLM keeps the GB10 on its small default budget, 2,048 batched tokens: 2 + 0.5 GiB
SPARK_RESERVE_GIB = 2.0 + 2048 * 8192 * 2 * 16 / 2**30


def test_bf16_weights_are_the_published_1121_gb_and_overflow_8x_h100_by_the_stated_amount():
    result = plan_fit(request("h100", gpus_per_node=8, nodes=1, precision="bf16", context=262144, concurrency=16))
    # NVIDIA's BF16 checkpoint is 1,121 GB as published (MTP head and embeddings included): 1,044.0 GiB
    assert result.weights_gib == pytest.approx(1121e9 / 2**30)
    assert result.weights_per_gpu_gib == pytest.approx(result.weights_gib / 8)
    # 79.6 GiB x 0.90 - 4 GiB reserve = 67.64 GiB budget; 130.5 GiB of weights per GPU -> 62.9 GiB short
    assert RESERVE_GIB == 4.0
    assert result.per_gpu_budget_gib == pytest.approx(79.6 * 0.9 - RESERVE_GIB)
    assert result.per_gpu_free_gib == pytest.approx(79.6 * 0.9 - RESERVE_GIB - 1121e9 / 2**30 / 8)
    assert any("by 62.9 GiB" in r for r in result.reasons)


def test_a_precision_without_a_published_size_is_counted_by_the_arithmetic():
    result = plan_fit(request("h100", gpus_per_node=8, nodes=1, precision="fp8", context=65536, concurrency=8))
    assert result.weights_gib == pytest.approx(550e9 * 1 / 2**30)
    assert result.reasons[0].startswith("weights: 550B params x 1 B (fp8) = 512.2 GiB")


def test_alternatives_for_a_rejected_config_all_fit_and_are_cheapest_first():
    asked = request("h100", gpus_per_node=8, nodes=1, precision="bf16", context=65536, concurrency=8)
    result = plan_fit(asked)
    assert not result.fits
    alts = result.alternatives
    assert alts, "a rejected configuration must come with ones that work"
    prices = [a.usd_per_hour for a in alts]
    assert prices == sorted(prices)
    # FP8 on the same p5.48xlarge fits, so nothing dearer leads; the cheaper A100 and L40S families
    # (docs/sources.md#aws-gpu-instances) crowd the top five, BF16 on two p5 is still among all that fit
    assert alts[0].usd_per_hour <= 55.04
    every = alternatives(asked, limit=100)
    assert any((a.instance_type, a.precision, a.nodes) == ("p5.48xlarge", "fp8", 1) for a in every)
    assert any(a.instance_type == "p5.48xlarge" and a.precision == "bf16" and a.nodes == 2 for a in every)
    for alt in alts:
        again = plan_fit(request(alt.gpu, gpus_per_node=alt.gpus_per_node, nodes=alt.nodes, precision=alt.precision,
                                 context=65536, concurrency=8))
        assert again.fits


def test_spark_alternatives_start_at_four_nodes():
    result = plan_fit(request("gb10", gpus_per_node=1, nodes=2, precision="nvfp4", context=32768, concurrency=4))
    assert not result.fits
    assert result.alternatives[0].instance_type == "dgx-spark"
    assert (result.alternatives[0].nodes, result.alternatives[0].tensor_parallel) == (4, 4)


def test_spark_four_nodes_reports_its_margin():
    result = plan_fit(request("gb10", gpus_per_node=1, nodes=4, precision="nvfp4", context=32768, concurrency=4))
    # 119.2 GiB x 0.9 = 107.3 GiB, - 4 GiB reserve - 82.0 GiB of weights per node (352.3 GB / 4) = 21.3 GiB free
    assert result.per_gpu_free_gib == pytest.approx(119.2 * 0.9 - SPARK_RESERVE_GIB - 352.3e9 / 2**30 / 4)
    assert 0 < result.margin_gib < result.per_gpu_free_gib


def test_unified_memory_keeps_the_os_reserve():
    loose = request("gb10", gpus_per_node=1, nodes=4, precision="nvfp4", context=8192, concurrency=1,
                    gpu_memory_utilization=0.98)
    result = plan_fit(loose)
    # 0.98 would leave 2.4 GiB to DGX OS; the planner keeps 8 GiB back instead
    assert result.per_gpu_budget_gib == pytest.approx(119.2 - 8.0 - SPARK_RESERVE_GIB)
    assert any("kept for the OS" in r for r in result.reasons)


def test_thin_margin_is_warned():
    result = plan_fit(request("h100", gpus_per_node=8, nodes=1, precision="fp8", context=131072, concurrency=8))
    assert result.fits
    assert any(w.startswith("thin margin") for w in result.warnings)


def test_long_context_warns_about_position_limit():
    result = plan_fit(request("h200", gpus_per_node=8, nodes=1, precision="fp8", context=1_000_000, concurrency=1))
    assert any("VLLM_ALLOW_LONG_MAX_MODEL_LEN" in w for w in result.warnings)
