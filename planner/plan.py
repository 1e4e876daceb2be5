"""A stack's plan: config -> fit, layout, serving command, cost, expiry and tags. Computed once, passed down."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from planner.budget import budget_warnings
from planner.errors import PlanInputError
from planner.estimates import CostEstimate, ThroughputBound, cost_estimate, decode_upper_bound, expires_at, iso_utc
from planner.fit import FitRequest, FitResult, plan_fit
from planner.hardware import GPUS, InstanceType, instance_type
from planner.models import load_model
from planner.serving import NimEnvironment, ServingOptions, VllmCommand, render_nim, render_vllm
from planner.stack_config import MAX_TTL_HOURS, PROJECT, TARGET_PLATFORM, StackConfig, StackFile

if TYPE_CHECKING:
    from planner.jumpstart import JumpStartEndpointPlan

TAG_STACK = f"{PROJECT}:stack"
TAG_OWNER = f"{PROJECT}:owner"
TAG_EXPIRES_AT = f"{PROJECT}:expires-at"


@dataclass(frozen=True)
class StackPlan:
    """Everything the components and tasks need, decided once by the planner."""

    stack: str
    source: str
    region: str
    config: StackConfig
    instance: InstanceType
    fit: FitResult
    serving: VllmCommand | NimEnvironment | None  # None for JumpStart (the hub's container) or when it does not fit
    throughput: ThroughputBound
    cost: CostEstimate
    expires_at: datetime
    tags: dict[str, str]
    warnings: tuple[str, ...]
    jumpstart: JumpStartEndpointPlan | None = None  # the SageMaker endpoint of a fitted, resolved jumpstart stack

    @property
    def target(self) -> str:
        return self.config.target

    @property
    def engine(self) -> str:
        return self.config.engine or "vllm"

    def to_json(self) -> dict:
        c = self.config
        entry = {
            "stack": self.stack,
            "target": c.target,
            "engine": self.engine,
            "region": self.region,
            "instance_type": self.instance.name,
            "nodes": c.nodes,
            "fit": self.fit.to_json(),
            "layout": {"tensor_parallel": self.fit.layout.tensor_parallel,
                       "pipeline_parallel": self.fit.layout.pipeline_parallel,
                       "data_parallel": self.fit.layout.data_parallel,
                       "expert_parallel": self.fit.layout.expert_parallel,
                       "description": self.fit.layout.describe()},
            "serving": self.serving.to_json() if self.serving else {"engine": self.engine},
            "throughput": self.throughput.to_json(),
            "cost": self.cost.to_json(),
            "ttl_hours": c.ttl_hours,
            "expires_at": iso_utc(self.expires_at),
            "tags": dict(self.tags),
            "warnings": list(self.warnings),
        }
        if self.jumpstart is not None:
            entry["jumpstart"] = self.jumpstart.to_json()
        return entry


def serving_options(config: StackConfig) -> ServingOptions:
    return ServingOptions(mtp_tokens=config.mtp_tokens, extra_args=tuple(config.vllm_extra_args))


def plan_stack(stack: StackFile, now: datetime) -> StackPlan:
    """Plan one stack at instant `now` (the expiry is now + TTL unless the config pins expiresAt)."""
    c = stack.config
    try:
        itype = instance_type(c.instance_type, TARGET_PLATFORM[c.target], field=f"{PROJECT}:instanceType")
        model = load_model(c.model, field_name=f"{PROJECT}:model")
        fit = plan_fit(FitRequest(
            model=model, gpu=GPUS[itype.gpu], gpus_per_node=itype.gpus, nodes=c.nodes, precision=c.precision,
            context=c.context_tokens, concurrency=c.concurrency, kv_cache_dtype=c.kv_cache_dtype,
            gpu_memory_utilization=c.gpu_memory_utilization, tensor_parallel=c.tensor_parallel,
            pipeline_parallel=c.pipeline_parallel))
        serving = None
        if fit.fits and c.engine == "vllm":
            serving = render_vllm(fit, serving_options(c))
        elif fit.fits and c.engine == "nim":
            serving = render_nim(fit, serving_options(c))
    except PlanInputError as err:
        if err.source:
            raise
        field = err.field if err.field.startswith(f"{PROJECT}:") else f"{PROJECT}:{_config_key(err.field)}"
        raise PlanInputError(field, err.value, err.allowed, stack.source) from None

    warnings = list(fit.warnings) + list(serving.warnings if serving else ())
    if c.expires_at is not None:
        expiry = c.expires_at
        if expiry <= now:
            warnings.append(f"expiresAt {iso_utc(expiry)} is already past: the reaper will delete this stack")
        elif expiry - now > timedelta(hours=MAX_TTL_HOURS):
            raise PlanInputError(f"{PROJECT}:expiresAt", iso_utc(expiry),
                                 f"at most {MAX_TTL_HOURS} hours from now", stack.source)
    else:
        # Not decided yet: the plan assumes a renewal now. `pulumi up` refuses to deploy on it (the expiry would move
        # with every update); `python -m scripts.renew STACK` writes it into the stack file once.
        expiry = expires_at(now, c.ttl_hours)
        warnings.append(f"expiresAt is not set: the plan assumes now + {c.ttl_hours:g} h; set it once with "
                        f"`python -m scripts.renew {stack.name}` before `pulumi up` (a re-run never moves it then)")
    bound = decode_upper_bound(fit)
    peak = max(c.nodes, c.jumpstart.max_capacity if c.jumpstart else 0, (c.eks.max_nodes or 0) if c.eks else 0)
    cost = cost_estimate(itype, c.nodes, c.ttl_hours, bound, peak_count=peak)
    warnings += budget_warnings(c, cost.max_spend_usd)  # what the stack's budget cannot do (planner/budget.py)
    tags = {TAG_STACK: stack.name, TAG_OWNER: c.owner, TAG_EXPIRES_AT: iso_utc(expiry)}
    plan = StackPlan(stack.name, stack.source, stack.region or "", c, itype, fit, serving, bound, cost, expiry, tags,
                     tuple(warnings))
    if c.target == "jumpstart" and fit.fits:
        from planner.jumpstart import plan_endpoint  # it builds on StackPlan: imported here to keep imports one-way

        endpoint, more = plan_endpoint(plan)
        plan = replace(plan, jumpstart=endpoint, warnings=plan.warnings + more)
    return plan


_FIELD_TO_KEY = {"tensor_parallel": "tensorParallel", "pipeline_parallel": "pipelineParallel",
                 "context": "contextTokens", "kv_cache_dtype": "kvCacheDtype",
                 "gpu_memory_utilization": "gpuMemoryUtilization", "vllmExtraArgs": "vllmExtraArgs"}


def _config_key(planner_field: str) -> str:
    """The stack-config key a planner field comes from, so errors name what the user wrote."""
    return _FIELD_TO_KEY.get(planner_field, planner_field)
