"""Model profiles: the built-in Nemotron 3 Ultra and any model described by a model-spec YAML (DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.errors import PlanInputError, one_of
from planner.references import ref

PRECISIONS = ("bf16", "fp8", "nvfp4")
# Bytes per weight: NVFP4 is 4-bit E2M1 plus one FP8 scale per 16 values = 4.5 bits (FACTS.md section 2).
BYTES_PER_PARAM = {"bf16": 2.0, "fp8": 1.0, "nvfp4": 0.5625}
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

    def weights_bytes(self, precision: str) -> float:
        """Bytes of weights at `precision`: the checkpoint's published size when known, else params x bytes."""
        published = self.checkpoints.get(precision)
        if published is not None and published.size_gb:
            return published.size_gb * 1e9
        return self.arithmetic_weights_bytes(precision)

    def arithmetic_weights_bytes(self, precision: str) -> float:
        return self.total_params_b * 1e9 * BYTES_PER_PARAM[precision]

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LayersSpec(_Strict):
    attention: int = Field(ge=0)
    mamba: int = Field(default=0, ge=0)


class _AttentionYaml(_Strict):
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)


class _MambaYaml(_Strict):
    num_heads: int = Field(ge=0)
    head_dim: int = Field(ge=0)
    state_size: int = Field(ge=0)
    n_groups: int = Field(ge=0)
    conv_kernel: int = Field(default=4, ge=1)


class _MoEYaml(_Strict):
    num_experts: int = Field(gt=0)
    top_k: int = Field(gt=0)


class ModelSpecYaml(_Strict):
    """The model-spec YAML schema of DESIGN.md."""

    name: str = Field(min_length=1)
    total_params_b: float = Field(gt=0)
    active_params_b: float = Field(gt=0)
    layers: _LayersSpec
    hidden_size: int = Field(gt=0)
    attention: _AttentionYaml
    mamba: _MambaYaml | None = None
    moe: _MoEYaml | None = None
    max_context: int = Field(gt=0)
    checkpoints: dict[str, str] = Field(default_factory=dict)
    served_model_name: str | None = None


def first_validation_error(exc: ValidationError, prefix: str = "") -> PlanInputError:
    """Turn pydantic's error list into one PlanInputError about the first problem."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    field_name = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(document)"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = "a known key (unknown key)"
    elif kind == "missing":
        allowed = "a value (required key is missing)"
        return PlanInputError(field_name, None, allowed)
    else:
        allowed = err["msg"].replace("Input should be ", "").replace("Value error, ", "")
    return PlanInputError(field_name, err.get("input"), allowed)


def model_from_spec(data: object, source: str = "model spec") -> ModelProfile:
    """A ModelProfile from parsed model-spec YAML, or a PlanInputError naming the bad field."""
    if not isinstance(data, dict):
        raise PlanInputError("(document)", type(data).__name__, "a mapping of model-spec keys", source)
    try:
        spec = ModelSpecYaml.model_validate(data)
    except ValidationError as exc:
        raise first_validation_error(exc).with_source(source) from None
    if spec.active_params_b > spec.total_params_b:
        raise PlanInputError("active_params_b", spec.active_params_b,
                             f"at most total_params_b ({spec.total_params_b})", source)
    if spec.layers.attention == 0 and spec.layers.mamba == 0:
        raise PlanInputError("layers", "0 attention and 0 mamba", "at least one attention or Mamba layer", source)
    if spec.attention.num_heads % spec.attention.num_kv_heads:
        raise PlanInputError("attention.num_kv_heads", spec.attention.num_kv_heads,
                             f"a divisor of attention.num_heads ({spec.attention.num_heads})", source)
    for precision in spec.checkpoints:
        if precision not in PRECISIONS:
            raise PlanInputError(f"checkpoints.{precision}", precision, one_of(PRECISIONS), source)
    mamba = None
    if spec.layers.mamba:
        m = spec.mamba
        if m is None or not (m.num_heads and m.head_dim and m.state_size and m.n_groups):
            raise PlanInputError("mamba", None if m is None else m.model_dump(),
                                 "num_heads, head_dim, state_size, n_groups all > 0 when layers.mamba > 0", source)
        mamba = MambaSpec(m.num_heads, m.head_dim, m.state_size, m.n_groups, m.conv_kernel)
    return ModelProfile(
        name=spec.name,
        total_params_b=spec.total_params_b,
        active_params_b=spec.active_params_b,
        attention_layers=spec.layers.attention,
        mamba_layers=spec.layers.mamba,
        hidden_size=spec.hidden_size,
        attention=AttentionSpec(spec.attention.num_heads, spec.attention.num_kv_heads, spec.attention.head_dim),
        mamba=mamba,
        max_context=spec.max_context,
        moe=MoESpec(spec.moe.num_experts, spec.moe.top_k) if spec.moe else None,
        checkpoints={p: Checkpoint(repo, p, "unspecified") for p, repo in spec.checkpoints.items()},
        served_model_name=spec.served_model_name,
    )


def load_model(name_or_path: str, field_name: str = "model") -> ModelProfile:
    """A built-in model by name, or one read from a model-spec YAML file."""
    if name_or_path in BUILT_IN_MODELS:
        return BUILT_IN_MODELS[name_or_path]
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise PlanInputError(field_name, name_or_path,
                             f"{one_of(BUILT_IN_MODELS)} or the path of a model-spec YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        raise PlanInputError(where, str(getattr(exc, "problem", exc)), "well-formed YAML", str(path)) from None
    return model_from_spec(data, source=str(path))
