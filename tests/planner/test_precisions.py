"""Weight precisions: bytes per parameter with their scales, which GPUs have kernels, mixed-precision checkpoints.

Every expected figure is computed by hand here from the format (bits per value + scale bits per block), not read
from the code's table (docs/sources.md#weight-precisions).
"""

import pytest

from planner.errors import PlanInputError
from planner.fit import FitRequest, plan_fit
from planner.hardware import GPUS
from planner.models import BYTES_PER_PARAM, NEMOTRON_3_ULTRA, model_from_spec
from planner.serving import render_vllm

GIB = 2**30


def spec(**over) -> dict:
    """A 100B-parameter dense-attention model, small enough to fit one GPU at 4 bits."""
    data = {"name": "probe-100b", "total_params_b": 100.0, "active_params_b": 100.0,
            "layers": {"attention": 40}, "hidden_size": 8192,
            "attention": {"num_heads": 64, "num_kv_heads": 8, "head_dim": 128}, "max_context": 131072}
    return data | over


PROBE = model_from_spec(spec())


def fit(model=PROBE, gpu="h200", precision="bf16", gpus=8, context=8192, concurrency=4, **kw):
    return plan_fit(FitRequest(model, GPUS[gpu], gpus, 1, precision, context, concurrency, **kw),
                    with_alternatives=False)


# (precision, bits per weight with scales, how the bits are made up)
WIDTHS = [
    ("bf16", 16, "16-bit"),
    ("fp8", 8, "8-bit E4M3, per-tensor/channel scales negligible"),
    ("nvfp4", 4 + 8 / 16, "4-bit E2M1 + one FP8 (E4M3) scale per 16 values"),
    ("mxfp4", 4 + 8 / 32, "4-bit E2M1 + one 8-bit E8M0 scale per 32 values"),
    ("int8", 8, "INT8 W8A8, one scale per output channel (not counted)"),
    ("int8-w8a16", 8 + 16 / 128, "INT8 weight-only, one FP16 scale per group of 128"),
    ("int4", 4 + (16 + 4) / 128, "INT4 AWQ/GPTQ, one FP16 scale + one 4-bit zero point per group of 128"),
]


@pytest.mark.parametrize(("precision", "bits", "why"), WIDTHS, ids=[w[0] for w in WIDTHS])
def test_bytes_per_parameter_count_the_scales(precision, bits, why):
    assert BYTES_PER_PARAM[precision] == bits / 8, why


# (precision, GiB of weights for 100B parameters, computed by hand)
WEIGHTS_100B = [
    ("mxfp4", 100e9 * 4.25 / 8 / GIB),  # 53.125 GB = 49.48 GiB
    ("nvfp4", 100e9 * 4.5 / 8 / GIB),  # 56.25 GB = 52.39 GiB
    ("int4", 100e9 * 4.15625 / 8 / GIB),  # 51.953 GB = 48.39 GiB
    ("int8", 100e9 * 1 / GIB),  # 100 GB = 93.13 GiB
    ("int8-w8a16", 100e9 * 8.125 / 8 / GIB),  # 101.5625 GB = 94.59 GiB
]


@pytest.mark.parametrize(("precision", "gib"), WEIGHTS_100B, ids=[w[0] for w in WEIGHTS_100B])
def test_weights_of_100b_parameters(precision, gib):
    result = fit(precision=precision)
    assert result.weights_gib == pytest.approx(gib)
    assert result.weights_per_gpu_gib == pytest.approx(gib / 8)
    assert result.fits, result.reasons


def test_hand_figures_in_gib():
    # the same figures, rounded as a person checks them
    assert round(100e9 * 4.25 / 8 / GIB, 2) == 49.48
    assert round(100e9 * 4.15625 / 8 / GIB, 2) == 48.39
    assert round(100e9 * 8.125 / 8 / GIB, 2) == 94.59


# (precision, GPU, whether the math is native, the kernel words of the weight-only note)
SUPPORT = [
    ("mxfp4", "b200", True, None),
    ("mxfp4", "gb200", True, None),
    ("mxfp4", "h100", False, "W4A16, Triton or Marlin MXFP4 kernels"),
    ("mxfp4", "h200", False, "W4A16, Triton or Marlin MXFP4 kernels"),
    ("mxfp4", "gb10", False, "W4A16, Triton or Marlin MXFP4 kernels"),
    ("nvfp4", "h100", False, "W4A16, Marlin FP4 kernels"),
    ("int4", "h100", False, "W4A16, Marlin kernels (AWQ/GPTQ)"),
    ("int4", "b200", False, "W4A16, Marlin kernels (AWQ/GPTQ)"),
    ("int8-w8a16", "b200", False, "W8A16, Marlin kernels (GPTQ 8-bit)"),
    ("int8", "h100", True, None),
    ("int8", "h200", True, None),
]


@pytest.mark.parametrize(("precision", "gpu", "native", "kernels"), SUPPORT,
                         ids=[f"{p}-{g}" for p, g, _, _ in SUPPORT])
def test_which_gpus_run_each_precision(precision, gpu, native, kernels):
    result = fit(gpu=gpu, precision=precision, gpus=4 if gpu == "gb200" else 8)
    assert result.fits, result.reasons
    weight_only = [w for w in result.warnings if "weight-only" in w]
    if native:
        assert not weight_only
        assert not any("no native" in r for r in result.reasons)
    else:
        assert weight_only, result.warnings
        assert any(f"(weight-only, {kernels})" in r for r in result.reasons), result.reasons


@pytest.mark.parametrize("gpu", ["b200", "gb200", "gb10"])
def test_int8_w8a8_is_refused_on_blackwell_with_the_reason(gpu):
    # vLLM's CUTLASS INT8 kernels are built for SM < 100 only (docs/sources.md#weight-precisions)
    n = {"b200": 8, "gb200": 4, "gb10": 1}[gpu]
    result = fit(gpu=gpu, precision="int8", gpus=n)
    assert not result.fits
    refusal = next(r for r in result.reasons if r.startswith("int8 weights need"))
    assert refusal.startswith("int8 weights need a GPU with vLLM kernels for them (h100, h200")
    assert f"; {gpu} runs " in refusal
    assert "int8-w8a16" in refusal  # the weight-only INT8 it does run


def test_mixed_precision_checkpoint_counts_its_bf16_parts_at_two_bytes():
    # FP8 release keeping embeddings + LM head (2 x 131,072 vocab x 8,192 hidden = 2.147B) in BF16
    wide = 2 * 131072 * 8192 / 1e9
    model = model_from_spec(spec(checkpoints={
        "fp8": {"repo": "example/probe-100b-FP8", "bf16_params_b": wide},
        "bf16": "example/probe-100b"}))
    result = fit(model, precision="fp8")
    expected = ((100 - wide) * 1 + wide * 2) * 1e9 / GIB  # 97.853 GB + 4.295 GB = 102.147 GB = 95.13 GiB
    assert result.weights_gib == pytest.approx(expected)
    assert round(result.weights_gib, 2) == 95.13
    assert result.reasons[0].startswith(f"weights: {100 - wide:g}B params x 1 B (fp8) + {wide:g}B kept in BF16 x 2 B")
    # the BF16 checkpoint itself is all BF16: no double count
    assert fit(model, precision="bf16").weights_gib == pytest.approx(200e9 / GIB)
    # and the repository is the checkpoint's
    assert render_vllm(result).argv[2] == "example/probe-100b-FP8"


def test_mixed_precision_nvfp4_with_attention_in_bf16():
    # an NVFP4 release keeping 10B (embeddings, LM head, attention) in BF16: 90B x 0.5625 + 10B x 2 = 70.625 GB
    model = model_from_spec(spec(checkpoints={"nvfp4": {"repo": "example/probe-NVFP4", "bf16_params_b": 10.0}}))
    assert fit(model, precision="nvfp4").weights_gib == pytest.approx(70.625e9 / GIB)


def test_bf16_parts_larger_than_the_model_are_refused():
    with pytest.raises(PlanInputError) as err:
        model_from_spec(spec(checkpoints={"fp8": {"repo": "x/y", "bf16_params_b": 101.0}}))
    assert err.value.field == "checkpoints.fp8.bf16_params_b"


def test_published_sizes_of_the_shipped_checkpoints_stay_as_published():
    # Nemotron's NVIDIA checkpoints are counted at their published size, never by the arithmetic
    assert NEMOTRON_3_ULTRA.weights_bytes("nvfp4") == 352.3e9
    assert NEMOTRON_3_ULTRA.weights_bytes("bf16") == 1121.0e9
    # the community FP8 one has no published size and declares no BF16 parts: 1 B per parameter
    assert NEMOTRON_3_ULTRA.weights_bytes("fp8") == 550e9


def test_new_precisions_are_not_offered_as_alternatives_without_a_checkpoint():
    # Nemotron has no MXFP4, INT8 or INT4 checkpoint: the alternatives stay with what can be served
    result = plan_fit(FitRequest(NEMOTRON_3_ULTRA, GPUS["h100"], 8, 1, "bf16", 65536, 8))
    assert not result.fits
    assert {a.precision for a in result.alternatives} <= {"bf16", "fp8", "nvfp4"}
