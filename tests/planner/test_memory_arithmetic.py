"""KV cache and Mamba state against values computed by hand from published configs (docs/sources.md#sister-models)."""

from pathlib import Path

import pytest

from planner.fit import (
    kv_cache_bytes_per_token,
    kv_heads_per_gpu,
    mamba_state_bytes_per_layer,
    mamba_state_bytes_per_sequence,
)
from planner.models import NEMOTRON_3_ULTRA, load_model

MODELS = Path(__file__).resolve().parents[2] / "models"
NANO = load_model(str(MODELS / "nemotron-3-nano-30b-a3b.yaml"))
SUPER = load_model(str(MODELS / "nemotron-3-super-120b.yaml"))
DENSE_70B = load_model(str(MODELS / "example-70b.yaml"))

# KV bytes/token = 2 (K and V) x attention layers x KV heads x head_dim x dtype bytes
KV_CASES = [
    # model, kv dtype, hand-computed
    (NANO, "bf16", 2 * 6 * 2 * 128 * 2),  # 6,144
    (NANO, "fp8", 2 * 6 * 2 * 128 * 1),  # 3,072
    (SUPER, "bf16", 2 * 8 * 2 * 128 * 2),  # 8,192
    (SUPER, "fp8", 4096),
    (NEMOTRON_3_ULTRA, "fp8", 6144),  # 2 x 12 x 2 x 128
    (NEMOTRON_3_ULTRA, "bf16", 12288),
    (DENSE_70B, "bf16", 2 * 80 * 8 * 128 * 2),  # 327,680: a dense model's cache is 27x Ultra's per token
]

# Mamba2 per layer: conv = (kernel-1) x (d_inner + 2 x groups x state) x 2 B; ssm = heads x head_dim x state x 4 B
MAMBA_CASES = [
    # model, conv bytes/layer, ssm bytes/layer, layers
    (NANO, 3 * (64 * 64 + 2 * 8 * 128) * 2, 64 * 64 * 128 * 4, 23),  # 36,864 + 2,097,152
    (SUPER, 3 * (128 * 64 + 2 * 8 * 128) * 2, 128 * 64 * 128 * 4, 40),  # 61,440 + 4,194,304
    (NEMOTRON_3_ULTRA, 110_592, 8_388_608, 48),
    (DENSE_70B, 0, 0, 0),
]


@pytest.mark.parametrize(("model", "dtype", "expected"), KV_CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_kv_cache_bytes_per_token(model, dtype, expected):
    assert kv_cache_bytes_per_token(model, dtype) == expected


@pytest.mark.parametrize(("model", "conv", "ssm", "layers"), MAMBA_CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_mamba_state(model, conv, ssm, layers):
    assert mamba_state_bytes_per_layer(model) == (conv, ssm)
    assert mamba_state_bytes_per_sequence(model) == layers * (conv + ssm)


def test_published_totals():
    assert mamba_state_bytes_per_sequence(NANO) == 49_082_368
    assert mamba_state_bytes_per_sequence(SUPER) == 170_229_760


@pytest.mark.parametrize(("kv_heads", "tp", "per_gpu"), [(2, 1, 2), (2, 2, 1), (2, 8, 1), (8, 4, 2), (8, 8, 1)])
def test_kv_heads_are_replicated_when_tp_exceeds_them(kv_heads, tp, per_gpu):
    model = DENSE_70B if kv_heads == 8 else NANO
    assert kv_heads_per_gpu(model, tp) == per_gpu


def test_per_gpu_kv_under_tp8_is_half_the_model_total_for_two_kv_heads():
    from planner.fit import FitRequest, plan_fit
    from planner.hardware import GPUS

    result = plan_fit(FitRequest(NEMOTRON_3_ULTRA, GPUS["h200"], 8, 1, "fp8", 8192, 1))
    # each of 8 GPUs keeps 1 of the 2 KV heads of all 12 attention layers: 2 x 12 x 1 x 128 x 1 B
    assert result.kv_cache_bytes_per_token_per_gpu == 3072
    assert result.mamba_state_bytes_per_sequence_per_gpu == 407_961_600 // 8
