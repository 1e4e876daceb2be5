"""A Hugging Face config.json as a model profile: `python -m planner fit --model path/to/config.json`.

config.json says the shapes (layers, heads, experts, windows, latent ranks, Mamba mixers) and, for a quantized release,
the weight format (`quantization_config`); it does not say the parameter count. The count is computed here from the
shapes (embeddings, attention, MLP or experts, norms, and for Gemma 3 the SigLIP vision tower), and every verdict says
so in a note. Layers a serving engine does not load by default (DeepSeek's MTP module) are not counted.

Supported, by `architectures` (or `model_type` where `architectures` is absent): see SUPPORTED.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from planner.errors import PlanInputError, one_of
from planner.models import (
    AttentionSpec,
    Checkpoint,
    LayerKind,
    MambaSpec,
    MLASpec,
    ModelProfile,
    MoESpec,
    load_model,
    with_layer_kinds,
)


@dataclass(frozen=True)
class Counts:
    """Parameters of one architecture, from its shapes."""

    total: int
    active: int  # per token: the routed experts' top-k share, not all experts
    embeddings: int  # embeddings, LM head and norms: what quantized releases keep wide
    experts: int  # routed-expert weights (what MXFP4 releases quantize; attention stays wide)


class _Config:
    """config.json fields, read with the field named in any error."""

    def __init__(self, data: dict, source: str, prefix: str = ""):
        self.data, self.source, self.prefix = data, source, prefix

    def whole(self, key: str, default: int | None = None) -> int:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise PlanInputError(self.prefix + key, None, "a value (required key is missing)", self.source)
            value = default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PlanInputError(self.prefix + key, value, "a whole number >= 0", self.source)
        return value

    def get(self, key: str, default=None):
        value = self.data.get(key)
        return default if value is None else value


def _gqa(h: int, heads: int, kv: int, hd: int, qkv_bias: bool = False, o_bias: bool = False,
         qk_norm: bool = False) -> int:
    """q, k, v, o projections of grouped-query attention (+ biases, + per-head q/k RMSNorm)."""
    params = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    params += (heads * hd + 2 * kv * hd) if qkv_bias else 0
    params += h if o_bias else 0
    return params + (2 * hd if qk_norm else 0)


def _glu(h: int, inner: int) -> int:
    """A gated MLP (gate, up, down)."""
    return 3 * h * inner


def _embeddings(c: _Config, h: int, tied_default: bool = False) -> int:
    """Input embeddings, the LM head unless tied, and the final norm."""
    vocab = c.whole("vocab_size")
    tied = bool(c.get("tie_word_embeddings", tied_default))
    return vocab * h * (1 if tied else 2) + h


def _llama_like(c: _Config, qk_norm: bool) -> tuple[Counts, dict]:
    h, layers, heads = c.whole("hidden_size"), c.whole("num_hidden_layers"), c.whole("num_attention_heads")
    kv = c.whole("num_key_value_heads", heads)
    hd = c.whole("head_dim", h // heads)
    bias = bool(c.get("attention_bias", False))
    per_layer = _gqa(h, heads, kv, hd, bias, bias, qk_norm) + _glu(h, c.whole("intermediate_size")) + 2 * h
    embeddings = _embeddings(c, h)
    total = layers * per_layer + embeddings
    return Counts(total, total, embeddings, 0), {
        "attention": AttentionSpec(heads, kv, hd), "kinds": _softmax_kinds(c, layers)}


def _softmax_kinds(c: _Config, layers: int) -> tuple[LayerKind, ...]:
    """All layers full attention, or all sliding-window when the config turns a window on (Mistral-style)."""
    window = c.get("sliding_window")
    if window and c.get("use_sliding_window", True):
        return (LayerKind("sliding_window", layers, int(window)),)
    return (LayerKind("attention", layers),)


def _llama(c: _Config) -> tuple[Counts, dict]:
    return _llama_like(c, qk_norm=False)


def _qwen3(c: _Config) -> tuple[Counts, dict]:
    return _llama_like(c, qk_norm=True)


def _moe_layers(c: _Config, h: int, layers: int, attention: int, experts: int, top_k: int, expert: int,
                dense: int, dense_layers: set[int], shared: int = 0, router_bias: bool = False,
                norms: int = 2) -> Counts:
    """Sum of `layers` decoder layers: attention, then a dense MLP on `dense_layers` or routed experts elsewhere."""
    total = active = expert_total = 0
    router = h * experts + (experts if router_bias else 0)
    for i in range(layers):
        base = attention + norms * h
        if i in dense_layers:
            total, active = total + base + dense, active + base + dense
        else:
            total += base + router + experts * expert + shared
            active += base + router + top_k * expert + shared
            expert_total += experts * expert
    embeddings = _embeddings(c, h)
    return Counts(total + embeddings, active + embeddings, embeddings, expert_total)


def _qwen3_moe(c: _Config) -> tuple[Counts, dict]:
    h, layers, heads = c.whole("hidden_size"), c.whole("num_hidden_layers"), c.whole("num_attention_heads")
    kv, hd = c.whole("num_key_value_heads", heads), c.whole("head_dim", h // heads)
    experts, top_k = c.whole("num_experts"), c.whole("num_experts_per_tok")
    step = c.whole("decoder_sparse_step", 1) or 1
    dense = set(c.get("mlp_only_layers", [])) | {i for i in range(layers) if (i + 1) % step}
    counts = _moe_layers(c, h, layers, _gqa(h, heads, kv, hd, qk_norm=True), experts, top_k,
                         _glu(h, c.whole("moe_intermediate_size")), _glu(h, c.whole("intermediate_size", 0)), dense)
    return counts, {"attention": AttentionSpec(heads, kv, hd), "kinds": _softmax_kinds(c, layers),
                    "moe": MoESpec(experts, top_k)}


def _mixtral(c: _Config) -> tuple[Counts, dict]:
    h, layers, heads = c.whole("hidden_size"), c.whole("num_hidden_layers"), c.whole("num_attention_heads")
    kv, hd = c.whole("num_key_value_heads", heads), c.whole("head_dim", h // heads)
    experts, top_k = c.whole("num_local_experts"), c.whole("num_experts_per_tok")
    counts = _moe_layers(c, h, layers, _gqa(h, heads, kv, hd), experts, top_k,
                         _glu(h, c.whole("intermediate_size")), 0, set())
    return counts, {"attention": AttentionSpec(heads, kv, hd), "kinds": _softmax_kinds(c, layers),
                    "moe": MoESpec(experts, top_k)}


def _deepseek_v3(c: _Config) -> tuple[Counts, dict]:
    h, layers, heads = c.whole("hidden_size"), c.whole("num_hidden_layers"), c.whole("num_attention_heads")
    q_lora, kv_lora = c.get("q_lora_rank"), c.whole("kv_lora_rank")
    nope, rope, v = c.whole("qk_nope_head_dim"), c.whole("qk_rope_head_dim"), c.whole("v_head_dim")
    q = (h * q_lora + q_lora + q_lora * heads * (nope + rope)) if q_lora else h * heads * (nope + rope)
    attention = q + h * (kv_lora + rope) + kv_lora + kv_lora * heads * (nope + v) + heads * v * h
    experts, top_k = c.whole("n_routed_experts"), c.whole("num_experts_per_tok")
    expert = _glu(h, c.whole("moe_intermediate_size"))
    dense_layers = set(range(c.whole("first_k_dense_replace", 0)))
    step = c.whole("moe_layer_freq", 1) or 1
    dense_layers |= {i for i in range(layers) if i % step}
    counts = _moe_layers(c, h, layers, attention, experts, top_k, expert, _glu(h, c.whole("intermediate_size")),
                         dense_layers, shared=c.whole("n_shared_experts", 0) * expert,
                         router_bias=c.get("topk_method") == "noaux_tc")
    notes = []
    if c.get("num_nextn_predict_layers"):
        notes.append(f"the {c.get('num_nextn_predict_layers')} MTP layer(s) in the checkpoint are not counted "
                     "(loaded only for speculative decoding)")
    return counts, {"attention": AttentionSpec(heads, heads, nope + rope), "mla": MLASpec(kv_lora, rope),
                    "kinds": (LayerKind("mla", layers),), "moe": MoESpec(experts, top_k), "notes": notes}


# Gemma 3's text defaults (transformers' Gemma3TextConfig): its published config.json leaves some of them out.
GEMMA3_DEFAULTS = {"vocab_size": 262_208, "head_dim": 256, "sliding_window": 4096, "sliding_window_pattern": 6,
                   "max_position_embeddings": 131_072, "tie_word_embeddings": True, "num_key_value_heads": 4}


def _siglip(v: _Config, text_hidden: int) -> int:
    """The SigLIP vision tower and Gemma 3's projector into the text model."""
    vh, inner, layers = v.whole("hidden_size"), v.whole("intermediate_size"), v.whole("num_hidden_layers")
    patch, image = v.whole("patch_size"), v.whole("image_size")
    per_layer = 4 * (vh * vh + vh) + (vh * inner + inner) + (inner * vh + vh) + 2 * 2 * vh
    embeddings = 3 * patch * patch * vh + vh + (image // patch) ** 2 * vh
    return layers * per_layer + embeddings + 2 * vh + vh * text_hidden + vh


def _gemma3(c: _Config) -> tuple[Counts, dict]:
    text = c.data.get("text_config", c.data)
    t = _Config({**GEMMA3_DEFAULTS, **{k: v for k, v in text.items() if v is not None}}, c.source,
                "text_config." if "text_config" in c.data else "")
    h, layers, heads = t.whole("hidden_size"), t.whole("num_hidden_layers"), t.whole("num_attention_heads")
    kv, hd = t.whole("num_key_value_heads"), t.whole("head_dim")
    per_layer = _gqa(h, heads, kv, hd, qk_norm=True) + _glu(h, t.whole("intermediate_size")) + 4 * h
    embeddings = _embeddings(t, h, tied_default=True)
    vision = _siglip(_Config(c.data["vision_config"], c.source, "vision_config."), h) \
        if isinstance(c.data.get("vision_config"), dict) else 0
    total = layers * per_layer + embeddings + vision
    types = t.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        local = sum(1 for x in types if x == "sliding_attention")
    else:
        pattern = t.whole("sliding_window_pattern")
        local = sum(1 for i in range(layers) if (i + 1) % pattern)
    window = t.whole("sliding_window")
    kinds = tuple(k for k in (LayerKind("sliding_window", local, window), LayerKind("attention", layers - local))
                  if k.count)
    notes = ["the SigLIP vision tower and projector are counted"] if vision else []
    return Counts(total, total, embeddings + vision, 0), {
        "attention": AttentionSpec(heads, kv, hd), "kinds": kinds, "notes": notes,
        "max_context": t.whole("max_position_embeddings")}


def _gpt_oss(c: _Config) -> tuple[Counts, dict]:
    h, layers, heads = c.whole("hidden_size"), c.whole("num_hidden_layers"), c.whole("num_attention_heads")
    kv, hd = c.whole("num_key_value_heads"), c.whole("head_dim", h // heads)
    experts = c.whole("num_local_experts")
    top_k = c.whole("num_experts_per_tok", c.whole("experts_per_token", 0))
    inner = c.whole("intermediate_size")
    attention = _gqa(h, heads, kv, hd, qkv_bias=True, o_bias=True) + heads  # + one attention sink per head
    expert = h * 2 * inner + 2 * inner + inner * h + h  # gate_up and down, with biases
    counts = _moe_layers(c, h, layers, attention, experts, top_k, expert, 0, set(), router_bias=True)
    types = c.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        local = sum(1 for x in types if x == "sliding_attention")
    else:
        local = (layers + 1) // 2  # alternating, starting with a sliding layer
    kinds = (LayerKind("sliding_window", local, c.whole("sliding_window")), LayerKind("attention", layers - local))
    return counts, {"attention": AttentionSpec(heads, kv, hd), "kinds": tuple(k for k in kinds if k.count),
                    "moe": MoESpec(experts, top_k)}


NEMOTRON_H_BLOCKS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}


def _nemotron_h(c: _Config) -> tuple[Counts, dict]:
    h, heads = c.whole("hidden_size"), c.whole("num_attention_heads")
    kv, hd = c.whole("num_key_value_heads", heads), c.whole("head_dim", h // heads)
    pattern = c.get("hybrid_override_pattern")
    if isinstance(pattern, str):
        bad = sorted(set(pattern) - set(NEMOTRON_H_BLOCKS))
        if bad:
            raise PlanInputError("hybrid_override_pattern", pattern,
                                 f"a string of {one_of(NEMOTRON_H_BLOCKS)} (M Mamba2, * attention, - MLP, E MoE)",
                                 c.source)
        blocks = [NEMOTRON_H_BLOCKS[ch] for ch in pattern]
    else:
        blocks = c.get("layers_block_type")
        if not isinstance(blocks, list) or set(blocks) - set(NEMOTRON_H_BLOCKS.values()):
            raise PlanInputError("hybrid_override_pattern", pattern,
                                 "a string of M, *, - and E (or layers_block_type: a list of mamba, attention, "
                                 "mlp, moe)", c.source)
    n_heads, m_hd, state = c.whole("mamba_num_heads"), c.whole("mamba_head_dim"), c.whole("ssm_state_size")
    groups, kernel = c.whole("n_groups"), c.whole("conv_kernel", 4)
    d_inner, conv_dim = n_heads * m_hd, n_heads * m_hd + 2 * groups * state
    mamba = (h * (2 * d_inner + 2 * groups * state + n_heads) + conv_dim * kernel + conv_dim + 3 * n_heads
             + d_inner + d_inner * h)
    attention = _gqa(h, heads, kv, hd, bool(c.get("attention_bias")), bool(c.get("attention_bias")))
    mlp = 2 * h * c.whole("intermediate_size", 0)  # squared-ReLU MLP: up and down, no gate
    experts, top_k = c.whole("n_routed_experts", 0), c.whole("num_experts_per_tok", 0)
    latent = c.whole("moe_latent_size", 0)
    expert_dim = latent or h
    expert = 2 * expert_dim * c.whole("moe_intermediate_size", 0)
    moe_fixed = h * experts + experts + 2 * h * c.whole("moe_shared_expert_intermediate_size", 0) + \
        (2 * h * latent if latent else 0)
    sizes = {"mamba": mamba, "attention": attention, "mlp": mlp}
    total = active = expert_total = 0
    for block in blocks:
        if block == "moe":
            total += h + moe_fixed + experts * expert
            active += h + moe_fixed + top_k * expert
            expert_total += experts * expert
        else:
            total, active = total + h + sizes[block], active + h + sizes[block]
    embeddings = _embeddings(c, h)
    counts = Counts(total + embeddings, active + embeddings, embeddings, expert_total)
    kinds = tuple(k for k in (LayerKind("attention", blocks.count("attention")),
                              LayerKind("mamba2", blocks.count("mamba"))) if k.count)
    notes = ["the MTP layer(s) in the checkpoint are not counted"] if c.get("num_nextn_predict_layers") else []
    return counts, {"attention": AttentionSpec(heads, kv, hd), "kinds": kinds,
                    "mamba": MambaSpec(n_heads, m_hd, state, groups, kernel),
                    "moe": MoESpec(experts, top_k) if experts else None, "notes": notes}


# `architectures` entry -> reader; `model_type` -> the same, for configs without `architectures`.
SUPPORTED = {
    "LlamaForCausalLM": _llama,
    "Qwen3ForCausalLM": _qwen3,
    "Qwen3MoeForCausalLM": _qwen3_moe,
    "MixtralForCausalLM": _mixtral,
    "DeepseekV3ForCausalLM": _deepseek_v3,
    "Gemma3ForConditionalGeneration": _gemma3,
    "Gemma3ForCausalLM": _gemma3,
    "GptOssForCausalLM": _gpt_oss,
    "NemotronHForCausalLM": _nemotron_h,
}
MODEL_TYPES = {"llama": _llama, "qwen3": _qwen3, "qwen3_moe": _qwen3_moe, "mixtral": _mixtral,
               "deepseek_v3": _deepseek_v3, "kimi_k2": _deepseek_v3, "gemma3": _gemma3, "gemma3_text": _gemma3,
               "gpt_oss": _gpt_oss, "nemotron_h": _nemotron_h}

QUANT_METHODS = ("fp8", "mxfp4", "awq", "gptq", "compressed-tensors", "modelopt")


def _compressed_tensors(q: _Config) -> str | None:
    """The precision of a compressed-tensors release, from its first config group."""
    groups = q.get("config_groups", {})
    group = next(iter(groups.values()), None) if isinstance(groups, dict) else None
    weights = (group or {}).get("weights") or {}
    bits, kind = weights.get("num_bits"), weights.get("type")
    activations = (group or {}).get("input_activations")
    if kind == "float":
        return {8: "fp8", 4: "nvfp4"}.get(bits)
    if kind == "int":
        if bits == 4:
            return "int4"
        if bits == 8:
            return "int8" if activations else "int8-w8a16"
    return None


def checkpoint_precision(data: dict, source: str) -> tuple[str, str]:
    """(precision, how the config says it): from `quantization_config`, else the weights' dtype (bf16)."""
    quant = data.get("quantization_config")
    if not isinstance(quant, dict):
        dtype = data.get("torch_dtype") or data.get("dtype") or (data.get("text_config") or {}).get("torch_dtype")
        return "bf16", f"no quantization_config; weights {dtype or 'bfloat16'} (counted at 2 B)"
    q = _Config(quant, source, "quantization_config.")
    method = str(q.get("quant_method", "")).lower()
    precision = None
    if method == "fp8":
        precision = "fp8"
    elif method == "mxfp4":
        precision = "mxfp4"
    elif method in ("awq", "gptq"):
        precision = {4: "int4", 8: "int8-w8a16"}.get(q.get("bits"))
    elif method == "compressed-tensors":
        precision = _compressed_tensors(q)
    elif method == "modelopt":
        precision = {"FP8": "fp8", "NVFP4": "nvfp4"}.get(str(q.get("quant_algo", "")).upper())
    if precision is None:
        raise PlanInputError("quantization_config.quant_method", quant.get("quant_method"),
                             f"{one_of(QUANT_METHODS)} (fp8; mxfp4; awq/gptq 4- or 8-bit; compressed-tensors int4, "
                             "int8, fp8 or nvfp4; modelopt FP8 or NVFP4)", source)
    return precision, f"quantization_config: {method}"


def _reader(data: dict, source: str):
    archs = data.get("architectures")
    if isinstance(archs, list) and archs:
        for arch in archs:
            if arch in SUPPORTED:
                return SUPPORTED[arch]
        raise PlanInputError("architectures", archs, f"one of {one_of(SUPPORTED)}", source)
    if data.get("model_type") in MODEL_TYPES:
        return MODEL_TYPES[data["model_type"]]
    raise PlanInputError("model_type", data.get("model_type"),
                         f"one of {one_of(MODEL_TYPES)} (or architectures: one of {one_of(SUPPORTED)})", source)


def model_from_hf_config(data: object, source: str = "config.json", name: str | None = None) -> ModelProfile:
    """A ModelProfile from a parsed Hugging Face config.json, or a PlanInputError naming the field."""
    if not isinstance(data, dict):
        raise PlanInputError("(document)", type(data).__name__, "a JSON object (a Hugging Face config.json)", source)
    reader = _reader(data, source)
    counts, shape = reader(_Config(data, source))
    precision, said = checkpoint_precision(data, source)
    wide = counts.total - counts.experts if precision == "mxfp4" else counts.embeddings
    repo = str(data.get("_name_or_path") or name or "config.json")
    wide_b = wide / 1e9 if precision != "bf16" else 0.0
    checkpoint = Checkpoint(repo, precision, "unspecified",
                            layout_note=f"{said}; {wide_b:.2f}B params kept in BF16" if wide_b else said,
                            bf16_params_b=wide_b)
    notes = [f"parameters computed from config.json shapes, not published: {counts.total / 1e9:,.2f}B total, "
             f"{counts.active / 1e9:,.2f}B active", f"checkpoint precision {precision} ({said})",
             *shape.get("notes", [])]
    max_context = shape.get("max_context") or _Config(data, source).whole("max_position_embeddings")
    return with_layer_kinds(
        name=name or repo, total_params_b=counts.total / 1e9, active_params_b=counts.active / 1e9,
        hidden_size=int((data.get("text_config") or data).get("hidden_size") or 0),
        attention=shape["attention"], mamba=shape.get("mamba"), mla=shape.get("mla"),
        layer_kinds=shape["kinds"], max_context=max_context, moe=shape.get("moe"),
        checkpoints={precision: checkpoint}, notes=tuple(notes), native_precision=precision)


def load_hf_config(path: Path) -> ModelProfile:
    """A model profile from a config.json file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanInputError("model", str(path), f"a readable config.json ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise PlanInputError("(document)", f"line {exc.lineno}", f"valid JSON ({exc.msg})", str(path)) from None
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    return model_from_hf_config(data, str(path), name)


def load_model_or_config(name_or_path: str, field_name: str = "model") -> ModelProfile:
    """A built-in model, a model-spec YAML file or a Hugging Face config.json (what `planner fit --model` takes)."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return load_hf_config(path)
    try:
        return load_model(name_or_path, field_name)
    except PlanInputError as err:
        if err.field == field_name and err.source is None:
            raise PlanInputError(field_name, name_or_path,
                                 f"{err.allowed}, or the path of a Hugging Face config.json") from None
        raise
