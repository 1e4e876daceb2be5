"""Memory fit and parallel layout: can this model be served on these GPUs at this context and concurrency?

Per GPU, vLLM may use `gpu_memory_utilization` of the memory the driver reports. Out of that come the weights
(sharded over tensor x pipeline parallel ranks), a runtime reserve (activations at the batched-token budget, CUDA
graphs, NCCL buffers, the CUDA context) and, in what is left, the KV cache of the attention layers plus the Mamba2
state of each running sequence. A GB10 shares its memory with the operating system, so at least `os_reserve_gib`
stays outside vLLM there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from planner.errors import PlanInputError, one_of
from planner.hardware import GIB, GPUS, INSTANCE_TYPES, WEIGHT_ONLY_KERNELS, Gpu, InstanceType
from planner.models import (
    ATTENTION_FORMS,
    BYTES_PER_PARAM,
    CONV_STATE_BYTES,
    KV_CACHE_DTYPES,
    PRECISIONS,
    SSM_CACHE_BYTES,
    STATE_FORMS,
    WINDOWED_FORMS,
    LayerKind,
    ModelProfile,
)

DEFAULT_GPU_MEMORY_UTILIZATION = 0.90
# The runtime reserve per GPU (docs/sources.md#activation-reserve): a fixed part (CUDA context, NCCL buffers, CUDA
# graphs, allocator slack) plus activations proportional to the batched-token budget (--max-num-batched-tokens):
# tokens x hidden size x 2 B (bf16) x ACTIVATION_FACTOR hidden-widths live per token at the peak of one layer
# (4 for the residual stream, normed input, layer output and all-reduce buffer; 10 for the MoE/MLP working set:
# gate/up 2 x I, the activated I and the down-projection output, with I ~ 2.5 hidden-widths per token per GPU after
# expert and tensor sharding; 2 for the Mamba in-projection and scan chunks under TP). An estimate: vLLM measures the
# real figure at start-up. At vLLM's default 8,192 tokens and hidden 8,192: 2 GiB + 2 GiB = 4 GiB.
RUNTIME_FIXED_RESERVE_GIB = 2.0
ACTIVATION_FACTOR = 16
ACTIVATION_BYTES = 2  # activations are bf16
# vLLM's default --max-num-batched-tokens for `vllm serve` (UsageContext.OPENAI_API_SERVER), read in vLLM 0.33.0's
# vllm/engine/arg_utils.py (EngineArgs.get_batch_defaults): 16,384 on GPUs with at least 160 GiB (B200, B300), 8,192
# on GPUs with at least 70 GiB that are neither an A100 nor a GB10, else 2,048 (docs/sources.md#activation-reserve).
VLLM_DEFAULT_BATCHED_TOKENS_HUGE = 16384
VLLM_DEFAULT_BATCHED_TOKENS_LARGE = 8192
VLLM_DEFAULT_BATCHED_TOKENS_SMALL = 2048
VLLM_HUGE_GPU_GIB = 160
VLLM_LARGE_GPU_GIB = 70
# What DGX OS itself keeps in use on a GB10 (desktop, page cache floor); vLLM must leave at least this much.
OS_RESERVE_GIB = 8.0
THIN_MARGIN_GIB = 2.0
# One config copy of the model caps positions at 262,144; beyond it vLLM needs VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.
LONG_CONTEXT_THRESHOLD = 262_144


def vllm_default_max_num_batched_tokens(gpu: Gpu) -> int:
    """What `vllm serve` uses for --max-num-batched-tokens on this GPU when the flag is not given."""
    if gpu.memory_gib >= VLLM_HUGE_GPU_GIB:
        return VLLM_DEFAULT_BATCHED_TOKENS_HUGE
    if gpu.memory_gib >= VLLM_LARGE_GPU_GIB and "a100" not in gpu.name.lower() and gpu.key != "gb10":
        return VLLM_DEFAULT_BATCHED_TOKENS_LARGE
    return VLLM_DEFAULT_BATCHED_TOKENS_SMALL


def activation_bytes(model: ModelProfile, batched_tokens: int) -> int:
    """Activation memory per GPU at the peak of a forward pass over `batched_tokens` tokens."""
    return batched_tokens * model.hidden_size * ACTIVATION_BYTES * ACTIVATION_FACTOR


def runtime_reserve_bytes(model: ModelProfile, batched_tokens: int,
                          fixed_gib: float = RUNTIME_FIXED_RESERVE_GIB) -> float:
    """The runtime reserve per GPU: the fixed part plus activations at the batched-token budget."""
    return fixed_gib * GIB + activation_bytes(model, batched_tokens)


def layer_kv_bytes_per_token(model: ModelProfile, kind: LayerKind, kv_cache_dtype: str = "fp8", tp: int = 1) -> int:
    """KV cache bytes one token occupies in one layer of `kind` on one of `tp` GPUs (0 for a state form).

    Softmax attention (full, sliding-window, chunked) keeps K and V per KV head, the heads sharded over TP (one per
    GPU at least). MLA keeps one latent per token, kv_lora_rank + qk_rope_head_dim values, which vLLM does not
    shard: every TP rank holds all of it (docs/sources.md#model-forms).
    """
    dtype = KV_CACHE_DTYPES[kv_cache_dtype]
    if kind.form == "mla":
        return model.mla.cached_values * dtype
    if kind.form not in ATTENTION_FORMS:
        return 0
    heads = model.attention.num_kv_heads if tp == 1 else kv_heads_per_gpu(model, tp)
    return 2 * heads * model.attention.head_dim * dtype


def kv_cache_bytes_per_token(model: ModelProfile, kv_cache_dtype: str = "fp8") -> int:
    """KV cache bytes one token occupies across the whole model (attention layers only; state layers keep none).
    Sliding-window and chunked layers count here too: a token costs this much while it is inside every window."""
    return sum(k.count * layer_kv_bytes_per_token(model, k, kv_cache_dtype) for k in model.kinds)


def kv_cache_bytes_per_sequence(model: ModelProfile, context: int, kv_cache_dtype: str = "fp8") -> int:
    """KV cache of one sequence of `context` tokens: windowed layers hold at most their window."""
    return sum(k.count * k.cached_tokens(context) * layer_kv_bytes_per_token(model, k, kv_cache_dtype)
               for k in model.kinds)


def state_bytes_per_layer(model: ModelProfile, form: str) -> tuple[int, int]:
    """(conv state, recurrent state) bytes one sequence holds in one layer of a state form; independent of context.

    Mamba2: conv (kernel-1) x (d_inner + 2 x groups x state), SSM heads x head_dim x state. Mamba-1: conv
    (kernel-1) x d_inner, SSM d_inner x state. Gated DeltaNet: conv (kernel-1) x (2 x k_heads x head_k + v_heads x
    head_v), recurrent v_heads x head_k x head_v. Conv state at the model dtype (bf16), the recurrent one float32
    (--mamba-ssm-cache-dtype float32, which vLLM applies to all three).
    """
    if form == "mamba2" and model.mamba is not None:
        m = model.mamba
        conv = (m.conv_kernel - 1) * (m.d_inner + 2 * m.n_groups * m.state_size) * CONV_STATE_BYTES
        return conv, m.num_heads * m.head_dim * m.state_size * SSM_CACHE_BYTES
    if form == "mamba1" and model.mamba1 is not None:
        m1 = model.mamba1
        return ((m1.conv_kernel - 1) * m1.d_inner * CONV_STATE_BYTES,
                m1.d_inner * m1.state_size * SSM_CACHE_BYTES)
    if form == "gated_deltanet" and model.gated_deltanet is not None:
        d = model.gated_deltanet
        conv_dim = 2 * d.num_k_heads * d.head_k_dim + d.num_v_heads * d.head_v_dim
        return ((d.conv_kernel - 1) * conv_dim * CONV_STATE_BYTES,
                d.num_v_heads * d.head_k_dim * d.head_v_dim * SSM_CACHE_BYTES)
    return 0, 0


def mamba_state_bytes_per_layer(model: ModelProfile) -> tuple[int, int]:
    """(conv state, SSM state) bytes one sequence holds in one Mamba2 layer; independent of context length."""
    if model.mamba is None or model.mamba_layers == 0:
        return 0, 0
    return state_bytes_per_layer(model, "mamba2")


def mamba_state_bytes_per_sequence(model: ModelProfile) -> int:
    """The fixed state one sequence holds across all state layers (Mamba2, Mamba-1, Gated DeltaNet)."""
    return sum(k.count * sum(state_bytes_per_layer(model, k.form)) for k in model.kinds if k.form in STATE_FORMS)


def kv_bytes_per_token_per_gpu(model: ModelProfile, kv_cache_dtype: str, tp: int, pp: int) -> int:
    """KV bytes one token occupies on one GPU of the largest pipeline stage (ceil of each kind's layers / PP)."""
    return sum(math.ceil(k.count / pp) * layer_kv_bytes_per_token(model, k, kv_cache_dtype, tp) for k in model.kinds)


def kv_bytes_per_sequence_per_gpu(model: ModelProfile, context: int, kv_cache_dtype: str, tp: int, pp: int) -> int:
    """KV bytes one sequence of `context` tokens occupies on one GPU; windowed layers hold at most their window."""
    return sum(math.ceil(k.count / pp) * k.cached_tokens(context) *
               layer_kv_bytes_per_token(model, k, kv_cache_dtype, tp) for k in model.kinds)


def state_bytes_per_sequence_per_gpu(model: ModelProfile, tp: int, pp: int) -> int:
    """Fixed state one sequence holds on one GPU: each state kind's stage layers, sharded over TP."""
    return sum(math.ceil(math.ceil(k.count / pp) * sum(state_bytes_per_layer(model, k.form)) / tp)
               for k in model.kinds if k.form in STATE_FORMS)


def kv_heads_per_gpu(model: ModelProfile, tensor_parallel: int) -> int:
    """KV heads each GPU holds: shards when there are enough, otherwise every GPU keeps one (replication)."""
    return max(1, model.attention.num_kv_heads // tensor_parallel)


def tensor_parallel_problem(model: ModelProfile, tp: int) -> str | None:
    """Why `tp` cannot shard this model, or None when it can."""
    a = model.attention
    if tp < 1:
        return "at least 1"
    if a.num_heads % tp:
        return f"a divisor of the model's {a.num_heads} attention heads"
    if a.num_kv_heads % tp and tp % a.num_kv_heads:
        return f"a divisor or multiple of the model's {a.num_kv_heads} KV heads"
    if model.mamba and model.mamba_layers and model.mamba.num_heads % tp:
        return f"a divisor of the model's {model.mamba.num_heads} Mamba heads"
    forms = {k.form for k in model.kinds}
    d = model.gated_deltanet
    if d is not None and "gated_deltanet" in forms and (d.num_k_heads % tp or d.num_v_heads % tp):
        return f"a divisor of the model's {d.num_k_heads} Gated DeltaNet key heads and {d.num_v_heads} value heads"
    if model.mamba1 is not None and "mamba1" in forms and model.mamba1.d_inner % tp:
        return f"a divisor of the model's Mamba-1 d_inner {model.mamba1.d_inner}"
    return None


@dataclass(frozen=True)
class Layout:
    """How the model is split over the GPUs: tensor parallel inside a stage, pipeline stages, data-parallel replicas."""

    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    expert_parallel: bool
    nodes: int
    gpus_per_node: int

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def tensor_parallel_spans_nodes(self) -> bool:
        return self.tensor_parallel > self.gpus_per_node

    def describe(self) -> str:
        parts = [f"TP {self.tensor_parallel}", f"PP {self.pipeline_parallel}"]
        if self.data_parallel > 1:
            parts.append(f"DP {self.data_parallel}")
        if self.expert_parallel:
            parts.append("EP")
        return " x ".join(parts[:2]) + "".join(f" + {p}" for p in parts[2:]) + \
            f" on {self.nodes} node(s) x {self.gpus_per_node} GPU(s)"


def choose_layout(model: ModelProfile, gpus_per_node: int, nodes: int,
                  tensor_parallel: int | None = None, pipeline_parallel: int | None = None) -> Layout:
    """The parallel layout for a cluster: TP inside a node, PP across nodes; one-GPU nodes (DGX Spark) run TP
    across nodes when the node count divides the heads, otherwise one pipeline stage per node (3 Sparks -> PP 3)."""
    total = gpus_per_node * nodes
    if tensor_parallel is not None:
        problem = tensor_parallel_problem(model, tensor_parallel)
        if problem:
            raise PlanInputError("tensor_parallel", tensor_parallel, problem)
        if total % tensor_parallel:
            raise PlanInputError("tensor_parallel", tensor_parallel, f"a divisor of the {total} GPUs in the cluster")
    if pipeline_parallel is not None and (pipeline_parallel < 1 or total % pipeline_parallel):
        raise PlanInputError("pipeline_parallel", pipeline_parallel, f"a divisor of the {total} GPUs in the cluster")

    if tensor_parallel is None and pipeline_parallel is None:
        if gpus_per_node > 1:
            tp = max(t for t in range(1, gpus_per_node + 1) if gpus_per_node % t == 0
                     and tensor_parallel_problem(model, t) is None)
            pp = nodes
        elif tensor_parallel_problem(model, nodes) is None:
            tp, pp = nodes, 1
        else:
            tp, pp = 1, nodes
    elif tensor_parallel is None:
        pp = pipeline_parallel
        tp = max(t for t in range(1, total // pp + 1) if (total // pp) % t == 0
                 and tensor_parallel_problem(model, t) is None)
    elif pipeline_parallel is None:
        tp = tensor_parallel
        pp = nodes if tp <= gpus_per_node and gpus_per_node % tp == 0 else total // tp
    else:
        tp, pp = tensor_parallel, pipeline_parallel
    layers = model.attention_layers + model.mamba_layers
    if pipeline_parallel is None:
        # never more stages than layers; the GPUs left over serve as data-parallel replicas
        pp = max(d for d in range(1, min(pp, max(1, layers)) + 1) if (total // tp) % d == 0)
    if total % (tp * pp):
        raise PlanInputError("pipeline_parallel", pp, f"a size with TP {tp} x PP dividing the {total} GPUs")
    if pp > max(1, layers):
        raise PlanInputError("pipeline_parallel", pp, f"at most the model's {layers} layers")
    dp = total // (tp * pp)
    return Layout(tp, pp, dp, expert_parallel=model.moe is not None and tp * dp > 1,
                  nodes=nodes, gpus_per_node=gpus_per_node)


@dataclass(frozen=True)
class FitRequest:
    """One question to the planner: this model, these GPUs, this precision, context and concurrency."""

    model: ModelProfile
    gpu: Gpu
    gpus_per_node: int
    nodes: int
    precision: str
    context: int
    concurrency: int
    kv_cache_dtype: str = "fp8"
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    # None: the modelled reserve (fixed part + activations at the batched-token budget); a number overrides it
    runtime_reserve_gib: float | None = None
    os_reserve_gib: float = OS_RESERVE_GIB
    max_num_batched_tokens: int | None = None  # None: vLLM's default for this GPU

    @property
    def batched_tokens(self) -> int:
        """The batched-token budget vLLM runs with: the one asked for, else vLLM's default for the GPU."""
        return self.max_num_batched_tokens or vllm_default_max_num_batched_tokens(self.gpu)

    def validate(self) -> None:
        """Raise PlanInputError for input no arithmetic can answer (as opposed to a plan that does not fit)."""
        for name in ("gpus_per_node", "nodes", "context", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PlanInputError(name, value, "a whole number >= 1")
        if self.precision not in PRECISIONS:
            raise PlanInputError("precision", self.precision, one_of(PRECISIONS))
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise PlanInputError("kv_cache_dtype", self.kv_cache_dtype, one_of(KV_CACHE_DTYPES))
        if not 0.1 <= self.gpu_memory_utilization <= 0.98:
            raise PlanInputError("gpu_memory_utilization", self.gpu_memory_utilization, "a fraction from 0.1 to 0.98")
        if self.context > self.model.max_context:
            raise PlanInputError("context", self.context, f"at most the model's max context {self.model.max_context}")
        if (self.runtime_reserve_gib is not None and self.runtime_reserve_gib < 0) or self.os_reserve_gib < 0:
            raise PlanInputError("runtime_reserve_gib", self.runtime_reserve_gib, "a size >= 0")
        if self.max_num_batched_tokens is not None:
            value = self.max_num_batched_tokens
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PlanInputError("max_num_batched_tokens", value, "a whole number >= 1")
            if value < self.concurrency:
                # vLLM's SchedulerConfig refuses a token budget below max_num_seqs
                raise PlanInputError("max_num_batched_tokens", value,
                                     f"at least the concurrency ({self.concurrency}): vLLM refuses fewer batched "
                                     "tokens than sequences")


@dataclass(frozen=True)
class FitResult:
    """The verdict, the numbers behind it and the reasons a person reads."""

    request: FitRequest
    layout: Layout
    fits: bool
    weights_gib: float
    weights_per_gpu_gib: float
    per_gpu_budget_gib: float  # what vLLM may use for weights and cache, after the runtime reserve
    per_gpu_free_gib: float  # left for KV cache and Mamba state after the weights
    kv_cache_bytes_per_token: int  # whole model
    kv_cache_bytes_per_token_per_gpu: int
    mamba_state_bytes_per_sequence: int  # whole model
    mamba_state_bytes_per_sequence_per_gpu: int
    bytes_per_sequence_per_gpu: int  # at the requested context
    max_concurrent_sequences: int  # at the requested context, whole deployment
    margin_gib: float  # per GPU, after the requested concurrency at the requested context
    reasons: tuple[str, ...]
    max_num_batched_tokens: int = 0  # the batched-token budget the reserve was computed for
    runtime_reserve_gib: float = 0.0  # per GPU: fixed part + activations at that budget
    warnings: tuple[str, ...] = ()
    alternatives: tuple[Alternative, ...] = field(default=())

    @property
    def tensor_parallel(self) -> int:
        return self.layout.tensor_parallel

    @property
    def pipeline_parallel(self) -> int:
        return self.layout.pipeline_parallel

    def to_json(self) -> dict:
        r = self.request
        return {
            "model": r.model.name,
            "gpu": r.gpu.key,
            "gpus_per_node": r.gpus_per_node,
            "nodes": r.nodes,
            "precision": r.precision,
            "context": r.context,
            "concurrency": r.concurrency,
            "kv_cache_dtype": r.kv_cache_dtype,
            "gpu_memory_utilization": r.gpu_memory_utilization,
            "fits": self.fits,
            "weights_gib": round(self.weights_gib, 2),
            "weights_per_gpu_gib": round(self.weights_per_gpu_gib, 2),
            "per_gpu_memory_gib": r.gpu.memory_gib,
            "per_gpu_budget_gib": round(self.per_gpu_budget_gib, 2),
            "per_gpu_free_gib": round(self.per_gpu_free_gib, 2),
            "kv_cache_bytes_per_token": self.kv_cache_bytes_per_token,
            "kv_cache_bytes_per_token_per_gpu": self.kv_cache_bytes_per_token_per_gpu,
            "mamba_state_bytes_per_sequence": self.mamba_state_bytes_per_sequence,
            "mamba_state_bytes_per_sequence_per_gpu": self.mamba_state_bytes_per_sequence_per_gpu,
            "bytes_per_sequence_per_gpu": self.bytes_per_sequence_per_gpu,
            "max_concurrent_sequences": self.max_concurrent_sequences,
            "margin_gib": round(self.margin_gib, 2),
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "runtime_reserve_gib": round(self.runtime_reserve_gib, 2),
            "tensor_parallel": self.layout.tensor_parallel,
            "pipeline_parallel": self.layout.pipeline_parallel,
            "data_parallel": self.layout.data_parallel,
            "expert_parallel": self.layout.expert_parallel,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "alternatives": [a.to_json() for a in self.alternatives],
        }


def _gib(n: float) -> str:
    return f"{n / GIB:,.1f} GiB"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _window_words(model: ModelProfile, context: int) -> str:
    """How windowed layers cap the cache, for the per-sequence reason ("" for a model without them)."""
    capped = [k for k in model.kinds if k.form in WINDOWED_FORMS and k.window < context]
    return "".join(f"; {k.count} {k.form} layers hold {k.window:,} tokens" for k in capped)


def _state_words(model: ModelProfile) -> str:
    forms = {k.form for k in model.kinds if k.form in STATE_FORMS}
    return "Mamba state" if forms <= {"mamba2"} else "recurrent state (" + ", ".join(sorted(forms)) + ")"


def layer_kind_reasons(model: ModelProfile, context: int, tp: int) -> list[str]:
    """What a model's layer forms do to its cache, in words; nothing for the full-attention + Mamba2 specs."""
    reasons = [f"note: {n}" for n in model.notes]
    if not model.layer_kinds:
        return reasons
    reasons.append("layers: " + ", ".join(
        f"{k.count} {k.form}" + (f" (window {k.window:,})" if k.window else "") for k in model.kinds))
    if model.mla is not None and any(k.form == "mla" for k in model.kinds):
        reasons.append(f"MLA caches {model.mla.kv_lora_rank} + {model.mla.qk_rope_head_dim} = "
                       f"{model.mla.cached_values} values per token per layer (latent + rope key), not K and V per "
                       f"head; vLLM keeps the whole latent on each of the {tp} TP GPU(s)")
    return reasons


def plan_fit(req: FitRequest, with_alternatives: bool = True) -> FitResult:
    """Decide whether `req` can be served, and explain the decision in numbers."""
    req.validate()
    model, gpu = req.model, req.gpu
    layout = choose_layout(model, req.gpus_per_node, req.nodes, req.tensor_parallel, req.pipeline_parallel)
    tp, pp, dp = layout.tensor_parallel, layout.pipeline_parallel, layout.data_parallel
    reasons: list[str] = []
    warnings: list[str] = []

    weights = model.weights_bytes(req.precision)
    weights_per_gpu = weights / (tp * pp)
    checkpoint = model.checkpoints.get(req.precision)
    if checkpoint is not None and checkpoint.size_gb:
        reasons.append(
            f"weights: {checkpoint.repo} is {checkpoint.size_gb:,.1f} GB as published = {_gib(weights)} "
            f"({checkpoint.layout_note or req.precision}); per GPU over TP {tp} x PP {pp} = {_gib(weights_per_gpu)}")
    elif model.bf16_params_b(req.precision):
        wide = model.bf16_params_b(req.precision)
        reasons.append(
            f"weights: {model.total_params_b - wide:g}B params x {BYTES_PER_PARAM[req.precision]:g} B "
            f"({req.precision}) + {wide:g}B kept in BF16 x 2 B = {_gib(weights)}; per GPU over TP {tp} x PP {pp} = "
            f"{_gib(weights_per_gpu)}")
    else:
        reasons.append(
            f"weights: {model.total_params_b:g}B params x {BYTES_PER_PARAM[req.precision]:g} B ({req.precision}) = "
            f"{_gib(weights)}; per GPU over TP {tp} x PP {pp} = {_gib(weights_per_gpu)}")

    memory = gpu.memory_gib * GIB
    budget = memory * req.gpu_memory_utilization
    budget_text = f"{gpu.memory_gib:g} GiB x gpu_memory_utilization {req.gpu_memory_utilization:g}"
    if gpu.unified_memory:
        os_cap = memory - req.os_reserve_gib * GIB
        if os_cap < budget:
            budget = os_cap
            budget_text = f"{gpu.memory_gib:g} GiB unified - {req.os_reserve_gib:g} GiB kept for the OS"
        else:
            budget_text += f" (leaves {_gib(memory - budget)} to the OS, >= {req.os_reserve_gib:g} GiB)"
    tokens = req.batched_tokens
    if req.runtime_reserve_gib is None:
        reserve = runtime_reserve_bytes(model, tokens)
        reserve_text = (f"{_gib(reserve)} runtime reserve ({RUNTIME_FIXED_RESERVE_GIB:g} GiB fixed + {tokens:,} "
                        f"batched tokens x hidden {model.hidden_size:,} x {ACTIVATION_BYTES} B x {ACTIVATION_FACTOR} "
                        f"= {_gib(activation_bytes(model, tokens))} activations)")
    else:
        reserve = req.runtime_reserve_gib * GIB
        reserve_text = f"{req.runtime_reserve_gib:g} GiB runtime reserve (as given)"
    usable = budget - reserve
    free = usable - weights_per_gpu
    reasons.append(f"per-GPU budget: {budget_text} = {_gib(budget)}, minus {reserve_text} = {_gib(usable)}")

    kv_total = kv_cache_bytes_per_token(model, req.kv_cache_dtype)
    kv_per_gpu = kv_bytes_per_token_per_gpu(model, req.kv_cache_dtype, tp, pp)
    kv_sequence_per_gpu = kv_bytes_per_sequence_per_gpu(model, req.context, req.kv_cache_dtype, tp, pp)
    mamba_total = mamba_state_bytes_per_sequence(model)
    mamba_per_gpu = state_bytes_per_sequence_per_gpu(model, tp, pp)
    per_sequence = kv_sequence_per_gpu + mamba_per_gpu
    if model.attention.num_kv_heads < tp and any(k.form in ATTENTION_FORMS and k.form != "mla" for k in model.kinds):
        reasons.append(f"{model.attention.num_kv_heads} KV heads under TP {tp}: each GPU keeps 1 "
                       f"(replicated {tp // model.attention.num_kv_heads}x)")
    reasons.extend(layer_kind_reasons(model, req.context, tp))

    fits = True
    if not gpu.serves(req.precision):
        fits = False
        able = [g.key for g in GPUS.values() if g.serves(req.precision)]
        needs = f"a GPU with vLLM kernels for them ({', '.join(able)})" if able else "kernels no listed GPU has"
        reasons.append(f"{req.precision} weights need {needs}; {gpu.key} runs "
                       f"{one_of(gpu.precisions + tuple(p for p, _ in gpu.weight_only))}")
    elif req.precision not in gpu.precisions:
        compute = gpu.compute_precision(req.precision)
        kernels = WEIGHT_ONLY_KERNELS.get(req.precision, "weight-only kernels")
        reasons.append(f"{req.precision} on {gpu.key}: no native {req.precision} math; vLLM keeps the weights at "
                       f"{req.precision} in memory and computes in {compute} (weight-only, {kernels})")
        warnings.append(f"{req.precision} on {gpu.key} is weight-only: memory as {req.precision}, compute as "
                        f"{compute}; decode speed follows the smaller weights, prefill runs at {compute} speed")
    if free <= 0:
        fits = False
        max_seqs_per_replica = 0
        reasons.append(f"does not fit: weights per GPU {_gib(weights_per_gpu)} exceed the {_gib(usable)} budget "
                       f"by {_gib(-free)}")
    else:
        max_seqs_per_replica = int(free // per_sequence) if per_sequence else 10**9
        reasons.append(f"free for KV cache and Mamba state: {_gib(free)} per GPU")
        reasons.append(
            f"one sequence at {req.context:,} tokens needs {_mib(kv_sequence_per_gpu)} KV "
            f"({kv_per_gpu:,} B/token/GPU, {req.kv_cache_dtype}{_window_words(model, req.context)}) + "
            f"{_mib(mamba_per_gpu)} {_state_words(model)} = {_mib(per_sequence)} per GPU")
    max_concurrent = max_seqs_per_replica * dp
    needed_per_replica = math.ceil(req.concurrency / dp)
    margin = free - needed_per_replica * per_sequence
    if free > 0:
        if max_concurrent >= req.concurrency:
            reasons.append(f"at most {max_concurrent:,} concurrent sequences at {req.context:,} tokens; "
                           f"{req.concurrency:,} requested: fits with {_gib(margin)} per GPU to spare")
        else:
            fits = False
            reasons.append(f"at most {max_concurrent:,} concurrent sequences at {req.context:,} tokens; "
                           f"{req.concurrency:,} requested: does not fit (short by {_gib(-margin)} per GPU)")

    if fits and margin < THIN_MARGIN_GIB * GIB:
        warnings.append(f"thin margin: {_gib(margin)} per GPU; activation spikes or an uneven layer split may "
                        "fail the load; lower concurrency or context for headroom")
    if pp > 1:
        warnings.append(f"PP {pp}: this estimate splits the layers evenly over the stages; embeddings and the "
                        "LM head add to the first and last stage")
    if layout.tensor_parallel_spans_nodes:
        warnings.append(f"TP {tp} spans {layout.nodes} nodes: every layer crosses the node link; "
                        "it must be RoCE/RDMA (NCCL via NET/IB), never the TCP socket fallback")
    if req.context > LONG_CONTEXT_THRESHOLD:
        warnings.append(f"context {req.context:,} exceeds 262,144 positions of one published config: "
                        "vLLM is started with VLLM_ALLOW_LONG_MAX_MODEL_LEN=1")

    result = FitResult(
        request=req, layout=layout, fits=fits,
        weights_gib=weights / GIB, weights_per_gpu_gib=weights_per_gpu / GIB,
        per_gpu_budget_gib=usable / GIB, per_gpu_free_gib=free / GIB,
        kv_cache_bytes_per_token=kv_total, kv_cache_bytes_per_token_per_gpu=kv_per_gpu,
        mamba_state_bytes_per_sequence=mamba_total, mamba_state_bytes_per_sequence_per_gpu=mamba_per_gpu,
        bytes_per_sequence_per_gpu=per_sequence, max_concurrent_sequences=max_concurrent,
        margin_gib=margin / GIB, reasons=tuple(reasons), warnings=tuple(warnings),
        max_num_batched_tokens=tokens, runtime_reserve_gib=reserve / GIB,
    )
    if not fits and with_alternatives:
        result = replace(result, alternatives=tuple(alternatives(req)))
    return result


@dataclass(frozen=True)
class Alternative:
    """A configuration that does fit, offered when the requested one does not."""

    instance_type: str
    gpu: str
    nodes: int
    gpus_per_node: int
    precision: str
    tensor_parallel: int
    pipeline_parallel: int
    max_concurrent_sequences: int
    margin_gib: float
    usd_per_hour: float | None
    capex_usd: float | None

    def describe(self) -> str:
        cost = f"${self.usd_per_hour:,.2f}/h" if self.usd_per_hour is not None else (
            f"${self.capex_usd:,.0f} to buy" if self.capex_usd is not None else "price n/a")
        return (f"{self.nodes}x {self.instance_type} ({self.nodes * self.gpus_per_node}x {self.gpu}) "
                f"{self.precision}, TP {self.tensor_parallel} x PP {self.pipeline_parallel}: "
                f"up to {self.max_concurrent_sequences} sequences, {cost}")

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# Offered as alternatives for any model; the other precisions only where the model has a checkpoint at them.
ALTERNATIVE_PRECISIONS = ("bf16", "fp8", "nvfp4")


def _candidate_types(req: FitRequest) -> list[InstanceType]:
    if req.gpu.unified_memory:
        return [i for i in INSTANCE_TYPES.values() if i.platform == "spark"]
    return [i for i in INSTANCE_TYPES.values() if i.platform == "ec2" and i.usd_per_hour is not None]


def alternatives(req: FitRequest, limit: int = 5, max_nodes: int = 4) -> list[Alternative]:
    """The cheapest configurations that fit the same context and concurrency: another precision, more nodes or
    another GPU. For each (instance type, precision) only the fewest nodes that fit is kept. Several servers of
    PCIe-only GPUs (L40S, L4, A10G) are not offered: memory would fit, but the tensor-parallel traffic of every step
    crosses PCIe inside each server, which this memory arithmetic cannot see (`fit --gpu` still answers for them)."""
    found: list[Alternative] = []
    for itype in _candidate_types(req):
        g = GPUS[itype.gpu]
        for precision in PRECISIONS:
            if not g.serves(precision) or (precision not in ALTERNATIVE_PRECISIONS
                                           and precision not in req.model.checkpoints):
                continue
            most = 8 if g.unified_memory else (max_nodes if g.nvlink else 1)
            for nodes in range(1, most + 1):
                candidate = replace(req, gpu=g, gpus_per_node=itype.gpus, nodes=nodes, precision=precision,
                                    tensor_parallel=None, pipeline_parallel=None)
                try:
                    fit = plan_fit(candidate, with_alternatives=False)
                except PlanInputError:
                    continue
                if fit.fits:
                    found.append(Alternative(
                        itype.name, g.key, nodes, itype.gpus, precision, fit.layout.tensor_parallel,
                        fit.layout.pipeline_parallel, fit.max_concurrent_sequences, round(fit.margin_gib, 1),
                        None if itype.usd_per_hour is None else round(itype.usd_per_hour * nodes, 2),
                        None if itype.capex_usd is None else itype.capex_usd * nodes))
                    break
    precision_rank = {p: i for i, p in enumerate(PRECISIONS)}
    found.sort(key=lambda a: (a.usd_per_hour if a.usd_per_hour is not None else (a.capex_usd or 0.0),
                              a.nodes, precision_rank[a.precision]))
    return found[:limit]
