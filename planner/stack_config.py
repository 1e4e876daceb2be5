"""The stack config schema: one validated structure per stack, read from stacks/Pulumi.<stack>.yaml.

Keys live under the project's namespace (`nemotron-deploy:instanceType`) as Pulumi expects; provider keys under
`aws:`. Every error names the key, the value and what is allowed, in one line.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from planner.errors import PlanInputError, one_of
from planner.models import KV_CACHE_DTYPES, PRECISIONS, first_validation_error

PROJECT = "nemotron-deploy"
TARGETS = ("ec2", "jumpstart", "eks")
TARGET_PLATFORM = {"ec2": "ec2", "eks": "ec2", "jumpstart": "sagemaker"}
AWS_KEYS = ("region", "profile")
MAX_TTL_HOURS = 168  # a week: an evaluation that needs longer renews on purpose


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretRef(_Strict):
    """A Pulumi secret (`pulumi config set --secret`): ciphertext in the file, never a plain value."""

    secure: str = Field(min_length=1)


class NetworkConfig(_Strict):
    """Use an existing VPC and subnet; when absent, the stack creates a minimal private network."""

    vpc_id: str = Field(alias="vpcId", pattern=r"^vpc-[0-9a-f]{8,17}$")
    subnet_id: str = Field(alias="subnetId", pattern=r"^subnet-[0-9a-f]{8,17}$")


class JumpStartConfig(_Strict):
    """SageMaker JumpStart model choice and what `scripts.jumpstart resolve` wrote from the hub content."""

    model_id: str = Field(alias="modelId", min_length=1)
    model_version: str = Field(default="*", alias="modelVersion")
    accept_eula: bool = Field(alias="acceptEula")  # required and explicit: no default
    resolved: dict | None = None
    min_capacity: int = Field(default=1, alias="minCapacity", ge=1)
    max_capacity: int = Field(default=1, alias="maxCapacity", ge=1)


class EksConfig(_Strict):
    """The EKS cluster and GPU node pool."""

    cluster_name: str | None = Field(default=None, alias="clusterName")
    kubernetes_version: str = Field(default="1.33", alias="kubernetesVersion", pattern=r"^1\.\d+$")
    namespace: str = Field(default="nemotron", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    min_nodes: int | None = Field(default=None, alias="minNodes", ge=0)
    max_nodes: int | None = Field(default=None, alias="maxNodes", ge=1)


class StackConfig(_Strict):
    """Everything a stack decides. Sizes are plain values: they decide how many resources exist."""

    target: Literal["ec2", "jumpstart", "eks"]
    owner: str = Field(min_length=1, max_length=128)
    ttl_hours: float = Field(default=8.0, alias="ttlHours", gt=0, le=MAX_TTL_HOURS)
    expires_at: datetime | None = Field(default=None, alias="expiresAt")
    model: str = "nemotron-3-ultra"
    instance_type: str = Field(alias="instanceType")
    nodes: int = Field(default=1, ge=1, le=16)
    precision: Literal["bf16", "fp8", "nvfp4"]
    context_tokens: int = Field(default=131_072, alias="contextTokens", ge=1)
    concurrency: int = Field(default=8, ge=1)
    kv_cache_dtype: Literal["fp8", "bf16"] = Field(default="fp8", alias="kvCacheDtype")
    gpu_memory_utilization: float = Field(default=0.90, alias="gpuMemoryUtilization", ge=0.1, le=0.98)
    tensor_parallel: int | None = Field(default=None, alias="tensorParallel", ge=1)
    pipeline_parallel: int | None = Field(default=None, alias="pipelineParallel", ge=1)
    engine: Literal["vllm", "nim", "jumpstart"] | None = None
    mtp_tokens: int = Field(default=3, alias="mtpTokens", ge=0, le=8)
    vllm_extra_args: tuple[str, ...] = Field(default=(), alias="vllmExtraArgs")
    allowed_cidrs: tuple[str, ...] = Field(default=(), alias="allowedCidrs")
    availability_zone: str | None = Field(default=None, alias="availabilityZone", pattern=r"^[a-z]{2}-[a-z]+-\d[a-z]$")
    network: NetworkConfig | None = None
    weights_s3_uri: str | None = Field(default=None, alias="weightsS3Uri", pattern=r"^s3://[a-z0-9.\-]{3,63}/.+$")
    capacity_reservation_id: str | None = Field(default=None, alias="capacityReservationId",
                                                pattern=r"^cr-[0-9a-f]{8,17}$")
    capacity_block: bool = Field(default=False, alias="capacityBlock")
    api_key: SecretRef | None = Field(default=None, alias="apiKey")
    hf_token: SecretRef | None = Field(default=None, alias="hfToken")
    ngc_api_key: SecretRef | None = Field(default=None, alias="ngcApiKey")
    jumpstart: JumpStartConfig | None = None
    eks: EksConfig | None = None
    auto_deploy: bool = Field(default=False, alias="autoDeploy")  # GitOps: `pulumi up` on merge to main

    @field_validator("owner")
    @classmethod
    def _owner_is_a_tag_value(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9 _.:/=+\-@]+", v):
            raise ValueError("letters, digits, spaces and _ . : / = + - @ (an AWS tag value)")
        return v

    @field_validator("allowed_cidrs")
    @classmethod
    def _no_world_ingress(cls, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in cidrs:
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise ValueError(f"CIDR blocks such as 10.20.0.0/16 ({cidr!r} is not one)") from None
            if net.prefixlen < 8:
                raise ValueError(f"CIDR blocks of /8 or narrower ({cidr} would open the API to the world)")
        return cidrs

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("an ISO 8601 time with a zone, e.g. 2026-12-01T18:00:00Z")
        return v.astimezone(UTC) if v else v

    @model_validator(mode="after")
    def _target_sections(self) -> StackConfig:
        engine = self.engine or {"ec2": "vllm", "jumpstart": "jumpstart", "eks": "vllm"}[self.target]
        allowed_engines = {"ec2": ("vllm",), "jumpstart": ("jumpstart",), "eks": ("vllm", "nim")}[self.target]
        if engine not in allowed_engines:
            raise ValueError(f"engine: {engine!r} is not valid for target {self.target}; allowed: "
                             f"{one_of(allowed_engines)}")
        object.__setattr__(self, "engine", engine)
        if self.target == "jumpstart" and self.jumpstart is None:
            raise ValueError("jumpstart: a jumpstart section (modelId, acceptEula) is required for target jumpstart")
        if self.target != "jumpstart" and self.jumpstart is not None:
            raise ValueError(f"jumpstart: the jumpstart section is only for target jumpstart, not {self.target}")
        if self.target != "eks" and self.eks is not None:
            raise ValueError(f"eks: the eks section is only for target eks, not {self.target}")
        if self.capacity_block and not self.capacity_reservation_id:
            raise ValueError("capacityReservationId: a Capacity Block needs its reservation id (cr-...)")
        return self


class StackFile(_Strict):
    """A parsed stack: its name, where it came from, our config and the provider keys."""

    name: str
    source: str
    config: StackConfig
    region: str | None = None
    aws_profile: str | None = None


def parse_stack(name: str, raw: object, source: str) -> StackFile:
    """Validate the `config:` mapping of a stack file. Raises PlanInputError naming the key."""
    if not isinstance(raw, dict):
        raise PlanInputError("config", type(raw).__name__, f"a mapping of {PROJECT}:<key> and aws:<key>", source)
    ours: dict = {}
    region = profile = None
    for key, value in raw.items():
        namespace, _, short = str(key).partition(":")
        if namespace == PROJECT and short:
            ours[short] = value
        elif namespace == "aws" and short in AWS_KEYS:
            if short == "region":
                region = value
            else:
                profile = value
        else:
            raise PlanInputError(str(key), value, f"{PROJECT}:<key> or aws:{{{','.join(AWS_KEYS)}}} (unknown key)",
                                 source)
    try:
        config = StackConfig.model_validate(ours)
    except ValidationError as exc:
        err = first_validation_error(exc, prefix=f"{PROJECT}:")
        if err.field == f"{PROJECT}:" or err.field.endswith(":"):
            # model-level validator: its message already starts with the key
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            key, _, rest = message.partition(": ")
            raise PlanInputError(f"{PROJECT}:{key}", ours.get(key), rest, source) from None
        raise err.with_source(source) from None
    if region is None:
        raise PlanInputError("aws:region", None, "an AWS region, e.g. us-east-1 (required)", source)
    if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", str(region)):
        raise PlanInputError("aws:region", region, "an AWS region name such as us-east-1", source)
    return StackFile(name=name, source=source, config=config, region=region, aws_profile=profile)


def stack_path(stacks_dir: Path, name: str) -> Path:
    return stacks_dir / f"Pulumi.{name}.yaml"


def stack_names(stacks_dir: Path) -> list[str]:
    """Every stack shipped in stacks_dir, sorted."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))


def load_stack(stacks_dir: Path, name: str) -> StackFile:
    """Read and validate stacks/Pulumi.<name>.yaml."""
    path = stack_path(stacks_dir, name)
    if not path.is_file():
        raise PlanInputError("stack", name, one_of(stack_names(stacks_dir)) or f"a file {path}")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PlanInputError("(document)", str(getattr(exc, "problem", exc)), "well-formed YAML", str(path)) from None
    if not isinstance(document, dict) or set(document) - {"config", "encryptionsalt", "secretsprovider",
                                                          "encryptedkey"}:
        raise PlanInputError("(document)", sorted(document) if isinstance(document, dict) else document,
                             "a Pulumi stack file with a config: mapping", str(path))
    return parse_stack(name, document.get("config", {}), str(path))


__all__ = ["PRECISIONS", "KV_CACHE_DTYPES", "TARGETS", "StackConfig", "StackFile", "load_stack", "parse_stack",
           "stack_names", "stack_path", "TARGET_PLATFORM", "PROJECT", "MAX_TTL_HOURS"]
