"""How long a GPU node may take from boot to a healthy endpoint, shared by every target that loads the weights itself.

The rates are deliberately pessimistic, since the budget is a timeout, not a promise (docs/sources.md#startup): the
EC2 boot script waits that long, the EKS startup probe allows that long, and JumpStart's two startup timeouts are
derived from the same rates.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.core import CorePlan
from planner.hardware import GIB

S3_STAGE_GB_S = 1.0  # aws s3 sync with 64 concurrent requests to instance-store NVMe (p5-class: 100+ Gb/s ENA)
HF_STAGE_GB_S = 0.2  # one host pulling from the Hugging Face CDN
LOAD_GB_S = 2.0  # safetensors from the NVMe RAID0 into GPU memory, all ranks together
WARMUP_S = 20 * 60  # CUDA graphs, torch.compile, MTP and expert-parallel warm-up, Ray placement
# The Ray head's port on a multi-node layout (EC2 servers and EKS LeaderWorkerSets alike).
RAY_PORT = 6379


@dataclass(frozen=True)
class StartupBudget:
    """How long a node may take from boot to a healthy endpoint, and why."""

    weights_gb: float
    source: str  # "the S3 mirror" or "Hugging Face"
    stage_gb_s: float
    stage_s: int
    load_s: int
    warmup_s: int
    cap_s: int  # never more than the stack's time-to-live

    @property
    def total_s(self) -> int:
        return min(self.stage_s + self.load_s + self.warmup_s, self.cap_s)

    def describe(self) -> str:
        return (f"{self.weights_gb:,.0f} GB from {self.source} at {self.stage_gb_s:g} GB/s ({self.stage_s} s) + "
                f"load at {LOAD_GB_S:g} GB/s ({self.load_s} s) + warm-up {self.warmup_s} s = {self.total_s} s")


def startup_budget(plan: CorePlan) -> StartupBudget:
    """The boot-to-healthy budget of a plan: weights size over stated bandwidths, capped at the TTL
    (docs/sources.md#startup). Called by the targets only: their plans carry the result."""
    weights_gb = plan.fit.weights_gib * GIB / 1e9
    from_s3 = plan.config.weights_s3_uri is not None
    stage_rate = S3_STAGE_GB_S if from_s3 else HF_STAGE_GB_S
    return StartupBudget(weights_gb, "the S3 mirror" if from_s3 else "Hugging Face", stage_rate,
                         round(weights_gb / stage_rate), round(weights_gb / LOAD_GB_S), WARMUP_S,
                         round(plan.config.ttl_hours * 3600))


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash


def s3_location(uri: str) -> S3Location:
    """s3://bucket/a/b/ -> S3Location("bucket", "a/b")."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return S3Location(bucket, prefix.strip("/"))
