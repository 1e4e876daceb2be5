"""The AWS GPU families added to the catalogue (issue 16): their figures, the verdicts they give for Nemotron 3 Ultra
worked out by hand, where they are offered, and the 8x B300 BF16 server among the article's alternatives.

Figures: docs/sources.md#aws-gpu-instances. Weights: 1,121 GB (BF16) = 1,044.0 GiB, 352.3 GB (NVFP4) = 328.1 GiB.
The runtime reserve (2 to 6 GiB here) is the activation-reserve arithmetic's; the bounds below hold for any of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.__main__ import article_check
from planner.fit import FitRequest, plan_fit
from planner.hardware import GIB, GPUS, INSTANCE_TYPES
from planner.models import NEMOTRON_3_ULTRA
from planner.regions import FAMILY_OFFERINGS, family, not_offered_in, offering_caution
from planner.stack_config import load_stack

REPO = Path(__file__).resolve().parents[2]
BF16_GIB = 1121e9 / GIB  # 1,044.0
NVFP4_GIB = 352.3e9 / GIB  # 328.1
RESERVE_GIB = (2.0, 6.0)  # fixed part plus activations, whatever the batched-token budget


def fit(gpu: str, gpus: int, precision: str, context: int, concurrency: int, nodes: int = 1):
    return plan_fit(FitRequest(NEMOTRON_3_ULTRA, GPUS[gpu], gpus, nodes, precision, context, concurrency),
                    with_alternatives=False)


# (instance type, GPU, GPUs, vCPUs, memory GiB, NVMe devices, EFA cards, $/h): AWS's specifications and list prices.
ROWS = [
    ("p6-b300.48xlarge", "b300", 8, 192, 4096, 8, 16, 142.42),
    ("p5.4xlarge", "h100", 1, 16, 256, 1, 1, 6.88),
    ("p4d.24xlarge", "a100-40", 8, 96, 1152, 8, 4, 21.96),
    ("p4de.24xlarge", "a100-80", 8, 96, 1152, 8, 4, 27.45),
    ("g6e.xlarge", "l40s", 1, 4, 32, 1, 0, 1.86),
    ("g6e.12xlarge", "l40s", 4, 48, 384, 2, 1, 10.49),
    ("g6e.48xlarge", "l40s", 8, 192, 1536, 4, 4, 30.13),
    ("g6.xlarge", "l4", 1, 4, 16, 1, 0, 0.80),
    ("g6.12xlarge", "l4", 4, 48, 192, 4, 1, 4.60),
    ("g6.48xlarge", "l4", 8, 192, 768, 8, 1, 13.35),
    ("g5.xlarge", "a10g", 1, 4, 16, 1, 0, 1.01),
    ("g5.12xlarge", "a10g", 4, 48, 192, 1, 1, 5.67),
    ("g5.48xlarge", "a10g", 8, 192, 768, 2, 1, 16.29),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r[0])
def test_each_new_type_carries_awss_figures_and_a_sagemaker_counterpart(row):
    name, gpu, gpus, vcpus, memory, nvme, efa, price = row
    ec2 = INSTANCE_TYPES[name]
    assert (ec2.platform, ec2.gpu, ec2.gpus, ec2.vcpus, ec2.memory_gib, ec2.nvme_devices, ec2.efa_cards,
            ec2.usd_per_hour) == ("ec2", gpu, gpus, vcpus, memory, nvme, efa, price)
    assert ec2.price_read
    sm = INSTANCE_TYPES[f"ml.{name}"]
    assert (sm.platform, sm.gpu, sm.gpus, sm.vcpus, sm.memory_gib, sm.nvme) == \
        ("sagemaker", gpu, gpus, vcpus, memory, ec2.nvme)
    assert sm.usd_per_hour == pytest.approx(price * 1.25, abs=0.01)  # the catalogue's SageMaker estimate


# (GPU, usable GiB, HBM/GDDR TB/s, dense BF16 TFLOPS, native weight precisions it must have, ones it must lack)
GPU_ROWS = [
    ("b300", 268.0, 8.0, 2250.0, {"bf16", "fp8", "nvfp4"}, set()),
    ("a100-80", 80.0, 2.039, 312.0, {"bf16"}, {"fp8", "nvfp4"}),
    ("a100-40", 40.0, 1.555, 312.0, {"bf16"}, {"fp8", "nvfp4"}),
    ("l40s", 44.0, 0.864, 362.0, {"bf16", "fp8"}, {"nvfp4"}),
    ("l4", 22.0, 0.3, 121.0, {"bf16", "fp8"}, {"nvfp4"}),
    ("a10g", 22.0, 0.6, 125.0, {"bf16"}, {"fp8", "nvfp4"}),
]


@pytest.mark.parametrize("row", GPU_ROWS, ids=lambda r: r[0])
def test_each_new_gpu_has_its_memory_bandwidth_tflops_and_native_precisions(row):
    key, memory, bandwidth, bf16, native, lacking = row
    g = GPUS[key]
    assert (g.memory_gib, g.hbm_tb_s, g.dense_tflops["bf16"]) == (memory, bandwidth, bf16)
    assert native <= set(g.precisions) and not lacking & set(g.precisions)
    assert set(g.dense_tflops) <= set(g.precisions)  # a compute figure only for math the GPU has
    assert g.source.startswith("docs/sources.md#aws-gpu-instances")


def test_fp4_weights_are_served_weight_only_where_the_gpu_has_no_fp4_math():
    for key in ("a100-80", "a100-40", "l40s", "l4", "a10g"):
        assert GPUS[key].serves("nvfp4") and GPUS[key].compute_precision("nvfp4") == "bf16"
    assert GPUS["b300"].compute_precision("nvfp4") == "nvfp4"


def test_8x_b300_holds_the_bf16_checkpoint_with_room_for_64_long_sequences():
    result = fit("b300", 8, "bf16", 262_144, 64)
    # 1,044.0 GiB / 8 = 130.5 GiB per GPU; 268 GiB x 0.90 = 241.2 GiB before the runtime reserve
    assert result.weights_per_gpu_gib == pytest.approx(BF16_GIB / 8) == pytest.approx(130.5, abs=0.05)
    assert 241.2 - RESERVE_GIB[1] <= result.per_gpu_budget_gib <= 241.2 - RESERVE_GIB[0]
    # so 100.7 to 104.7 GiB per GPU stay free for cache: 768 MiB of KV + 48.6 MiB of Mamba state per sequence at
    # 262,144 tokens (3,072 B per token per GPU) -> at least 123 sequences, 64 asked
    assert result.per_gpu_free_gib == pytest.approx(result.per_gpu_budget_gib - BF16_GIB / 8)
    assert result.per_gpu_free_gib >= 241.2 - RESERVE_GIB[1] - 1121e9 / 2**30 / 8
    assert result.bytes_per_sequence_per_gpu == 262_144 * 3072 + result.mamba_state_bytes_per_sequence_per_gpu
    assert result.fits and result.max_concurrent_sequences >= 123
    assert result.margin_gib > 50  # 64 x 816.6 MiB = 51.0 GiB used of 100+ GiB


def test_8x_b200_holds_the_bf16_weights_but_not_64_long_sequences():
    # 178.35 x 0.90 = 160.5 GiB before the reserve; 130.5 GiB of weights leave under 30 GiB: < 37 sequences
    result = fit("b200", 8, "bf16", 262_144, 64)
    assert not result.fits and result.max_concurrent_sequences < 37


def test_8x_a100_40gb_refuses_the_nvfp4_checkpoint_before_any_reserve():
    result = fit("a100-40", 8, "nvfp4", 262_144, 16)
    # 328.1 GiB / 8 = 41.0 GiB per GPU against 40 GiB x 0.90 = 36.0 GiB even with no reserve at all
    assert result.weights_per_gpu_gib == pytest.approx(NVFP4_GIB / 8) == pytest.approx(41.0, abs=0.05)
    assert not result.fits and result.per_gpu_free_gib < 36.0 - 41.0
    assert any("exceed the" in r for r in result.reasons)


def test_8x_a100_80gb_serves_the_nvfp4_checkpoint_weight_only():
    result = fit("a100-80", 8, "nvfp4", 262_144, 16)
    # 41.0 GiB per GPU against 80 x 0.90 = 72.0 GiB less the reserve: 25 to 29 GiB free, 16 x 816.6 MiB = 12.8 GiB
    assert result.fits and 72.0 - RESERVE_GIB[1] - 41.1 <= result.per_gpu_free_gib <= 72.0 - RESERVE_GIB[0] - 41.0
    assert any("weight-only" in w for w in result.warnings)


# g6e.12xlarge (4x L40S, 44 GiB each = 39.6 GiB at 0.90): the model does not fit one server in any precision.
G6E_CASES = [
    # (nodes, precision, fits, hand-computed weights per GPU in GiB)
    (1, "nvfp4", False, NVFP4_GIB / 4),  # 82.0 > 39.6
    (1, "bf16", False, BF16_GIB / 4),  # 261.0
    (2, "nvfp4", False, NVFP4_GIB / 8),  # 41.0 > 39.6: TP 4 x PP 2
    (3, "nvfp4", True, NVFP4_GIB / 12),  # 27.3 < 39.6 - 6: TP 4 x PP 3
]


@pytest.mark.parametrize(("nodes", "precision", "fits", "per_gpu"), G6E_CASES,
                         ids=[f"{c[0]}x-{c[1]}" for c in G6E_CASES])
def test_g6e_12xlarge_verdicts(nodes, precision, fits, per_gpu):
    result = fit("l40s", 4, precision, 32_768, 4, nodes=nodes)
    assert result.weights_per_gpu_gib == pytest.approx(per_gpu)
    assert (result.layout.tensor_parallel, result.layout.pipeline_parallel) == (4, nodes)
    assert result.fits is fits


def test_the_articles_alternatives_name_the_b300_bf16_server():
    asked, _, _ = article_check()
    assert not asked.fits
    one_server_bf16 = {a.instance_type for a in asked.alternatives if a.precision == "bf16" and a.nodes == 1}
    assert "p6-b300.48xlarge" in one_server_bf16
    prices = [a.usd_per_hour for a in asked.alternatives]
    assert prices == sorted(prices)
    b300 = next(a for a in asked.alternatives if a.instance_type == "p6-b300.48xlarge")
    assert (b300.tensor_parallel, b300.pipeline_parallel, b300.usd_per_hour) == (8, 1, 142.42)
    assert b300.max_concurrent_sequences >= 123  # at the article's 262,144 tokens


def test_the_b300_stack_is_the_bf16_server_in_a_region_where_it_is_seen():
    stack = load_stack(REPO / "stacks", "b300-bf16")
    c = stack.config
    assert (c.instance_type, c.nodes, c.precision, c.context_tokens, c.concurrency) == \
        ("p6-b300.48xlarge", 1, "bf16", 262_144, 64)
    assert stack.region == "us-west-2" and offering_caution(c.instance_type, stack.region) is None


def test_offering_data_refuses_only_what_is_known_and_cautions_the_unconfirmed():
    assert not_offered_in("p5e.48xlarge", "us-east-1")  # the type's own, confirmed list
    assert not_offered_in("p6-b300.48xlarge", "eu-west-1") is None  # public data incomplete: no refusal
    assert "not confirmed" in offering_caution("p6-b300.48xlarge", "eu-west-1")
    assert offering_caution("ml.p6-b300.48xlarge", "us-east-1") is None
    for name, offering in FAMILY_OFFERINGS.items():
        assert any(family(t) == name for t in INSTANCE_TYPES), name
        assert offering.complete or offering.source.startswith("unconfirmed")


def test_a_stack_outside_the_published_regions_plans_with_a_caution(tmp_path):
    from datetime import UTC, datetime

    import yaml

    from planner.plan import plan_stack
    from planner.stack_config import load_stack

    document = yaml.safe_load((REPO / "stacks" / "Pulumi.b300-bf16.yaml").read_text())
    document["config"]["aws:region"] = "eu-west-1"
    (tmp_path / "Pulumi.b300-eu.yaml").write_text(yaml.safe_dump(document))
    plan = plan_stack(load_stack(tmp_path, "b300-eu"), datetime(2026, 12, 1, tzinfo=UTC))
    assert plan.fit.fits
    assert any(w.startswith("p6-b300.48xlarge in eu-west-1: not confirmed") for w in plan.warnings)
