"""Property: no configuration the planner calls fitting exceeds GPU memory at its context and concurrency."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.fit import FitRequest, plan_fit
from planner.hardware import GPUS
from planner.models import AttentionSpec, MambaSpec, ModelProfile, MoESpec

GIB = 2**30
BYTES = {"bf16": 2.0, "fp8": 1.0, "nvfp4": 0.5625}


@st.composite
def models(draw):
    kv_heads = draw(st.sampled_from([1, 2, 4, 8]))
    heads = kv_heads * draw(st.sampled_from([1, 2, 4, 8]))
    mamba_layers = draw(st.integers(0, 64))
    total = draw(st.floats(1, 800))
    return ModelProfile(
        name="generated",
        total_params_b=total,
        active_params_b=draw(st.floats(0.5, 1.0)) * total,
        attention_layers=draw(st.integers(1, 96)),
        mamba_layers=mamba_layers,
        hidden_size=4096,
        attention=AttentionSpec(heads, kv_heads, draw(st.sampled_from([64, 128]))),
        mamba=MambaSpec(draw(st.sampled_from([32, 64, 128, 256])), 64, 128, 8, 4) if mamba_layers else None,
        max_context=2_000_000,
        moe=draw(st.none() | st.just(MoESpec(128, 8))),
    )


@settings(max_examples=300, deadline=None)
@given(
    model=models(),
    gpu=st.sampled_from(sorted(GPUS)),
    gpus_per_node=st.sampled_from([1, 2, 4, 8]),
    nodes=st.integers(1, 4),
    precision=st.sampled_from(["bf16", "fp8", "nvfp4"]),
    context=st.integers(1, 1_000_000),
    concurrency=st.integers(1, 256),
    kv_dtype=st.sampled_from(["fp8", "bf16"]),
    utilization=st.floats(0.5, 0.95),
)
def test_a_fitting_plan_never_exceeds_memory(model, gpu, gpus_per_node, nodes, precision, context, concurrency,
                                             kv_dtype, utilization):
    g = GPUS[gpu]
    result = plan_fit(FitRequest(model, g, gpus_per_node, nodes, precision, context, concurrency, kv_dtype,
                                 utilization), with_alternatives=False)
    if not result.fits:
        return
    tp, pp, dp = result.tensor_parallel, result.pipeline_parallel, result.layout.data_parallel
    assert tp * pp * dp == gpus_per_node * nodes
    # recompute from first principles, independently of the planner's intermediate figures
    weights = model.total_params_b * 1e9 * BYTES[precision] / (tp * pp)
    kv_heads = max(1, model.attention.num_kv_heads // tp)
    kv_per_token = 2 * math.ceil(model.attention_layers / pp) * kv_heads * model.attention.head_dim * \
        (1 if kv_dtype == "fp8" else 2)
    mamba = 0
    if model.mamba:
        m = model.mamba
        per_layer = 3 * (m.num_heads * m.head_dim + 2 * m.n_groups * m.state_size) * 2 + \
            m.num_heads * m.head_dim * m.state_size * 4
        mamba = math.ceil(model.mamba_layers / pp) * per_layer / tp
    sequences = math.ceil(concurrency / dp)
    # runtime reserve: 2 GiB + activations at vLLM's default batched tokens (8,192 on GPUs of 70 GiB or more that
    # are not an A100, else 2,048) x hidden 4,096 x 2 B x 16; 3 GiB on Hopper and Blackwell
    tokens = 8192 if g.memory_gib >= 70 and "a100" not in g.name.lower() else 2048
    used = weights + 2.0 * GIB + tokens * 4096 * 2 * 16 + sequences * (context * kv_per_token + mamba)
    assert used <= g.memory_gib * GIB * utilization + 1  # rounding slack of a byte
    if g.unified_memory:
        assert used <= (g.memory_gib - 8.0) * GIB + 1
    assert result.max_concurrent_sequences >= concurrency
