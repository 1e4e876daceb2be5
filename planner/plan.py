"""A stack's plan: config -> the core plan (fit, layout, serving command, cost, expiry, tags), then the plan of the
stack's target (planner/targets/). Computed once, passed down: the only module that dispatches to the targets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from planner.budget import budget_warnings
from planner.core import CorePlan
from planner.errors import PlanInputError
from planner.estimates import cost_estimate, decode_upper_bound, expires_at, iso_utc
from planner.fit import FitRequest, plan_fit
from planner.hardware import GPUS, instance_type
from planner.models import load_model
from planner.regions import offering_caution
from planner.serving import ServingOptions, render_nim, render_vllm
from planner.stack_config import MAX_TTL_HOURS, PROJECT, TARGET_PLATFORM, StackConfig, StackFile
from planner.startup import StartupBudget
from planner.tags import stack_tags
from planner.targets.ec2 import Ec2Plan, plan_ec2
from planner.targets.eks import EksPlan, plan_eks
from planner.targets.jumpstart import JumpStartEndpointPlan, plan_endpoint


@dataclass(frozen=True)
class StackPlan(CorePlan):
    """Everything the components and tasks need, decided once by the planner: the core plan and its target's plan
    (one of ec2, eks, jumpstart; None for the other targets)."""

    ec2: Ec2Plan | None = None  # every ec2 stack
    eks: EksPlan | None = None  # a fitted eks stack
    jumpstart: JumpStartEndpointPlan | None = None  # the SageMaker endpoint of a fitted, resolved jumpstart stack

    def to_json(self) -> dict:
        entry = super().to_json()
        if self.jumpstart is not None:
            entry["jumpstart"] = self.jumpstart.to_json()
        startup = self.startup
        if startup is not None and self.fit.fits:
            entry["cold_start"] = startup.to_json()
        return entry

    @property
    def startup(self) -> StartupBudget | None:
        """The cold start of the stack's target: its nodes' (ec2, eks), or SageMaker's download and load from which
        the endpoint's two timeouts follow (jumpstart, resolved)."""
        target = self.ec2 or self.eks
        if target is not None:
            return target.startup
        if self.jumpstart is not None:
            return replace(self.jumpstart.timeouts.budget, usd_per_hour=self.cost.usd_per_hour)
        return None


def serving_options(config: StackConfig) -> ServingOptions:
    streamed = (config.target in ("ec2", "eks") and config.engine == "vllm" and config.weights_s3_uri is not None
                and config.weights_loader != "nvme")
    return ServingOptions(mtp_tokens=config.mtp_tokens, extra_args=tuple(config.vllm_extra_args),
                          stream_from=config.weights_s3_uri if streamed else None)


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
            pipeline_parallel=c.pipeline_parallel, max_num_batched_tokens=c.max_num_batched_tokens))
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
    peak = peak_nodes(c)
    cost = cost_estimate(itype, c.nodes, c.ttl_hours, bound, peak_count=peak)
    warnings += budget_warnings(c, cost.max_spend_usd)  # what the stack's budget cannot do (planner/budget.py)
    caution = offering_caution(itype.name, stack.region or "")  # public offering data is incomplete: a caution only
    if caution and stack.region:
        warnings.append(f"{caution}; preflight checks the offering in the account")
    core = CorePlan(stack.name, stack.source, stack.region or "", c, itype, fit, serving, bound, cost, expiry,
                    stack_tags(stack.name, c.owner, expiry), tuple(warnings), peak)
    return target_plan(core)


def peak_nodes(config: StackConfig) -> int:
    """Instances the stack may run at once: its nodes, or the node group / endpoint maximum when larger."""
    c = config
    return max(c.nodes, c.jumpstart.max_capacity if c.jumpstart else 0, (c.eks.max_nodes or 0) if c.eks else 0)


def target_plan(core: CorePlan) -> StackPlan:
    """The core plan with its target's plan, each computed here once."""
    fields = {name: getattr(core, name) for name in CorePlan.__dataclass_fields__}
    if core.target == "ec2":
        return StackPlan(**fields, ec2=plan_ec2(core))
    if core.target == "eks" and core.serving is not None:
        return StackPlan(**fields, eks=plan_eks(core))
    if core.target == "jumpstart" and core.fit.fits:
        endpoint, more = plan_endpoint(core)
        return StackPlan(**fields | {"warnings": core.warnings + more}, jumpstart=endpoint)
    return StackPlan(**fields)


_FIELD_TO_KEY = {"tensor_parallel": "tensorParallel", "pipeline_parallel": "pipelineParallel",
                 "context": "contextTokens", "kv_cache_dtype": "kvCacheDtype",
                 "gpu_memory_utilization": "gpuMemoryUtilization", "vllmExtraArgs": "vllmExtraArgs",
                 "max_num_batched_tokens": "maxNumBatchedTokens"}


def _config_key(planner_field: str) -> str:
    """The stack-config key a planner field comes from, so errors name what the user wrote."""
    return _FIELD_TO_KEY.get(planner_field, planner_field)
