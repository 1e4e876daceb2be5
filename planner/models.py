"""Model profiles: the built-in Nemotron 3 Ultra and any model described by a model-spec YAML (see README)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from planner.errors import PlanInputError, PlanInputNote, one_of
from planner.references import ref
from planner.yamlfile import YamlFileError, load_yaml_file

PRECISIONS = ("bf16", "fp8", "nvfp4", "mxfp4", "int8", "int8-w8a16", "int4")
# Bytes per weight, scales included (docs/sources.md#memory-arithmetic, #weight-precisions): NVFP4 is 4-bit E2M1 plus
# one FP8 scale per 16 values = 4.5 bits; MXFP4 4-bit E2M1 plus one 8-bit (E8M0) scale per 32 = 4.25 bits; INT8
# W8A8 8 bits plus one scale per output channel (< 0.1 %, not counted); INT8 weight-only (W8A16, GPTQ) 8 bits plus
# one FP16 scale per group of 128 = 8.125 bits; INT4 weight-only (AWQ/GPTQ, group 128) 4 bits plus one FP16 scale
# and one 4-bit zero point per 128 = 4.15625 bits.
BYTES_PER_PARAM = {"bf16": 2.0, "fp8": 1.0, "nvfp4": 0.5625, "mxfp4": 0.53125, "int8": 1.0,
                   "int8-w8a16": 1.015625, "int4": 0.51953125}
KV_CACHE_DTYPES = {"fp8": 1, "bf16": 2}
SSM_CACHE_BYTES = 4  # --mamba-ssm-cache-dtype float32, as NVIDIA recommends
CONV_STATE_BYTES = 2  # the conv state follows the model dtype (bf16)


@dataclass(frozen=True)
class AttentionSpec:
    num_heads: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class MambaSpec:
    num_heads: int
    head_dim: int
    state_size: int
    n_groups: int
    conv_kernel: int

    @property
    def d_inner(self) -> int:
        return self.num_heads * self.head_dim


@dataclass(frozen=True)
class MoESpec:
    num_experts: int
    top_k: int


@dataclass(frozen=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V3/R1, Kimi K2): each token caches one compressed latent plus the
    decoupled rope key, shared by all heads (docs/sources.md#model-forms)."""

    kv_lora_rank: int
    qk_rope_head_dim: int

    @property
    def cached_values(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim


@dataclass(frozen=True)
class Mamba1Spec:
    """A Mamba-1 mixer: conv state (kernel-1) x d_inner, SSM state d_inner x state_size."""

    d_inner: int
    state_size: int
    conv_kernel: int


@dataclass(frozen=True)
class GatedDeltaNetSpec:
    """A Gated DeltaNet linear-attention mixer (Qwen3-Next): conv state over q, k, v; a head_k x head_v matrix per
    value head."""

    num_k_heads: int
    num_v_heads: int
    head_k_dim: int
    head_v_dim: int
    conv_kernel: int


# The layer forms a model spec can list (`layer_kinds`). The first four cache per token (attention); the last three
# keep a fixed state per sequence, whatever the context.
ATTENTION_FORMS = ("attention", "sliding_window", "chunked_local", "mla")
STATE_FORMS = ("mamba2", "mamba1", "gated_deltanet")
LAYER_FORMS = ATTENTION_FORMS + STATE_FORMS
WINDOWED_FORMS = ("sliding_window", "chunked_local")


@dataclass(frozen=True)
class LayerKind:
    """`count` layers of one form; `window` is the most tokens a sliding-window or chunked layer caches."""

    form: str
    count: int
    window: int | None = None

    def cached_tokens(self, context: int) -> int:
        return min(context, self.window) if self.window else context


@dataclass(frozen=True)
class Checkpoint:
    """A published set of weights for one precision: where it lives, who publishes it, how large it is.

    `size_gb` is the published size on disk (decimal GB) when known: quantized releases keep some layers wider
    (embeddings, attention, the MTP head), so the size says more than parameters x bytes. None: the planner counts
    parameters x bytes per parameter and says so.
    """

    repo: str  # Hugging Face repository id
    precision: str
    publisher: str  # "nvidia", "community" (a third party's quantization) or "unspecified" (a model spec's)
    size_gb: float | None = None
    layout_note: str = ""  # which layers are stored at which width
    source: str = ""  # anchor in docs/sources.md
    # Parameters (billions) the quantized release keeps in BF16 (embeddings, LM head, sometimes attention); counted
    # at 2 B each when the size is not published. 0: every weight at the checkpoint's precision.
    bf16_params_b: float = 0.0

    def describe(self) -> str:
        who = {"nvidia": "NVIDIA's", "community": "a community"}.get(self.publisher, "the model spec's")
        return f"{self.repo} ({who} {self.precision} checkpoint)"


@dataclass(frozen=True)
class ModelProfile:
    """What the memory arithmetic needs to know about a model, plus where its checkpoints live."""

    name: str
    total_params_b: float
    active_params_b: float
    attention_layers: int
    mamba_layers: int
    hidden_size: int
    attention: AttentionSpec
    mamba: MambaSpec | None
    max_context: int
    moe: MoESpec | None = None
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)  # precision -> published weights
    served_model_name: str | None = None
    assumptions: tuple[str, ...] = ()  # values not confirmed by a primary source
    # Per-layer heterogeneity: the layers by form. Empty: `attention_layers` full-attention layers and
    # `mamba_layers` Mamba2 layers (the specs before layer kinds). When set, `attention_layers` and `mamba_layers`
    # are the totals of the cache-per-token and the state-per-sequence forms (see `with_layer_kinds`).
    layer_kinds: tuple[LayerKind, ...] = ()
    mla: MLASpec | None = None
    mamba1: Mamba1Spec | None = None
    gated_deltanet: GatedDeltaNetSpec | None = None
    notes: tuple[str, ...] = ()  # said with every verdict (e.g. parameters computed from a config.json's shapes)
    native_precision: str | None = None  # the precision the weights are published in, when the source says it

    @property
    def kinds(self) -> tuple[LayerKind, ...]:
        """The layers by form, derived from the two counts when the spec lists no kinds."""
        if self.layer_kinds:
            return self.layer_kinds
        derived = (LayerKind("attention", self.attention_layers), LayerKind("mamba2", self.mamba_layers))
        return tuple(k for k in derived if k.count)

    def weights_bytes(self, precision: str) -> float:
        """Bytes of weights at `precision`: the checkpoint's published size when known, else params x bytes (the
        parts the checkpoint keeps in BF16 at 2 B)."""
        published = self.checkpoints.get(precision)
        if published is not None and published.size_gb:
            return published.size_gb * 1e9
        return self.arithmetic_weights_bytes(precision)

    def bf16_params_b(self, precision: str) -> float:
        """Billions of parameters the checkpoint at `precision` keeps in BF16 (0 when none are declared)."""
        published = self.checkpoints.get(precision)
        if published is None or precision == "bf16":
            return 0.0
        return min(published.bf16_params_b, self.total_params_b)

    def arithmetic_weights_bytes(self, precision: str) -> float:
        wide = self.bf16_params_b(precision)
        return ((self.total_params_b - wide) * BYTES_PER_PARAM[precision] + wide * BYTES_PER_PARAM["bf16"]) * 1e9

    def active_weight_bytes(self, precision: str) -> float:
        return self.active_params_b * 1e9 * BYTES_PER_PARAM[precision]


NEMOTRON_3_ULTRA = ModelProfile(
    name="nemotron-3-ultra",
    total_params_b=550.0,
    active_params_b=55.0,
    attention_layers=12,
    mamba_layers=48,
    hidden_size=8192,
    attention=AttentionSpec(num_heads=64, num_kv_heads=2, head_dim=128),
    # Assumed: the Mamba2 mixer of the sister models (Super: 128 heads x 64 = 2 x hidden 4096) scaled to
    # d_model 8192, i.e. 256 heads x 64, state 128, 8 groups, conv kernel 4. No published config confirms it.
    mamba=MambaSpec(num_heads=256, head_dim=64, state_size=128, n_groups=8, conv_kernel=4),
    max_context=1_000_000,
    moe=MoESpec(num_experts=512, top_k=22),
    # What exists (docs/sources.md#nemotron-3-ultra-checkpoints): NVIDIA publishes BF16 and one quantized release,
    # NVFP4 with FP8 and BF16 parts; there is no NVIDIA FP8 checkpoint. FP8 is a community quantization.
    checkpoints={
        "bf16": Checkpoint(ref("checkpoint-bf16"), "bf16", "nvidia", 1121.0,
                           "all weights BF16", "nemotron-3-ultra-checkpoints"),
        "nvfp4": Checkpoint(ref("checkpoint-nvfp4"), "nvfp4", "nvidia", 352.3,
                            "experts NVFP4, the other layers FP8 or BF16", "nemotron-3-ultra-checkpoints"),
        "fp8": Checkpoint(ref("checkpoint-fp8-community"), "fp8", "community", None,
                          "FP8 dynamic quantization by Red Hat AI; size not published, counted at 1 B/param",
                          "nemotron-3-ultra-checkpoints"),
    },
    served_model_name="nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B",
    assumptions=(
        "layer split 48 Mamba2 + 48 MoE + 12 attention is from a third-party config analysis",
        "head_dim 128 is from a third-party config analysis",
        "Mamba2 mixer (256 heads x 64, state 128, 8 groups, conv 4) is scaled from Nemotron-3-Super, unpublished",
        "the FP8 checkpoint is a community quantization (Red Hat AI), not NVIDIA's; its size is not published",
        "max context 1,000,000 per the article; one config copy says max_position_embeddings 262144",
    ),
)

BUILT_IN_MODELS = {NEMOTRON_3_ULTRA.name: NEMOTRON_3_ULTRA}


def layer_kinds_problem(kinds: tuple[LayerKind, ...], mla: MLASpec | None = None, mamba: MambaSpec | None = None,
                        mamba1: Mamba1Spec | None = None,
                        gated_deltanet: GatedDeltaNetSpec | None = None) -> tuple[str, str] | None:
    """(field, what is allowed) for layer kinds no arithmetic can use, or None when they are whole."""
    specs = {"mla": mla, "mamba2": mamba, "mamba1": mamba1, "gated_deltanet": gated_deltanet}
    blocks = {"mla": "mla", "mamba2": "mamba", "mamba1": "mamba1", "gated_deltanet": "gated_deltanet"}
    if not kinds:
        return "layer_kinds", "at least one layer kind"
    for i, kind in enumerate(kinds):
        if kind.form not in LAYER_FORMS:
            return f"layer_kinds.{i}.kind", one_of(LAYER_FORMS)
        if kind.count < 1:
            return f"layer_kinds.{i}.count", "a whole number >= 1"
        if kind.form in WINDOWED_FORMS and not (kind.window and kind.window > 0):
            return f"layer_kinds.{i}.window", f"a token count > 0 for a {kind.form} layer"
        if kind.form not in WINDOWED_FORMS and kind.window is not None:
            return f"layer_kinds.{i}.window", f"no window: only {one_of(WINDOWED_FORMS)} layers have one"
        if kind.form in specs and specs[kind.form] is None:
            return blocks[kind.form], f"a {blocks[kind.form]} block, since layer_kinds lists {kind.form} layers"
    return None


def with_layer_kinds(**fields) -> ModelProfile:
    """A ModelProfile from its layer kinds: the two layer counts are the totals of the attention and state forms."""
    kinds = tuple(fields.pop("layer_kinds"))
    return ModelProfile(
        attention_layers=sum(k.count for k in kinds if k.form in ATTENTION_FORMS),
        mamba_layers=sum(k.count for k in kinds if k.form in STATE_FORMS),
        layer_kinds=kinds, **fields)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _LayersSpec(_Strict):
    attention: StrictInt = Field(ge=0)
    mamba: StrictInt = Field(default=0, ge=0)


class _AttentionYaml(_Strict):
    num_heads: StrictInt = Field(gt=0)
    num_kv_heads: StrictInt = Field(gt=0)
    head_dim: StrictInt = Field(gt=0)


class _MambaYaml(_Strict):
    num_heads: StrictInt = Field(ge=0)
    head_dim: StrictInt = Field(ge=0)
    state_size: StrictInt = Field(ge=0)
    n_groups: StrictInt = Field(ge=0)
    conv_kernel: StrictInt = Field(default=4, ge=1)


class _MoEYaml(_Strict):
    num_experts: StrictInt = Field(gt=0)
    top_k: StrictInt = Field(gt=0)


class _LayerKindYaml(_Strict):
    kind: str = Field(min_length=1)
    count: StrictInt = Field(gt=0)
    window: StrictInt | None = Field(default=None, gt=0)


class _MLAYaml(_Strict):
    kv_lora_rank: StrictInt = Field(gt=0)
    qk_rope_head_dim: StrictInt = Field(ge=0)


class _Mamba1Yaml(_Strict):
    d_inner: StrictInt = Field(gt=0)
    state_size: StrictInt = Field(gt=0)
    conv_kernel: StrictInt = Field(default=4, ge=1)


class _GatedDeltaNetYaml(_Strict):
    num_k_heads: StrictInt = Field(gt=0)
    num_v_heads: StrictInt = Field(gt=0)
    head_k_dim: StrictInt = Field(gt=0)
    head_v_dim: StrictInt = Field(gt=0)
    conv_kernel: StrictInt = Field(default=4, ge=1)


class _CheckpointYaml(_Strict):
    """A checkpoint with more than its repository: the parameters it keeps in BF16 (embeddings, LM head, ...)."""

    repo: str = Field(min_length=1)
    bf16_params_b: StrictFloat = Field(default=0.0, ge=0)


class ModelSpecYaml(_Strict):
    """The model-spec YAML schema (README)."""

    name: str = Field(min_length=1)
    total_params_b: StrictFloat = Field(gt=0)
    active_params_b: StrictFloat = Field(gt=0)
    layers: _LayersSpec | None = None  # two counts: full attention and Mamba2; or, instead, layer_kinds
    layer_kinds: tuple[_LayerKindYaml, ...] | None = None
    hidden_size: StrictInt = Field(gt=0)
    attention: _AttentionYaml
    mamba: _MambaYaml | None = None
    mla: _MLAYaml | None = None
    mamba1: _Mamba1Yaml | None = None
    gated_deltanet: _GatedDeltaNetYaml | None = None
    moe: _MoEYaml | None = None
    max_context: StrictInt = Field(gt=0)
    checkpoints: dict[str, str | _CheckpointYaml] = Field(default_factory=dict)
    served_model_name: str | None = None


# What pydantic's error kinds mean to a person writing YAML (its own wording never reaches the user).
_KIND_WORDS = {
    "bool_type": "true or false (an unquoted YAML boolean)",
    "bool_parsing": "true or false (an unquoted YAML boolean)",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number (not .inf or .nan)",
    "string_type": "text",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "datetime_type": "an ISO 8601 time with a zone, e.g. 2026-12-01T18:00:00Z",
    "datetime_parsing": "an ISO 8601 time with a zone, e.g. 2026-12-01T18:00:00Z",
    "datetime_from_date_parsing": "an ISO 8601 time with a zone, e.g. 2026-12-01T18:00:00Z",
}
# Patterns the schemas use, as a person reads them.
PATTERN_WORDS = {
    r"^vpc-[0-9a-f]{8,17}$": "a VPC id such as vpc-0123456789abcdef0",
    r"^subnet-[0-9a-f]{8,17}$": "a subnet id such as subnet-0123456789abcdef0",
    r"^[a-z]{2}-[a-z]+-\d[a-z]$": "an Availability Zone such as us-east-1a",
    r"^s3://[a-z0-9.\-]{3,63}/.+$": "an S3 URI such as s3://my-bucket/weights/",
    r"^cr-[0-9a-f]{8,17}$": "a capacity reservation id such as cr-0123456789abcdef0",
    r"^(\*|\d+\.\d+\.\d+)$": "* or a version such as 1.0.0",
    r"^1\.\d+$": "a Kubernetes version such as 1.31",
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": "a Kubernetes name (lower-case letters, digits and -)",
    r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$": "an EKS cluster name (letters, digits, - and _)",
    r"^[a-z][a-z0-9\-]*\.[a-z0-9]+$": "an EC2 instance type such as m7i.large",
    r"^ml\.": "a SageMaker instance type such as ml.p5.48xlarge",
}
MAX_ALLOWED = 200


def _allowed_words(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _KIND_WORDS:
        return _KIND_WORDS[kind]
    if kind == "string_pattern_mismatch":
        return PATTERN_WORDS.get(ctx.get("pattern", ""), "a value of the documented form (see the README)")
    if kind == "literal_error":
        return str(ctx.get("expected", err["msg"])).replace("'", "")
    if kind == "greater_than_equal":
        return f"a number greater than or equal to {ctx.get('ge')}"
    if kind == "greater_than":
        return f"a number greater than {ctx.get('gt')}"
    if kind == "less_than_equal":
        return f"a number less than or equal to {ctx.get('le')}"
    if kind == "less_than":
        return f"a number less than {ctx.get('lt')}"
    if kind in ("string_too_short", "too_short"):
        return f"at least {ctx.get('min_length')} character(s) or item(s)"
    if kind in ("string_too_long", "too_long"):
        return f"at most {ctx.get('max_length')} character(s) or item(s)"
    message = err["msg"].replace("Input should be ", "").replace("Value error, ", "")
    return message[:MAX_ALLOWED]


def known_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The keys a person may write at `loc` (aliases where the schema has them), or [] when unknown."""
    for part in loc:
        if model is None:
            return []
        fields = model.model_fields
        name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
        if name is None:
            return []
        annotation = fields[name].annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        model = candidates[0] if candidates else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def unknown_key_error(field_name: str, key: str, value: object, known: list[str]) -> PlanInputError:
    """An unknown key, with the closest known key when one is close."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) or difflib.get_close_matches(
        key.lower(), [k.lower() for k in known], n=1, cutoff=0.6)
    if close:
        suggestion = next((k for k in known if k.lower() == close[0].lower()), close[0])
        return PlanInputNote(field_name, f"unknown key; did you mean {suggestion}?")
    listed = one_of(known)
    if len(listed) > MAX_ALLOWED:
        listed = listed[:MAX_ALLOWED - 3] + "..."
    return PlanInputNote(field_name, f"unknown key; allowed: {listed}" if known else "unknown key")


def first_validation_error(exc: ValidationError, prefix: str = "",
                           model: type[BaseModel] | None = None) -> PlanInputError:
    """Turn pydantic's error list into one PlanInputError about the first problem (unknown keys first)."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in err["loc"])
    field_name = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(document)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return unknown_key_error(field_name, str(err["loc"][-1]), err.get("input"),
                                 known_keys(model, tuple(err["loc"][:-1])))
    if kind == "missing":
        return PlanInputError(field_name, None, "a value (required key is missing)")
    return PlanInputError(field_name, err.get("input"), _allowed_words(err))


def model_from_spec(data: object, source: str = "model spec") -> ModelProfile:
    """A ModelProfile from parsed model-spec YAML, or a PlanInputError naming the bad field."""
    if not isinstance(data, dict):
        raise PlanInputError("(document)", type(data).__name__, "a mapping of model-spec keys", source)
    try:
        spec = ModelSpecYaml.model_validate(data)
    except ValidationError as exc:
        raise first_validation_error(exc, model=ModelSpecYaml).with_source(source) from None
    if spec.active_params_b > spec.total_params_b:
        raise PlanInputError("active_params_b", spec.active_params_b,
                             f"at most total_params_b ({spec.total_params_b})", source)
    if spec.moe is not None:
        if spec.moe.top_k > spec.moe.num_experts:
            raise PlanInputError("moe.top_k", spec.moe.top_k,
                                 f"at most moe.num_experts ({spec.moe.num_experts}): more experts active than exist",
                                 source)
        if spec.moe.top_k < spec.moe.num_experts and spec.active_params_b >= spec.total_params_b:
            raise PlanInputError("active_params_b", spec.active_params_b,
                                 f"less than total_params_b ({spec.total_params_b:g}) for an MoE that activates "
                                 f"{spec.moe.top_k} of {spec.moe.num_experts} experts", source)
    if (spec.layers is None) == (spec.layer_kinds is None):
        raise PlanInputError("layers", None if spec.layers is None else spec.layers.model_dump(),
                             "either layers (attention and mamba counts) or layer_kinds, not both", source)
    if spec.layers is not None and spec.layers.attention == 0 and spec.layers.mamba == 0:
        raise PlanInputError("layers", "0 attention and 0 mamba", "at least one attention or Mamba layer", source)
    if spec.attention.num_heads % spec.attention.num_kv_heads:
        raise PlanInputError("attention.num_kv_heads", spec.attention.num_kv_heads,
                             f"a divisor of attention.num_heads ({spec.attention.num_heads})", source)
    for precision, checkpoint in spec.checkpoints.items():
        if precision not in PRECISIONS:
            raise PlanInputError(f"checkpoints.{precision}", precision, one_of(PRECISIONS), source)
        if not isinstance(checkpoint, str) and checkpoint.bf16_params_b > spec.total_params_b:
            raise PlanInputError(f"checkpoints.{precision}.bf16_params_b", checkpoint.bf16_params_b,
                                 f"at most total_params_b ({spec.total_params_b:g})", source)
    kind_fields = _kind_fields(spec, source) if spec.layer_kinds is not None else {}
    mamba = None
    if spec.layers is not None and spec.layers.mamba:
        m = spec.mamba
        if m is None or not (m.num_heads and m.head_dim and m.state_size and m.n_groups):
            raise PlanInputError("mamba", None if m is None else m.model_dump(),
                                 "num_heads, head_dim, state_size, n_groups all > 0 when layers.mamba > 0", source)
        mamba = MambaSpec(m.num_heads, m.head_dim, m.state_size, m.n_groups, m.conv_kernel)
    profile = ModelProfile(
        name=spec.name,
        total_params_b=spec.total_params_b,
        active_params_b=spec.active_params_b,
        attention_layers=spec.layers.attention if spec.layers else 0,
        mamba_layers=spec.layers.mamba if spec.layers else 0,
        hidden_size=spec.hidden_size,
        attention=AttentionSpec(spec.attention.num_heads, spec.attention.num_kv_heads, spec.attention.head_dim),
        mamba=mamba,
        max_context=spec.max_context,
        moe=MoESpec(spec.moe.num_experts, spec.moe.top_k) if spec.moe else None,
        checkpoints={p: Checkpoint(c, p, "unspecified") if isinstance(c, str)
                     else Checkpoint(c.repo, p, "unspecified", bf16_params_b=c.bf16_params_b)
                     for p, c in spec.checkpoints.items()},
        served_model_name=spec.served_model_name,
    )
    return replace(profile, **kind_fields) if kind_fields else profile


def _kind_fields(spec: ModelSpecYaml, source: str) -> dict:
    """The profile fields of a model spec that lists its layers by kind (`layer_kinds`), checked kind by kind."""
    kinds = tuple(LayerKind(k.kind, k.count, k.window) for k in spec.layer_kinds)
    m, m1, d = spec.mamba, spec.mamba1, spec.gated_deltanet
    mamba = MambaSpec(m.num_heads, m.head_dim, m.state_size, m.n_groups, m.conv_kernel) \
        if m is not None and m.num_heads and m.head_dim and m.state_size and m.n_groups else None
    mla = MLASpec(spec.mla.kv_lora_rank, spec.mla.qk_rope_head_dim) if spec.mla else None
    mamba1 = Mamba1Spec(m1.d_inner, m1.state_size, m1.conv_kernel) if m1 else None
    deltanet = GatedDeltaNetSpec(d.num_k_heads, d.num_v_heads, d.head_k_dim, d.head_v_dim, d.conv_kernel) if d else None
    problem = layer_kinds_problem(kinds, mla, mamba, mamba1, deltanet)
    if problem:
        field_name, allowed = problem
        index = field_name.split(".")[1] if field_name.startswith("layer_kinds.") else None
        value = spec.layer_kinds[int(index)].model_dump() if index is not None else None
        raise PlanInputError(field_name, value, allowed, source)
    return {"attention_layers": sum(k.count for k in kinds if k.form in ATTENTION_FORMS),
            "mamba_layers": sum(k.count for k in kinds if k.form in STATE_FORMS),
            "layer_kinds": kinds, "mamba": mamba, "mla": mla, "mamba1": mamba1, "gated_deltanet": deltanet}


def load_model(name_or_path: str, field_name: str = "model") -> ModelProfile:
    """A built-in model by name, or one read from a model-spec YAML file (a config.json: planner.hf_config)."""
    if name_or_path in BUILT_IN_MODELS:
        return BUILT_IN_MODELS[name_or_path]
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise PlanInputError(field_name, name_or_path,
                             f"{one_of(BUILT_IN_MODELS)} or the path of a model-spec YAML file")
    data = load_yaml_file(path, "a model-spec YAML file")
    if data is None:
        raise YamlFileError(str(path), "is empty (or only comments); a model spec is a mapping of its keys")
    return model_from_spec(data, source=str(path))
