"""Attention and state forms (docs/sources.md#model-forms): MLA, sliding-window and chunked local attention, Gated
DeltaNet and Mamba-1 state next to Mamba2, each against figures computed by hand from published configs."""

from dataclasses import replace
from pathlib import Path

import pytest

from planner.errors import PlanInputError
from planner.fit import (
    FitRequest,
    kv_bytes_per_sequence_per_gpu,
    kv_bytes_per_token_per_gpu,
    kv_cache_bytes_per_sequence,
    kv_cache_bytes_per_token,
    mamba_state_bytes_per_sequence,
    plan_fit,
    state_bytes_per_layer,
    state_bytes_per_sequence_per_gpu,
    tensor_parallel_problem,
)
from planner.hardware import GPUS
from planner.models import NEMOTRON_3_ULTRA, LayerKind, load_model, model_from_spec

SPECS = Path(__file__).resolve().parent / "data" / "specs"
MODELS = Path(__file__).resolve().parents[2] / "models"
GEMMA3 = load_model(str(SPECS / "gemma-3-27b.yaml"))
LLAMA4 = load_model(str(SPECS / "llama-4-scout.yaml"))
QWEN3_NEXT = load_model(str(SPECS / "qwen3-next-80b-a3b.yaml"))
DSV3 = load_model(str(SPECS / "deepseek-v3.yaml"))
FALCON_MAMBA = load_model(str(SPECS / "falcon-mamba-7b.yaml"))
NANO = load_model(str(MODELS / "nemotron-3-nano-30b-a3b.yaml"))

# Whole-model KV bytes per token: every attention layer, each at its per-layer figure.
KV_PER_TOKEN = [
    # MLA: 61 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) = 576 values, not 2 x 128 heads x 192
    (DSV3, "fp8", 61 * 576 * 1),  # 35,136
    (DSV3, "bf16", 61 * 576 * 2),  # 70,272 (plain K/V would be 61 x 2 x 128 x 192 x 2 = 5,996,544)
    # Gemma 3 27B: 62 layers x 2 x 16 KV heads x 128 x 2 B
    (GEMMA3, "bf16", 62 * 2 * 16 * 128 * 2),  # 507,904
    # Llama 4 Scout: 48 layers x 2 x 8 x 128 x 2 B
    (LLAMA4, "bf16", 48 * 2 * 8 * 128 * 2),  # 196,608
    # Qwen3-Next: only the 12 full-attention layers cache per token: 12 x 2 x 2 x 256 x 1 B
    (QWEN3_NEXT, "fp8", 12 * 2 * 2 * 256),  # 12,288
    (FALCON_MAMBA, "fp8", 0),  # no attention layer at all
    (NEMOTRON_3_ULTRA, "fp8", 6144),  # unchanged: 2 x 12 x 2 x 128
]

# One sequence's KV cache: windowed layers hold min(context, window) tokens.
KV_PER_SEQUENCE = [
    # Gemma 3, bf16 (8,192 B/token/layer): 52 local x 1,024 + 10 global x 32,768
    (GEMMA3, 32_768, "bf16", 52 * 1024 * 8192 + 10 * 32_768 * 8192),  # 3,120,562,176 (full: 16,642,998,272)
    (GEMMA3, 512, "bf16", 62 * 512 * 8192),  # 260,046,848: under the window every layer holds the context
    (GEMMA3, 1024, "bf16", 62 * 1024 * 8192),  # at exactly the window, still all of it
    # Llama 4 Scout, bf16 (4,096 B/token/layer): 36 chunked x 8,192 + 12 global x 131,072
    (LLAMA4, 131_072, "bf16", 36 * 8192 * 4096 + 12 * 131_072 * 4096),  # 7,650,410,496
    # MLA, fp8: 61 x 576 x 32,768
    (DSV3, 32_768, "fp8", 61 * 576 * 32_768),  # 1,151,336,448
    # Qwen3-Next: only the 12 attention layers grow with the context: 12 x 1,024 B x 262,144
    (QWEN3_NEXT, 262_144, "fp8", 12 * 1024 * 262_144),  # 3,221,225,472
]

# (conv, recurrent) state per layer, per sequence, independent of context
STATE_PER_LAYER = [
    # Gated DeltaNet: conv 3 x (2 x 16 x 128 + 32 x 128) x 2 B; recurrent 32 x 128 x 128 x 4 B
    (QWEN3_NEXT, "gated_deltanet", 3 * (2 * 16 * 128 + 32 * 128) * 2, 32 * 128 * 128 * 4),  # 49,152 + 2,097,152
    # Mamba-1: conv 3 x 8,192 x 2 B; SSM 8,192 x 16 x 4 B
    (FALCON_MAMBA, "mamba1", 3 * 8192 * 2, 8192 * 16 * 4),  # 49,152 + 524,288
    # Mamba2 (unchanged): conv 3 x (64 x 64 + 2 x 8 x 128) x 2 B; SSM 64 x 64 x 128 x 4 B
    (NANO, "mamba2", 3 * (64 * 64 + 2 * 8 * 128) * 2, 64 * 64 * 128 * 4),  # 36,864 + 2,097,152
]

STATE_PER_SEQUENCE = [
    (QWEN3_NEXT, 36 * (49_152 + 2_097_152)),  # 77,266,944
    (FALCON_MAMBA, 64 * (49_152 + 524_288)),  # 36,700,160
    (NANO, 49_082_368),  # unchanged: 23 x 2,134,016
    (NEMOTRON_3_ULTRA, 407_961_600),  # unchanged: 48 x (110,592 + 8,388,608)
    (GEMMA3, 0),
]

# Per GPU: KV heads shard over TP (one per GPU at least), MLA's latent does not, layers split over PP (ceil per kind).
PER_GPU = [
    # model, tp, pp, kv dtype, context, KV B/token/GPU, KV per sequence per GPU, state per sequence per GPU
    (GEMMA3, 2, 2, "bf16", 32_768, 26 * 4096 + 5 * 4096,  # 16 KV heads / TP 2 = 8: 2 x 8 x 128 x 2 = 4,096 B
     26 * 1024 * 4096 + 5 * 32_768 * 4096, 0),  # ceil(52 / 2) = 26 local, ceil(10 / 2) = 5 global
    (DSV3, 8, 1, "fp8", 32_768, 61 * 576, 61 * 576 * 32_768, 0),  # the latent is whole on each of the 8 GPUs
    (DSV3, 8, 2, "fp8", 1000, 31 * 576, 31 * 576 * 1000, 0),  # ceil(61 / 2) = 31 layers in the larger stage
    (QWEN3_NEXT, 4, 1, "fp8", 4096, 12 * 2 * 1 * 256, 12 * 2 * 256 * 4096,  # 2 KV heads / TP 4: 1 per GPU
     36 * 2_146_304 // 4),  # 19,316,736: state shards with the heads
    (FALCON_MAMBA, 2, 1, "fp8", 4096, 0, 0, 64 * 573_440 // 2),
]


def _ids(value):
    return getattr(value, "name", str(value))


@pytest.mark.parametrize(("model", "dtype", "expected"), KV_PER_TOKEN, ids=_ids)
def test_kv_bytes_per_token(model, dtype, expected):
    assert kv_cache_bytes_per_token(model, dtype) == expected


@pytest.mark.parametrize(("model", "context", "dtype", "expected"), KV_PER_SEQUENCE, ids=_ids)
def test_kv_bytes_per_sequence(model, context, dtype, expected):
    assert kv_cache_bytes_per_sequence(model, context, dtype) == expected


@pytest.mark.parametrize(("model", "form", "conv", "recurrent"), STATE_PER_LAYER, ids=_ids)
def test_state_per_layer(model, form, conv, recurrent):
    assert state_bytes_per_layer(model, form) == (conv, recurrent)


@pytest.mark.parametrize(("model", "expected"), STATE_PER_SEQUENCE, ids=_ids)
def test_state_per_sequence_is_independent_of_context(model, expected):
    assert mamba_state_bytes_per_sequence(model) == expected
    for context in (1, 4096, model.max_context):
        result = plan_fit(FitRequest(model, GPUS["b200"], 8, 1, "nvfp4", context, 1), with_alternatives=False)
        assert result.mamba_state_bytes_per_sequence == expected


@pytest.mark.parametrize(("model", "tp", "pp", "dtype", "context", "kv_token", "kv_sequence", "state"), PER_GPU,
                         ids=_ids)
def test_per_gpu(model, tp, pp, dtype, context, kv_token, kv_sequence, state):
    assert kv_bytes_per_token_per_gpu(model, dtype, tp, pp) == kv_token
    assert kv_bytes_per_sequence_per_gpu(model, context, dtype, tp, pp) == kv_sequence
    assert state_bytes_per_sequence_per_gpu(model, tp, pp) == state


def test_the_window_changes_the_verdict():
    """Gemma 3 27B, BF16 on one H100, 32,768 tokens x 8: windowed, 1.45 GiB of KV a sequence (fp8); counted as full
    attention on all 62 layers it would be 7.75 GiB, 62 GiB for 8, beyond the GPU."""
    result = plan_fit(FitRequest(GEMMA3, GPUS["h100"], 1, 1, "bf16", 32_768, 8))
    assert result.bytes_per_sequence_per_gpu == 52 * 1024 * 4096 + 10 * 32_768 * 4096  # 1,560,281,088
    assert result.fits, result.reasons
    assert any("52 sliding_window layers hold 1,024 tokens" in r for r in result.reasons)
    as_full = plan_fit(FitRequest(replace(GEMMA3, layer_kinds=(LayerKind("attention", 62),)), GPUS["h100"], 1, 1,
                                  "bf16", 32_768, 8), with_alternatives=False)
    assert as_full.bytes_per_sequence_per_gpu == 62 * 32_768 * 4096
    assert not as_full.fits


def test_mla_is_said_and_replicated():
    result = plan_fit(FitRequest(DSV3, GPUS["h200"], 8, 1, "fp8", 32_768, 16))
    assert result.kv_cache_bytes_per_token == result.kv_cache_bytes_per_token_per_gpu == 35_136
    assert any("512 + 64 = 576 values" in r and "8 TP GPU(s)" in r for r in result.reasons)
    assert not any("KV heads under TP" in r for r in result.reasons)


def test_state_forms_bound_tensor_parallel():
    assert tensor_parallel_problem(QWEN3_NEXT, 4) is None
    odd = replace(QWEN3_NEXT, gated_deltanet=replace(QWEN3_NEXT.gated_deltanet, num_v_heads=6))
    assert "Gated DeltaNet" in tensor_parallel_problem(odd, 4)


SPEC_BASE = {"name": "m", "total_params_b": 1.0, "active_params_b": 1.0, "hidden_size": 1024,
             "attention": {"num_heads": 8, "num_kv_heads": 8, "head_dim": 128}, "max_context": 4096}

BAD_SPECS = [
    # extra keys, the field the error names
    ({"layer_kinds": [{"kind": "sliding_window", "count": 4}]}, "layer_kinds.0.window"),
    ({"layer_kinds": [{"kind": "attention", "count": 4, "window": 128}]}, "layer_kinds.0.window"),
    ({"layer_kinds": [{"kind": "local", "count": 4}]}, "layer_kinds.0.kind"),
    ({"layer_kinds": [{"kind": "mla", "count": 4}]}, "mla"),
    ({"layer_kinds": [{"kind": "gated_deltanet", "count": 4}]}, "gated_deltanet"),
    ({"layer_kinds": [{"kind": "mamba1", "count": 4}]}, "mamba1"),
    ({"layer_kinds": [{"kind": "mamba2", "count": 4}]}, "mamba"),
    ({"layer_kinds": [{"kind": "attention", "count": 0}]}, "layer_kinds.0.count"),
    ({"layer_kinds": [], }, "layer_kinds"),
    ({"layers": {"attention": 4}, "layer_kinds": [{"kind": "attention", "count": 4}]}, "layers"),
    ({}, "layers"),
]


@pytest.mark.parametrize(("extra", "field"), BAD_SPECS, ids=lambda v: str(v)[:60])
def test_bad_layer_kinds_name_the_field(extra, field):
    with pytest.raises(PlanInputError) as err:
        model_from_spec({**SPEC_BASE, **extra}, source="spec.yaml")
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_layer_kind_counts_feed_the_layout():
    assert (GEMMA3.attention_layers, GEMMA3.mamba_layers) == (62, 0)
    assert (QWEN3_NEXT.attention_layers, QWEN3_NEXT.mamba_layers) == (12, 36)
    assert (FALCON_MAMBA.attention_layers, FALCON_MAMBA.mamba_layers) == (0, 64)
    # the specs before layer kinds derive them from the two counts
    assert NANO.kinds == (LayerKind("attention", 6), LayerKind("mamba2", 23))
