"""The core of a stack's plan: what every target shares (fit, layout, serving command, cost, expiry, tags).

planner/plan.py computes it once, hands it to the stack's target (planner/targets/) for the target's own plan, and
returns both as one StackPlan. The targets build on this module, never on planner/plan.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from planner.estimates import CostEstimate, ThroughputBound, iso_utc
from planner.fit import FitResult
from planner.hardware import InstanceType
from planner.serving import NimEnvironment, VllmCommand
from planner.stack_config import StackConfig


@dataclass(frozen=True)
class CorePlan:
    """Everything a stack's plan decides whatever its target."""

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
    peak_nodes: int  # instances the stack may run at once: its nodes, or the node group / endpoint maximum

    @property
    def target(self) -> str:
        return self.config.target

    @property
    def engine(self) -> str:
        return self.config.engine or "vllm"

    def to_json(self) -> dict:
        c = self.config
        return {
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
