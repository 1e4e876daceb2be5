"""Estimates a buyer asks for: decode throughput upper bound, $/hour, the most an evaluation can spend, $ per 1M
output tokens at the bound, and own-versus-rent break-even."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from planner.fit import Alternative, FitRequest, FitResult, alternatives
from planner.hardware import INSTANCE_TYPES, InstanceType
from planner.models import BYTES_PER_PARAM, ModelProfile


@dataclass(frozen=True)
class ThroughputBound:
    """Decode tokens/s that memory bandwidth and peak compute cannot exceed. Real serving is lower: it also reads
    the KV cache, communicates across GPUs and runs kernels below peak. Use it to rank options, not to promise."""

    single_stream_tokens_per_s: float  # one sequence: TP ranks read the active weights in parallel
    aggregate_tokens_per_s: float  # at the requested concurrency, capped by peak compute
    bound_by: str  # "memory bandwidth" or "compute"

    def to_json(self) -> dict:
        return {"single_stream_tokens_per_s_upper_bound": round(self.single_stream_tokens_per_s, 1),
                "aggregate_tokens_per_s_upper_bound": round(self.aggregate_tokens_per_s, 1),
                "bound_by": self.bound_by}


def weight_bytes_read_per_step(model: ModelProfile, precision: str, batch: int) -> float:
    """Expected weight bytes one decode step reads for `batch` sequences.

    The dense part is read once. Of the routed experts, a token touches top_k of num_experts; with tokens routed
    independently, a batch touches 1 - (1 - k/E)^batch of them. The expert share follows from the model's totals:
    total = dense + experts and active = dense + experts x k/E.
    """
    bytes_per_param = BYTES_PER_PARAM[precision]
    if model.moe is None or model.total_params_b <= model.active_params_b:
        return model.active_params_b * 1e9 * bytes_per_param
    routed = model.moe.top_k / model.moe.num_experts
    experts = (model.total_params_b - model.active_params_b) / (1 - routed)
    dense = model.total_params_b - experts
    touched = 1 - (1 - routed) ** batch
    return (dense + experts * touched) * 1e9 * bytes_per_param


def decode_upper_bound(fit: FitResult) -> ThroughputBound:
    """Upper bound on decode throughput for a fitted plan.

    A decode step must read the weights its tokens use: for one sequence the active parameters, spread over the TP
    ranks of a stage; pipeline stages run one after another for one token, so one sequence gets at most
    TP x bandwidth / active bytes. A batch of c sequences per replica shares each weight it reads
    (weight_bytes_read_per_step), reading on all the replica's GPUs at once at best; and no plan exceeds all GPUs'
    peak FLOP/s over 2 x active params per token. KV-cache reads, communication and kernel efficiency are ignored,
    which is what makes this an upper bound.
    """
    r, layout = fit.request, fit.layout
    bandwidth = r.gpu.hbm_tb_s * 1e12
    single = layout.tensor_parallel * bandwidth / r.model.active_weight_bytes(r.precision)
    per_replica = math.ceil(r.concurrency / layout.data_parallel)
    replica_gpus = layout.tensor_parallel * layout.pipeline_parallel
    step_bytes = weight_bytes_read_per_step(r.model, r.precision, per_replica)
    memory_bound = min(r.concurrency * single,
                       layout.data_parallel * per_replica * replica_gpus * bandwidth / step_bytes)
    tflops = r.gpu.dense_tflops.get(r.precision, r.gpu.dense_tflops["bf16"])
    compute_bound = layout.total_gpus * tflops * 1e12 / (2 * r.model.active_params_b * 1e9)
    if compute_bound < memory_bound:
        return ThroughputBound(min(single, compute_bound), compute_bound, "compute")
    return ThroughputBound(single, memory_bound, "memory bandwidth")


def one_server_alternatives(req: FitRequest) -> list[Alternative]:
    """Every single server of the catalogue that fits the request at the precision it asks for, cheapest first: the
    answer to "can it run as asked on one machine?", which the cheapest-first alternatives can crowd out (8x B300
    holds the BF16 checkpoint, docs/sources.md#aws-gpu-instances, but costs more than NVFP4 on cheaper GPUs)."""
    fitting = alternatives(req, limit=len(INSTANCE_TYPES), max_nodes=1)
    return [a for a in fitting if a.precision == req.precision and a.nodes == 1]


def with_one_server_alternatives(fit: FitResult) -> FitResult:
    """`fit` with its one-server alternatives at the requested precision added to the cheapest ones, cheapest first
    (a fitting result keeps none)."""
    if fit.fits:
        return fit
    shown = {(a.instance_type, a.precision, a.nodes) for a in fit.alternatives}
    extra = [a for a in one_server_alternatives(fit.request) if (a.instance_type, a.precision, a.nodes) not in shown]
    if not extra:
        return fit
    merged = sorted((*fit.alternatives, *extra), key=lambda a: (a.usd_per_hour is None, a.usd_per_hour or 0.0))
    return replace(fit, alternatives=tuple(merged))


@dataclass(frozen=True)
class CostEstimate:
    usd_per_hour: float | None
    ttl_hours: float
    max_spend_usd: float | None  # $/hour at the most instances x TTL: the evaluation's cost if nobody ends it early
    usd_per_million_output_tokens: float | None  # at the throughput upper bound, so a lower bound on cost
    capex_usd: float | None
    price_read: str

    def to_json(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def cost_estimate(instance: InstanceType, count: int, ttl_hours: float, bound: ThroughputBound,
                  peak_count: int | None = None) -> CostEstimate:
    """What `count` servers of `instance` cost per hour, and at most over the time-to-live when scaling can take
    them to `peak_count` (an autoscaling maximum)."""
    hourly = None if instance.usd_per_hour is None else instance.usd_per_hour * count
    per_million = None
    if hourly is not None and bound.aggregate_tokens_per_s > 0:
        per_million = hourly / (bound.aggregate_tokens_per_s * 3600) * 1e6
    return CostEstimate(
        usd_per_hour=hourly,
        ttl_hours=ttl_hours,
        max_spend_usd=None if hourly is None else instance.usd_per_hour * max(count, peak_count or 0) * ttl_hours,
        usd_per_million_output_tokens=per_million,
        capex_usd=None if instance.capex_usd is None else instance.capex_usd * count,
        price_read=instance.price_read,
    )


def expires_at(now: datetime, ttl_hours: float) -> datetime:
    """The expiry instant: now + TTL, rounded up to the whole minute, in UTC."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    end = now.astimezone(UTC) + timedelta(hours=ttl_hours)
    if end.second or end.microsecond:
        end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end


def iso_utc(instant: datetime) -> str:
    """ISO 8601 UTC with a Z, the form of the nemotron-deploy:expires-at tag (2026-12-01T18:00:00Z)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BreakEven:
    scenario: str
    capex_usd: float
    rent_usd_per_month: float
    own_opex_usd_per_month: float
    months: float  # inf when renting is cheaper than running what one owns

    def to_json(self) -> dict:
        return {**self.__dict__, "months": None if math.isinf(self.months) else round(self.months, 1)}


def break_even(scenario: str, capex_usd: float, rent_usd_per_month: float,
               own_opex_usd_per_month: float = 0.0) -> BreakEven:
    """Months after which owning costs less than renting: capex / (rent - own running cost)."""
    saving = rent_usd_per_month - own_opex_usd_per_month
    months = capex_usd / saving if saving > 0 else math.inf
    return BreakEven(scenario, capex_usd, rent_usd_per_month, own_opex_usd_per_month, months)


# The article's ownership table (section 9): capital cost and the cloud equivalent it quotes, per month.
ARTICLE_BREAK_EVEN = (
    ("4x GB200 NVFP4", 400_000.0, 70_000.0),
    ("8x H100 BF16 class", 300_000.0, 50_000.0),
    ("3x DGX Spark", 9_000.0, 2_000.0),
    ("4x DGX Spark", 12_000.0, 3_000.0),
)


def article_break_even() -> list[BreakEven]:
    """The article's break-even arithmetic reproduced: capex / monthly cloud equivalent (no running cost)."""
    return [break_even(name, capex, rent) for name, capex, rent in ARTICLE_BREAK_EVEN]
