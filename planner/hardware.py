"""The hardware catalogue: accelerators, EC2 and SageMaker instance types, the DGX Spark node. One table, one place.

Memory figures are what the driver reports as usable (nvidia-smi), not the marketing "GB": an "80 GB" H100 shows
81,559 MiB = 79.6 GiB, a "141 GB" H200 143,771 MiB = 140.4 GiB. A GB10 has 128 GB (decimal) of LPDDR5x shared with
the operating system. Prices are approximate on-demand list prices in us-east-1 on the date in `price_read`; a
price of None means AWS publishes none for on-demand use (Capacity Blocks or UltraServers only).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import PlanInputError, one_of

GIB = 1024**3


@dataclass(frozen=True)
class Gpu:
    """One accelerator as the planner sees it."""

    key: str
    name: str
    memory_gib: float  # usable, as the driver reports it
    hbm_tb_s: float  # memory bandwidth, TB/s (10^12 bytes/s)
    interconnect: str
    precisions: tuple[str, ...]  # weight precisions with native kernels
    dense_tflops: dict[str, float]  # dense (no sparsity) peak by precision, for the compute bound
    unified_memory: bool = False  # memory shared with the OS (GB10)
    arch: str = "x86_64"
    source: str = "docs/sources.md#accelerators"
    # Weight formats served without native math: stored at that width, computed at another (precision -> compute
    # precision). Hopper has no FP4 tensor cores; vLLM serves NVFP4 weights there as W4A16 (Marlin kernels).
    weight_only: tuple[tuple[str, str], ...] = ()
    # vLLM's --moe-backend for NVFP4 experts where the GPU has FP4 math (docs/sources.md#vllm-release): TRTLLM-GEN
    # kernels on SM100 (B200, GB200); GB10 (SM121) has no TRTLLM-GEN NVFP4 kernels, CUTLASS serves it.
    fp4_moe_backend: str | None = None

    def serves(self, precision: str) -> bool:
        return precision in self.precisions or precision in dict(self.weight_only)

    def compute_precision(self, precision: str) -> str:
        """The precision the math runs at for weights stored at `precision`."""
        return precision if precision in self.precisions else dict(self.weight_only).get(precision, "bf16")


GPUS: dict[str, Gpu] = {
    g.key: g
    for g in (
        Gpu("h100", "H100 SXM 80GB", 79.6, 3.35, "NVLink4 900 GB/s", ("bf16", "fp8"),
            {"bf16": 989.0, "fp8": 1979.0}, weight_only=(("nvfp4", "bf16"),)),
        Gpu("h200", "H200 SXM 141GB", 140.4, 4.8, "NVLink4 900 GB/s", ("bf16", "fp8"),
            {"bf16": 989.0, "fp8": 1979.0}, weight_only=(("nvfp4", "bf16"),)),
        Gpu("b200", "B200 180GB", 178.35, 8.0, "NVLink5 1.8 TB/s", ("bf16", "fp8", "nvfp4"),
            {"bf16": 2250.0, "fp8": 4500.0, "nvfp4": 9000.0}, source="docs/sources.md#accelerators (178.35 measured)",
            fp4_moe_backend="flashinfer_trtllm"),
        Gpu("gb200", "GB200 (B200 in a Grace superchip) 186GB", 184.0, 8.0, "NVLink5 NVL72",
            ("bf16", "fp8", "nvfp4"), {"bf16": 2500.0, "fp8": 5000.0, "nvfp4": 10000.0}, arch="arm64",
            source="docs/sources.md#accelerators; usable memory assumed 184 GiB of 186 GB",
            fp4_moe_backend="flashinfer_trtllm"),
        Gpu("gb10", "GB10 (DGX Spark) 128GB unified", 119.2, 0.273, "2x ConnectX-7 QSFP 200 Gb/s RoCE",
            ("bf16", "fp8", "nvfp4"), {"bf16": 62.0, "fp8": 125.0, "nvfp4": 250.0}, unified_memory=True,
            arch="arm64", source="docs/sources.md#accelerators; 128 GB decimal = 119.2 GiB, shared with the OS",
            fp4_moe_backend="flashinfer_cutlass"),
    )
}


@dataclass(frozen=True)
class InstanceType:
    """A server one can rent or buy: how many of which GPU, and what it costs."""

    name: str
    platform: str  # "ec2", "sagemaker" or "spark"
    gpu: str  # key into GPUS
    gpus: int
    vcpus: int
    memory_gib: int
    nvme: str  # instance-store NVMe, as a person reads it
    nvme_devices: int
    efa_cards: int  # network cards that take an EFA interface
    usd_per_hour: float | None
    price_read: str  # date and nature of the price figure
    capex_usd: float | None = None  # purchase price, for hardware one owns
    note: str = ""
    not_offered_in: tuple[str, ...] = ()  # regions where AWS does not offer it (the planner refuses them)


_EC2_PRICE_DATE = "2026-06, us-east-1 on-demand, approximate"
_SM_PRICE_NOTE = "estimate: EC2 price x 1.25 (SageMaker hosting premium); confirm on the SageMaker pricing page"

INSTANCE_TYPES: dict[str, InstanceType] = {
    i.name: i
    for i in (
        InstanceType("p5.48xlarge", "ec2", "h100", 8, 192, 2048, "8x 3.8 TB", 8, 32, 55.04, _EC2_PRICE_DATE,
                     note="98.32/h before the June 2025 price cut; the article quotes ~98"),
        InstanceType("p5e.48xlarge", "ec2", "h200", 8, 192, 2048, "8x 3.8 TB", 8, 32, None,
                     "not offered in us-east-1; price unconfirmed", note="use p5en.48xlarge in us-east-1",
                     not_offered_in=("us-east-1",)),
        InstanceType("p5en.48xlarge", "ec2", "h200", 8, 192, 2048, "8x 3.8 TB", 8, 16, 63.30, _EC2_PRICE_DATE),
        InstanceType("p6-b200.48xlarge", "ec2", "b200", 8, 192, 2048, "8x 3.8 TB", 8, 8, 113.93,
                     _EC2_PRICE_DATE + " (third-party figure)"),
        InstanceType("p6e-gb200.36xlarge", "ec2", "gb200", 4, 144, 960, "", 0, 0, None,
                     "UltraServer Capacity Blocks only; no on-demand price",
                     note="arm64 (Grace); sold as part of an UltraServer"),
        InstanceType("ml.p5.48xlarge", "sagemaker", "h100", 8, 192, 2048, "8x 3.8 TB", 8, 0, 68.80, _SM_PRICE_NOTE),
        InstanceType("ml.p5e.48xlarge", "sagemaker", "h200", 8, 192, 2048, "8x 3.8 TB", 8, 0, None,
                     "price unconfirmed"),
        InstanceType("ml.p5en.48xlarge", "sagemaker", "h200", 8, 192, 2048, "8x 3.8 TB", 8, 0, 79.13, _SM_PRICE_NOTE),
        InstanceType("ml.p6-b200.48xlarge", "sagemaker", "b200", 8, 192, 2048, "8x 3.8 TB", 8, 0, 142.41,
                     _SM_PRICE_NOTE),
        InstanceType("dgx-spark", "spark", "gb10", 1, 20, 0, "4 TB", 1, 0, None, "owned hardware",
                     capex_usd=3000.0, note="capex per node as the article's break-even table implies"),
    )
}


def gpu(key: str) -> Gpu:
    """The accelerator called `key`, or a PlanInputError naming the allowed ones."""
    try:
        return GPUS[key]
    except KeyError:
        raise PlanInputError("gpu", key, one_of(GPUS)) from None


def instance_type(name: str, platform: str | None = None, field: str = "instanceType") -> InstanceType:
    """The instance type called `name` (optionally restricted to one platform)."""
    allowed = [n for n, i in INSTANCE_TYPES.items() if platform is None or i.platform == platform]
    if name not in allowed:
        raise PlanInputError(field, name, one_of(allowed))
    return INSTANCE_TYPES[name]
