"""The hardware catalogue: accelerators, EC2 and SageMaker instance types, the DGX Spark node. One table, one place.

Memory figures are what the driver reports as usable (nvidia-smi), not the marketing "GB": an "80 GB" H100 shows
81,559 MiB = 79.6 GiB, a "141 GB" H200 143,771 MiB = 140.4 GiB. A GB10 has 128 GB (decimal) of LPDDR5x shared with
the operating system. Prices are approximate on-demand list prices in us-east-1 on the date in `price_read`; a
price of None means AWS publishes none for on-demand use (Capacity Blocks or UltraServers only).
"""

from __future__ import annotations

import re
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

    @property
    def nvlink(self) -> bool:
        """GPUs joined by NVLink inside a server (not PCIe only)."""
        return self.interconnect.startswith("NVLink")

    def serves(self, precision: str) -> bool:
        return precision in self.precisions or precision in dict(self.weight_only)

    def compute_precision(self, precision: str) -> str:
        """The precision the math runs at for weights stored at `precision`."""
        return precision if precision in self.precisions else dict(self.weight_only).get(precision, "bf16")


# Weight-only formats (docs/sources.md#weight-precisions): INT4 (AWQ/GPTQ) and INT8 W8A16 run on Marlin kernels
# (Ampere and newer) with BF16 math everywhere. Hopper has no FP4 math: NVFP4 and MXFP4 weights run W4A16 there.
# INT8 W8A8 needs vLLM's CUTLASS INT8 kernels, built for SM < 100 only: Blackwell (B200, GB200, GB10) refuses it.
_WEIGHT_ONLY_INT = (("int8-w8a16", "bf16"), ("int4", "bf16"))
_HOPPER_WEIGHT_ONLY = (("nvfp4", "bf16"), ("mxfp4", "bf16")) + _WEIGHT_ONLY_INT
_BLACKWELL_WEIGHT_ONLY = _WEIGHT_ONLY_INT
# Ampere has no FP8 math either: vLLM serves FP8 weights there W8A16 (Marlin FP8), besides the FP4 formats.
_AMPERE_WEIGHT_ONLY = (("fp8", "bf16"),) + _HOPPER_WEIGHT_ONLY
# The vLLM kernels that serve a weight-only format, for the plan's notes.
WEIGHT_ONLY_KERNELS = {
    "nvfp4": "W4A16, Marlin FP4 kernels", "mxfp4": "W4A16, Triton or Marlin MXFP4 kernels",
    "int4": "W4A16, Marlin kernels (AWQ/GPTQ)", "int8-w8a16": "W8A16, Marlin kernels (GPTQ 8-bit)",
    "fp8": "W8A16, Marlin FP8 kernels",
}

GPUS: dict[str, Gpu] = {
    g.key: g
    for g in (
        Gpu("h100", "H100 SXM 80GB", 79.6, 3.35, "NVLink4 900 GB/s", ("bf16", "fp8", "int8"),
            {"bf16": 989.0, "fp8": 1979.0}, weight_only=_HOPPER_WEIGHT_ONLY),
        Gpu("h200", "H200 SXM 141GB", 140.4, 4.8, "NVLink4 900 GB/s", ("bf16", "fp8", "int8"),
            {"bf16": 989.0, "fp8": 1979.0}, weight_only=_HOPPER_WEIGHT_ONLY),
        Gpu("b200", "B200 180GB", 178.35, 8.0, "NVLink5 1.8 TB/s", ("bf16", "fp8", "nvfp4", "mxfp4"),
            {"bf16": 2250.0, "fp8": 4500.0, "nvfp4": 9000.0}, source="docs/sources.md#accelerators (178.35 measured)",
            fp4_moe_backend="flashinfer_trtllm", weight_only=_BLACKWELL_WEIGHT_ONLY),
        Gpu("gb200", "GB200 (B200 in a Grace superchip) 186GB", 184.0, 8.0, "NVLink5 NVL72",
            ("bf16", "fp8", "nvfp4", "mxfp4"), {"bf16": 2500.0, "fp8": 5000.0, "nvfp4": 10000.0}, arch="arm64",
            source="docs/sources.md#accelerators; usable memory assumed 184 GiB of 186 GB",
            fp4_moe_backend="flashinfer_trtllm", weight_only=_BLACKWELL_WEIGHT_ONLY),
        Gpu("gb10", "GB10 (DGX Spark) 128GB unified", 119.2, 0.273, "2x ConnectX-7 QSFP 200 Gb/s RoCE",
            ("bf16", "fp8", "nvfp4"), {"bf16": 62.0, "fp8": 125.0, "nvfp4": 250.0}, unified_memory=True,
            arch="arm64", source="docs/sources.md#accelerators; 128 GB decimal = 119.2 GiB, shared with the OS",
            fp4_moe_backend="flashinfer_cutlass", weight_only=(("mxfp4", "bf16"),) + _BLACKWELL_WEIGHT_ONLY),
        # The GPUs of the other AWS families (docs/sources.md#aws-gpu-instances). Memory is AWS's per-GPU figure
        # from its instance specifications, not a driver reading: the driver may report a little less (an H100 AWS
        # lists at 80 GiB shows 79.6). Ampere and Ada have no FP4 math: Marlin serves FP4 weights there W4A16, as
        # on Hopper. Ampere has no FP8 either (A100, A10G); Ada has (L40S, L4).
        Gpu("b300", "B300 (Blackwell Ultra) 288GB", 268.0, 8.0, "NVLink5 1.8 TB/s", ("bf16", "fp8", "nvfp4", "mxfp4"),
            {"bf16": 2250.0, "fp8": 4500.0, "nvfp4": 13500.0},
            source="docs/sources.md#aws-gpu-instances; 268 GiB per GPU as AWS lists it, driver figure unconfirmed",
            fp4_moe_backend="flashinfer_trtllm", weight_only=_BLACKWELL_WEIGHT_ONLY),
        Gpu("a100-80", "A100 SXM4 80GB", 80.0, 2.039, "NVLink3 600 GB/s", ("bf16", "int8"), {"bf16": 312.0},
            source="docs/sources.md#aws-gpu-instances; 80 GiB as AWS lists it", weight_only=_AMPERE_WEIGHT_ONLY),
        Gpu("a100-40", "A100 SXM4 40GB", 40.0, 1.555, "NVLink3 600 GB/s", ("bf16", "int8"), {"bf16": 312.0},
            source="docs/sources.md#aws-gpu-instances; 40 GiB as AWS lists it", weight_only=_AMPERE_WEIGHT_ONLY),
        Gpu("l40s", "L40S 48GB", 44.0, 0.864, "PCIe Gen4 x16, no NVLink", ("bf16", "fp8", "int8"),
            {"bf16": 362.0, "fp8": 733.0}, source="docs/sources.md#aws-gpu-instances; 44 GiB as AWS lists it",
            weight_only=_HOPPER_WEIGHT_ONLY),
        Gpu("l4", "L4 24GB", 22.0, 0.3, "PCIe Gen4 x16, no NVLink", ("bf16", "fp8", "int8"),
            {"bf16": 121.0, "fp8": 242.0}, source="docs/sources.md#aws-gpu-instances; 22 GiB as AWS lists it",
            weight_only=_HOPPER_WEIGHT_ONLY),
        Gpu("a10g", "A10G 24GB", 22.0, 0.6, "PCIe Gen4 x16, no NVLink", ("bf16", "int8"), {"bf16": 125.0},
            source="docs/sources.md#aws-gpu-instances; 22 GiB as AWS lists it; TFLOPS of the A10, A10G's unpublished",
            weight_only=_AMPERE_WEIGHT_ONLY),
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
# docs/sources.md#aws-gpu-instances: AWS's list prices as a third-party price table carries them (read 2026-12-01).
_AWS_GPU_PRICE_DATE = "2026-12, us-east-1 on-demand, approximate (third-party figure)"
_B300_PRICE = "2025-12, us-west-2 on-demand (third-party figure); us-east-1 price unconfirmed"
_P5_4XL_PRICE = "unconfirmed: assumed one eighth of p5.48xlarge (55.04 / 8)"

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
        # The other AWS GPU families (docs/sources.md#aws-gpu-instances): the 8-GPU, 4-GPU and 1-GPU xlarge sizes.
        InstanceType("p6-b300.48xlarge", "ec2", "b300", 8, 192, 4096, "8x 3.8 TB", 8, 16, 142.42, _B300_PRICE,
                     note="6.4 Tbps EFA on 16 cards plus a dedicated ENA card (17 network cards)"),
        InstanceType("p5.4xlarge", "ec2", "h100", 1, 16, 256, "1x 3.8 TB", 1, 1, 6.88, _P5_4XL_PRICE),
        InstanceType("p4d.24xlarge", "ec2", "a100-40", 8, 96, 1152, "8x 1 TB", 8, 4, 21.96, _AWS_GPU_PRICE_DATE),
        InstanceType("p4de.24xlarge", "ec2", "a100-80", 8, 96, 1152, "8x 1 TB", 8, 4, 27.45, _AWS_GPU_PRICE_DATE),
        InstanceType("g6e.xlarge", "ec2", "l40s", 1, 4, 32, "1x 250 GB", 1, 0, 1.86, _AWS_GPU_PRICE_DATE),
        InstanceType("g6e.12xlarge", "ec2", "l40s", 4, 48, 384, "2x 1.9 TB", 2, 1, 10.49, _AWS_GPU_PRICE_DATE),
        InstanceType("g6e.48xlarge", "ec2", "l40s", 8, 192, 1536, "4x 1.9 TB", 4, 4, 30.13, _AWS_GPU_PRICE_DATE),
        InstanceType("g6.xlarge", "ec2", "l4", 1, 4, 16, "1x 250 GB", 1, 0, 0.80, _AWS_GPU_PRICE_DATE),
        InstanceType("g6.12xlarge", "ec2", "l4", 4, 48, 192, "4x 940 GB", 4, 1, 4.60, _AWS_GPU_PRICE_DATE),
        InstanceType("g6.48xlarge", "ec2", "l4", 8, 192, 768, "8x 940 GB", 8, 1, 13.35, _AWS_GPU_PRICE_DATE),
        InstanceType("g5.xlarge", "ec2", "a10g", 1, 4, 16, "1x 250 GB", 1, 0, 1.01, _AWS_GPU_PRICE_DATE),
        InstanceType("g5.12xlarge", "ec2", "a10g", 4, 48, 192, "1x 3.8 TB", 1, 1, 5.67, _AWS_GPU_PRICE_DATE),
        InstanceType("g5.48xlarge", "ec2", "a10g", 8, 192, 768, "2x 3.8 TB", 2, 1, 16.29, _AWS_GPU_PRICE_DATE),
        InstanceType("ml.p6-b300.48xlarge", "sagemaker", "b300", 8, 192, 4096, "8x 3.8 TB", 8, 0, 178.03,
                     _SM_PRICE_NOTE),
        InstanceType("ml.p5.4xlarge", "sagemaker", "h100", 1, 16, 256, "1x 3.8 TB", 1, 0, 8.60, _SM_PRICE_NOTE),
        InstanceType("ml.p4d.24xlarge", "sagemaker", "a100-40", 8, 96, 1152, "8x 1 TB", 8, 0, 27.45, _SM_PRICE_NOTE),
        InstanceType("ml.p4de.24xlarge", "sagemaker", "a100-80", 8, 96, 1152, "8x 1 TB", 8, 0, 34.31,
                     _SM_PRICE_NOTE),
        InstanceType("ml.g6e.xlarge", "sagemaker", "l40s", 1, 4, 32, "1x 250 GB", 1, 0, 2.33, _SM_PRICE_NOTE),
        InstanceType("ml.g6e.12xlarge", "sagemaker", "l40s", 4, 48, 384, "2x 1.9 TB", 2, 0, 13.12, _SM_PRICE_NOTE),
        InstanceType("ml.g6e.48xlarge", "sagemaker", "l40s", 8, 192, 1536, "4x 1.9 TB", 4, 0, 37.66, _SM_PRICE_NOTE),
        InstanceType("ml.g6.xlarge", "sagemaker", "l4", 1, 4, 16, "1x 250 GB", 1, 0, 1.00, _SM_PRICE_NOTE),
        InstanceType("ml.g6.12xlarge", "sagemaker", "l4", 4, 48, 192, "4x 940 GB", 4, 0, 5.75, _SM_PRICE_NOTE),
        InstanceType("ml.g6.48xlarge", "sagemaker", "l4", 8, 192, 768, "8x 940 GB", 8, 0, 16.69, _SM_PRICE_NOTE),
        InstanceType("ml.g5.xlarge", "sagemaker", "a10g", 1, 4, 16, "1x 250 GB", 1, 0, 1.26, _SM_PRICE_NOTE),
        InstanceType("ml.g5.12xlarge", "sagemaker", "a10g", 4, 48, 192, "1x 3.8 TB", 1, 0, 7.09, _SM_PRICE_NOTE),
        InstanceType("ml.g5.48xlarge", "sagemaker", "a10g", 8, 192, 768, "2x 3.8 TB", 2, 0, 20.36, _SM_PRICE_NOTE),
        InstanceType("dgx-spark", "spark", "gb10", 1, 20, 0, "4 TB", 1, 0, None, "owned hardware",
                     capex_usd=3000.0, note="capex per node as the article's break-even table implies"),
    )
}


# Published network performance in Gb/s (docs/sources.md#aws-gpu-instances; "up to" figures taken as given; the
# ml. types as their EC2 counterparts; a DGX Spark's 10 GbE port, its way to the internet and S3).
NETWORK_GBPS: dict[str, float] = {
    "p5.48xlarge": 3200, "p5e.48xlarge": 3200, "p5en.48xlarge": 3200, "p6-b200.48xlarge": 3200,
    "p6-b300.48xlarge": 6400, "p5.4xlarge": 100, "p4d.24xlarge": 400, "p4de.24xlarge": 400,
    "g6e.xlarge": 20, "g6e.12xlarge": 100, "g6e.48xlarge": 400, "g6.xlarge": 10, "g6.12xlarge": 40,
    "g6.48xlarge": 100, "g5.xlarge": 10, "g5.12xlarge": 40, "g5.48xlarge": 100, "dgx-spark": 10,
}


def instance_store_gb(instance: InstanceType) -> float:
    """The instance-store NVMe capacity in GB, from the catalogue's `8x 3.8 TB` form (0 without instance storage)."""
    match = re.fullmatch(r"(\d+)x ([\d.]+) (TB|GB)", instance.nvme)
    if match is None:
        return 0.0
    count, size, unit = int(match.group(1)), float(match.group(2)), match.group(3)
    return count * size * (1000 if unit == "TB" else 1)


def network_gbps(instance: InstanceType) -> float | None:
    """The instance's published network bandwidth in Gb/s, or None where the catalogue has no figure."""
    return NETWORK_GBPS.get(instance.name.removeprefix("ml."))


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
        raise PlanInputError(field, name, allowed_types(allowed))
    return INSTANCE_TYPES[name]


def allowed_types(names: list[str]) -> str:
    """Instance type names as a person reads them, families of three or more sizes folded into one entry per size
    set (`g6e/g6/g5.{xlarge,12xlarge,48xlarge}`), so the list stays one line however many sizes the catalogue has."""
    sizes: dict[str, list[str]] = {}
    for n in names:
        family, _, size = n.rpartition(".")
        sizes.setdefault(family, []).append(size)
    folded: dict[tuple[str, ...], list[str]] = {}
    for family, family_sizes in sizes.items():
        if len(family_sizes) >= 3:
            folded.setdefault(tuple(family_sizes), []).append(family)
    shown = [n for n in names if len(sizes[n.rpartition(".")[0]]) < 3]
    shown += [f"{'/'.join(families)}.{{{','.join(size_set)}}}" for size_set, families in folded.items()]
    return one_of(shown)
