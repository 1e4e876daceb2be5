"""The cold start of a GPU node, term by term, and the startup timeout that follows from it: shared by every target
that loads the weights itself.

Cold start = boot (launch, OS, image pull) + stage (S3 or the hub to local NVMe; nothing when the weights stream from
S3 straight into GPU memory) + load (into GPU memory) + warm-up (torch.compile, CUDA graphs, MTP, Ray placement).
Each rate has its source in docs/sources.md#cold-start, or is marked there as an assumption; `make plan` prints the
terms, the redeploy with warm caches (vLLM's compile cache restored from S3) and the dollars one cold start costs.

The timeout every target derives (the EC2 boot script's wait, the EKS startup probe, the not-ready alarm) is the
modelled cold start x STARTUP_MARGIN, capped at the time-to-live: the model is an estimate, and a timeout that fires
on a slow but healthy start costs a whole cold start again. JumpStart derives its two timeouts from the same rates.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from planner.core import CorePlan
from planner.hardware import GIB, network_gbps
from planner.serving import STREAM_CONCURRENCY

# docs/sources.md#cold-start: every rate below, with its source or marked as an assumption.
S3_CONNECTION_GBPS = 5  # one connection to S3 at most; more need more connections (ranged GETs)
S3_EFFICIENCY = 0.6  # Run:ai Model Streamer from S3: 15 GB in 4.88 s on a 40 Gb/s g5.12xlarge (3.07 of 5 GB/s)
SYNC_CONNECTIONS = 64  # the boot script's `aws s3 sync` (max_concurrent_requests)
S3_STAGE_GB_S = 1.0  # JumpStart: SageMaker's download of the artifact prefix (no figure published; pessimistic)
HF_STAGE_GB_S = 0.2  # one host pulling from the Hugging Face CDN, below plain Python's ~0.5 GB/s ceiling
LOAD_GB_S = 2.0  # safetensors from local disk into GPU memory, vLLM's default loader, all ranks together
LOCAL_STREAM_GB_S_PER_GPU = 2.0  # Run:ai Model Streamer from local io2: 15 GB in 7.53 s into one GPU
BOOT_S = 3 * 60  # assumption: instance launch, OS boot and the vLLM image pull, before any weight moves
WARMUP_S = 20 * 60  # CUDA graphs, torch.compile, MTP and expert-parallel warm-up, Ray placement
WARM_CACHE_WARMUP_S = 5 * 60  # assumption: with vLLM's compile cache restored; CUDA-graph capture remains
# The Ray head's port on a multi-node layout (EC2 servers and EKS LeaderWorkerSets alike).
RAY_PORT = 6379
LOADERS = ("stream", "nvme")  # with a staged copy in S3: stream it into GPU memory, or stage it on NVMe first
COMPILE_CACHE_PREFIX = "nemotron-deploy/compile-cache"
STARTUP_MARGIN = 1.5  # the timeout over the modelled cold start


@dataclass(frozen=True)
class StartupBudget:
    """How long a node may take from boot to a healthy endpoint, and why: the cold start, term by term.

    `total_s` (boot + stage + load + cold warm-up, capped at the TTL) is the timeout every target derives from;
    `warm_total_s` is the same start with vLLM's compile cache restored from S3 (a redeploy of the same stack)."""

    weights_gb: float
    source: str  # "the S3 mirror" or "Hugging Face"
    stage_gb_s: float  # 0: nothing staged (streamed)
    stage_s: int
    load_s: int
    warmup_s: int
    cap_s: int  # never more than the stack's time-to-live
    load_gb_s: float = LOAD_GB_S
    boot_s: int = 0
    loader: str = "nvme"  # stream | nvme | hub
    warm_warmup_s: int | None = None  # None: no compile cache, a redeploy warms up as long as the first start
    usd_per_hour: float | None = None  # every node of the stack
    rates: tuple[str, ...] = ()  # each rate with where it comes from (docs/sources.md#cold-start)

    @property
    def total_s(self) -> int:
        return min(self.boot_s + self.stage_s + self.load_s + self.warmup_s, self.cap_s)

    @property
    def timeout_s(self) -> int:
        """What the targets wait for a healthy endpoint: the modelled cold start x STARTUP_MARGIN, within the TTL."""
        return min(math.ceil(self.total_s * STARTUP_MARGIN), self.cap_s)

    @property
    def warm_total_s(self) -> int:
        warmup = self.warmup_s if self.warm_warmup_s is None else self.warm_warmup_s
        return min(self.boot_s + self.stage_s + self.load_s + warmup, self.cap_s)

    @property
    def weight_load_s(self) -> int:
        """From S3 (or the hub) into GPU memory: staging plus loading."""
        return self.stage_s + self.load_s

    def usd_per_cold_start(self) -> float | None:
        return None if self.usd_per_hour is None else round(self.total_s / 3600 * self.usd_per_hour, 2)

    def describe(self) -> str:
        staged = (f"stage {self.weights_gb:,.0f} GB from {self.source} at {self.stage_gb_s:g} GB/s ({self.stage_s} s)"
                  if self.stage_s else f"no staging ({self.loader}: {self.source} straight into GPU memory)")
        boot = f"boot {self.boot_s} s + " if self.boot_s else ""
        return (f"{boot}{staged} + load at {self.load_gb_s:g} GB/s ({self.load_s} s) + warm-up {self.warmup_s} s = "
                f"{self.total_s} s, x {STARTUP_MARGIN:g} = {self.timeout_s} s allowed")

    def summary(self) -> str:
        """`cold start ~ N min: stage A, load B, warm-up C`, the redeploy with warm caches and the dollars."""
        def minutes(seconds: int) -> str:
            return f"{seconds / 60:.1f} min"
        capped = " (capped at the TTL)" if self.total_s < self.boot_s + self.stage_s + self.load_s + self.warmup_s \
            else ""
        text = (f"cold start ~ {minutes(self.total_s)}{capped}: boot {minutes(self.boot_s)}, stage "
                f"{minutes(self.stage_s)}, load {minutes(self.load_s)}, warm-up {minutes(self.warmup_s)}")
        if self.warm_warmup_s is not None:
            text += f"; redeploy with warm caches ~ {minutes(self.warm_total_s)}"
        cost = self.usd_per_cold_start()
        return text + (f"; ${cost:,.2f} per cold start" if cost is not None else "")

    def to_json(self) -> dict:
        return {"loader": self.loader, "source": self.source, "weights_gb": round(self.weights_gb, 1),
                "boot_s": self.boot_s, "stage_s": self.stage_s, "stage_gb_s": self.stage_gb_s,
                "load_s": self.load_s, "load_gb_s": self.load_gb_s, "warmup_s": self.warmup_s,
                "warm_warmup_s": self.warm_warmup_s, "total_s": self.total_s, "warm_total_s": self.warm_total_s,
                "timeout_s": self.timeout_s,
                "weight_load_s": self.weight_load_s, "usd_per_cold_start": self.usd_per_cold_start(),
                "rates": list(self.rates), "summary": self.summary()}


def s3_node_gbps(plan: CorePlan, connections: int) -> tuple[float, str]:
    """What one node can read from S3 in its region, Gb/s, and why: one network card's bandwidth (S3 traffic leaves
    through one ENI, on the primary card), at most S3_CONNECTION_GBPS per connection."""
    net = network_gbps(plan.instance)
    if net is None:
        return S3_CONNECTION_GBPS * connections, f"{plan.instance.name} has no network figure: connections only"
    cards = max(plan.instance.efa_cards, 1)
    card = net / cards
    limit = min(card, S3_CONNECTION_GBPS * connections)
    return limit, (f"{card:g} Gb/s per network card ({net:g} Gb/s over {cards}), {S3_CONNECTION_GBPS} Gb/s x "
                   f"{connections} connections")


def s3_node_gb_s(plan: CorePlan, connections: int) -> tuple[float, str]:
    """GB/s one node reads from S3 at the streamer's measured share of line rate, and the arithmetic."""
    gbps, why = s3_node_gbps(plan, connections)
    rate = round(gbps / 8 * S3_EFFICIENCY, 2)
    return rate, f"S3 {rate:g} GB/s = min({why}) / 8 x {S3_EFFICIENCY:g} (the streamer's measured share of line rate)"


def weights_loader(plan: CorePlan) -> str:
    """stream | nvme with a staged copy in S3 (stream unless the stack says weightsLoader: nvme); hub without."""
    if plan.config.weights_s3_uri is None:
        return "hub"
    return plan.config.weights_loader or "stream"


def startup_budget(plan: CorePlan) -> StartupBudget:
    """The boot-to-healthy budget of a plan, term by term from the weights' size and sourced rates, capped at the TTL
    (docs/sources.md#cold-start). Called by the targets only: their plans carry the result."""
    weights_gb = plan.fit.weights_gib * GIB / 1e9
    loader, cap_s = weights_loader(plan), round(plan.config.ttl_hours * 3600)
    gpus = plan.fit.layout.tensor_parallel * plan.fit.layout.pipeline_parallel // max(plan.config.nodes, 1) or 1
    # streaming: every rank reads its share with STREAM_CONCURRENCY connections; staging: the sync's requests
    s3, s3_why = s3_node_gb_s(plan, STREAM_CONCURRENCY * gpus if loader == "stream" else SYNC_CONNECTIONS)
    # the compile cache persists to S3 on EC2 and on one-node EKS (a LeaderWorkerSet's ranks compile on every node)
    warm = WARM_CACHE_WARMUP_S if loader != "hub" and (plan.target == "ec2" or plan.fit.layout.nodes == 1) else None
    price = None if plan.cost.usd_per_hour is None else plan.cost.usd_per_hour
    common = {"boot_s": BOOT_S, "warm_warmup_s": warm, "usd_per_hour": price}
    if loader == "stream":
        return StartupBudget(weights_gb, "the staged S3 copy", 0, 0, round(weights_gb / s3), WARMUP_S, cap_s,
                             load_gb_s=s3, loader=loader, rates=(s3_why,), **common)
    if loader == "nvme":
        local = LOCAL_STREAM_GB_S_PER_GPU * gpus
        return StartupBudget(weights_gb, "the staged S3 copy", s3, round(weights_gb / s3),
                             round(weights_gb / local), WARMUP_S, cap_s, load_gb_s=local, loader=loader,
                             rates=(s3_why, f"NVMe to GPU {local:g} GB/s = {LOCAL_STREAM_GB_S_PER_GPU:g} GB/s per "
                                            f"GPU (the streamer from local disk) x {gpus}"), **common)
    hub = "NGC" if plan.engine == "nim" else "Hugging Face"  # NIM fetches its profile from NGC, at the same rate
    return StartupBudget(weights_gb, hub, HF_STAGE_GB_S, round(weights_gb / HF_STAGE_GB_S),
                         round(weights_gb / LOAD_GB_S), WARMUP_S, cap_s, loader=loader,
                         rates=(f"{hub} {HF_STAGE_GB_S:g} GB/s (one host, assumed)",
                                f"disk to GPU {LOAD_GB_S:g} GB/s (vLLM's default loader, assumed)"), **common)


def compile_cache_key(parts: dict[str, str]) -> str:
    """A short, stable key for one (vLLM version, model revision, layout) combination: what vLLM's compiled
    artefacts are valid for."""
    text = "\n".join(f"{k}={parts[k]}" for k in sorted(parts))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compile_cache_uri(plan: CorePlan, image: str) -> str | None:
    """Where a stack's vLLM compile and CUDA-graph caches persist in S3 (beside the staged weights, keyed by what
    they are valid for), or None without a staged copy."""
    uri = plan.config.weights_s3_uri
    if uri is None:
        return None
    layout = plan.fit.layout
    key = compile_cache_key({"image": image, "weights": uri.rstrip("/"), "precision": plan.fit.request.precision,
                             "gpu": plan.instance.gpu, "layout": f"tp{layout.tensor_parallel}-pp"
                             f"{layout.pipeline_parallel}-dp{layout.data_parallel}-ep{layout.expert_parallel}",
                             "context": str(plan.config.context_tokens)})
    return f"s3://{s3_location(uri).bucket}/{COMPILE_CACHE_PREFIX}/{key}/"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash


def prefix_grant(name: str, location: S3Location, partition: str, write: bool = False) -> list[dict]:
    """IAM statements for exactly one S3 prefix: list it, and read (or read and write, never delete) its objects.
    Sids `<name>List` and `<name>Read` / `<name>ReadWrite`: the staged weights and the compile cache, on EC2 and EKS."""
    bucket = f"arn:{partition}:s3:::{location.bucket}"
    return [{"Sid": f"{name}List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
             "Condition": {"StringLike": {"s3:prefix": [location.prefix, f"{location.prefix}/*"]}}},
            {"Sid": f"{name}ReadWrite" if write else f"{name}Read", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject"] if write else "s3:GetObject",
             "Resource": f"{bucket}/{location.prefix}/*"}]


def s3_location(uri: str) -> S3Location:
    """s3://bucket/a/b/ -> S3Location("bucket", "a/b")."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return S3Location(bucket, prefix.strip("/"))
