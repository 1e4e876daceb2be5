"""The stack config schema: one validated structure per stack, read from stacks/Pulumi.<stack>.yaml.

Keys live under the project's namespace (`nemotron-deploy:instanceType`) as Pulumi expects; provider keys under
`aws:`. Every error names the key, the value and what is allowed, in one line.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from planner.errors import PlanInputError, PlanInputNote, one_of
from planner.expiry import EXPIRY_FORMS, parse_expiry
from planner.models import (
    KV_CACHE_DTYPES,
    PATTERN_WORDS,
    PRECISIONS,
    first_validation_error,
    unknown_key_error,
)
from planner.references import ref
from planner.regions import AWS_REGIONS, not_offered_in
from planner.yamlfile import YamlFileError, load_yaml_file

PROJECT = "nemotron-deploy"
TARGETS = ("ec2", "jumpstart", "eks")
TARGET_PLATFORM = {"ec2": "ec2", "eks": "ec2", "jumpstart": "sagemaker"}
AWS_KEYS = ("region", "profile")
MAX_TTL_HOURS = 168  # a week: an evaluation that needs longer renews on purpose
# Who a stack's AWS Budget alerts (planner/budget.py): addresses of this shape, at most this many.
MAX_EMAIL_SUBSCRIBERS = 10  # AWS Budgets: at most 10 email subscribers per notification
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                           r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)


class SecretRef(_Strict):
    """A Pulumi secret (`pulumi config set --secret`): ciphertext in the file, never a plain value."""

    secure: str = Field(min_length=1)


class NetworkConfig(_Strict):
    """Use an existing VPC and subnet; when absent, the stack creates a minimal private network."""

    vpc_id: str = Field(alias="vpcId", pattern=r"^vpc-[0-9a-f]{8,17}$")
    subnet_id: str = Field(alias="subnetId", pattern=r"^subnet-[0-9a-f]{8,17}$")


_S3_URI = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.*$"
_ECR_IMAGE = r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9][a-z0-9._/\-]*[:@][\w.:\-]+$"
_HUB_CONTENT_ARN = r"^arn:aws[\w-]*:sagemaker:[a-z0-9-]+:[\w-]+:hub-content/"
RESOLVED_SOURCES = ("DescribeHubContent", "example")
PATTERN_WORDS.update({
    _S3_URI: "an S3 URI such as s3://my-bucket/prefix/",
    _ECR_IMAGE: "an ECR image such as 763104351884.dkr.ecr.us-east-1.amazonaws.com/repo:tag",
    _HUB_CONTENT_ARN: "a SageMaker hub-content ARN (arn:aws:sagemaker:REGION:ACCOUNT:hub-content/...)",
})


class ResolvedHubContent(_Strict):
    """What `python -m scripts.jumpstart resolve` read from DescribeHubContent for one instance type.

    Written into the stack file so `pulumi up` is reproducible and reviewable. `source: example` marks a section
    that was not read from the hub (the shipped illustration); the planner refuses acceptEula true with it.
    """

    source: Literal["DescribeHubContent", "example"]
    recorded_at: datetime = Field(alias="recordedAt")
    hub_content_arn: str = Field(alias="hubContentArn", pattern=_HUB_CONTENT_ARN)
    hub_content_version: str = Field(alias="hubContentVersion", min_length=1)
    instance_type: str = Field(alias="instanceType", pattern=r"^ml\.")  # the environment is chosen per instance type
    image_uri: str = Field(alias="imageUri", pattern=_ECR_IMAGE)
    artifact_s3_uri: str = Field(alias="artifactS3Uri", pattern=_S3_URI)
    artifact_s3_data_type: Literal["S3Prefix", "S3Object"] = Field(default="S3Prefix", alias="artifactS3DataType")
    artifact_compression: Literal["None", "Gzip"] = Field(default="None", alias="artifactCompression")
    eula_uri: str | None = Field(default=None, alias="eulaUri")
    network_isolation: StrictBool = Field(default=True, alias="networkIsolation")
    environment: dict[str, str] = Field(default_factory=dict)
    default_instance_type: str | None = Field(default=None, alias="defaultInstanceType")
    supported_instance_types: tuple[str, ...] = Field(default=(), alias="supportedInstanceTypes")
    # The hub's own recommendations, when it publishes any: the planner never sets a shorter timeout than these.
    model_data_download_timeout_s: StrictInt | None = Field(default=None, alias="modelDataDownloadTimeoutS", ge=1)
    container_startup_health_check_timeout_s: StrictInt | None = Field(
        default=None, alias="containerStartupHealthCheckTimeoutS", ge=1)

    @field_validator("recorded_at")
    @classmethod
    def _recorded_utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("an ISO 8601 time with a zone, e.g. 2026-12-01T18:00:00Z")
        return v.astimezone(UTC)


class EndpointVpcConfig(_Strict):
    """Run the endpoint's containers in your VPC: the subnets and security groups of their network interfaces."""

    subnet_ids: tuple[str, ...] = Field(alias="subnetIds", min_length=1, max_length=16)
    security_group_ids: tuple[str, ...] = Field(alias="securityGroupIds", min_length=1, max_length=5)

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        for value in ids:
            if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", value):
                raise ValueError(f"subnet ids such as subnet-0123456789abcdef0 ({value!r} is not one)")
        return ids

    @field_validator("security_group_ids")
    @classmethod
    def _groups(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        for value in ids:
            if not re.fullmatch(r"sg-[0-9a-f]{8,17}", value):
                raise ValueError(f"security group ids such as sg-0123456789abcdef0 ({value!r} is not one)")
        return ids


class DataCaptureConfig(_Strict):
    """Capture requests and responses to S3 (off unless configured: prompts are user data)."""

    destination_s3_uri: str = Field(alias="destinationS3Uri", pattern=_S3_URI)
    sampling_percentage: StrictInt = Field(default=100, alias="samplingPercentage", ge=1, le=100)


class JumpStartConfig(_Strict):
    """SageMaker JumpStart model choice, endpoint scaling and what `scripts.jumpstart resolve` wrote from the hub."""

    # The hub content id. Absent: `scripts.jumpstart resolve` finds the model by modelName in the public hub,
    # chooses among the matches by the planner's fit, and records the id here.
    model_id: str | None = Field(default=None, alias="modelId", min_length=1, max_length=63)
    model_name: str = Field(default=ref("jumpstart-model-name"), alias="modelName", min_length=1, max_length=63)
    model_version: str = Field(default="*", alias="modelVersion", pattern=r"^(\*|\d+\.\d+\.\d+)$")
    accept_eula: StrictBool = Field(alias="acceptEula")  # required and explicit: no default
    resolved: ResolvedHubContent | None = None
    min_capacity: StrictInt = Field(default=1, alias="minCapacity", ge=1)
    max_capacity: StrictInt = Field(default=1, alias="maxCapacity", ge=1)
    # Target tracking on SageMakerVariantInvocationsPerInstance (invocations per instance per minute); derived from
    # the configured concurrency when absent (planner/targets/jumpstart.py).
    target_invocations_per_instance: StrictInt | None = Field(default=None, alias="targetInvocationsPerInstance", ge=1)
    vpc: EndpointVpcConfig | None = None
    data_capture: DataCaptureConfig | None = Field(default=None, alias="dataCapture")


def _narrow_cidrs(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    """CIDR blocks no wider than /8: anything wider is the world for our purposes."""
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            raise ValueError(f"CIDR blocks such as 10.20.0.0/16 ({cidr!r} is not one)") from None
        if net.prefixlen < 8:
            raise ValueError(f"CIDR blocks of /8 or narrower ({cidr} would open the API to the world)")
    return cidrs


class EksConfig(_Strict):
    """The EKS cluster (new, or an existing one by name) and the GPU node pool.

    A new cluster's API endpoint is private; `publicAccessCidrs` opens it to named networks only (for a `pulumi up`
    run from outside the VPC). Node-pool bounds default to `nodes`. `installAddons` installs the NVIDIA and EFA
    device plugins and, for multi-node layouts, the LeaderWorkerSet controller (turn off on clusters that already
    run them, e.g. through the GPU Operator). `modelCache` puts the model cache on the node's instance store (default)
    or on gp3.
    """

    cluster_name: str | None = Field(default=None, alias="clusterName", pattern=r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
    kubernetes_version: str = Field(default=ref("eks-kubernetes-version"), alias="kubernetesVersion",
                                    pattern=r"^1\.\d+$")
    namespace: str = Field(default="nemotron", max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    min_nodes: StrictInt | None = Field(default=None, alias="minNodes", ge=0)
    max_nodes: StrictInt | None = Field(default=None, alias="maxNodes", ge=1)
    public_access_cidrs: tuple[str, ...] = Field(default=(), alias="publicAccessCidrs")
    control_plane_subnet_ids: tuple[str, ...] = Field(
        default=(), alias="controlPlaneSubnetIds", max_length=16)
    system_instance_type: str = Field(default="m7i.large", alias="systemInstanceType",
                                      pattern=r"^[a-z][a-z0-9\-]*\.[a-z0-9]+$")
    install_addons: StrictBool = Field(default=True, alias="installAddons")
    # Where the model cache lives: the GPU node's instance-store NVMe (a RAID0, gone with the node) when it is large
    # enough, or an encrypted gp3 volume (kept across pod moves, ~1 GB/s): planner/targets/eks.py.
    model_cache: Literal["instance-store", "gp3"] = Field(default="instance-store", alias="modelCache")

    @field_validator("public_access_cidrs")
    @classmethod
    def _no_world_endpoint(cls, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        return _narrow_cidrs(cidrs)

    @field_validator("control_plane_subnet_ids")
    @classmethod
    def _subnet_ids(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        for subnet in ids:
            if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", subnet):
                raise ValueError(f"subnet ids such as subnet-0123456789abcdef0 ({subnet!r} is not one)")
        return ids


class StackConfig(_Strict):
    """Everything a stack decides. Sizes are plain values: they decide how many resources exist."""

    target: Literal["ec2", "jumpstart", "eks"]
    owner: str = Field(min_length=1, max_length=128)
    ttl_hours: StrictFloat = Field(default=8.0, alias="ttlHours", gt=0, le=MAX_TTL_HOURS)
    expires_at: datetime | None = Field(default=None, alias="expiresAt")
    model: str = "nemotron-3-ultra"
    instance_type: str = Field(alias="instanceType")
    nodes: StrictInt = Field(default=1, ge=1, le=16)
    precision: Literal["bf16", "fp8", "nvfp4"]
    context_tokens: StrictInt = Field(default=131_072, alias="contextTokens", ge=1)
    concurrency: StrictInt = Field(default=8, ge=1)
    # vLLM's --max-num-batched-tokens; absent: vLLM's default (8,192 on these GPUs). The fit reserves activation
    # memory for it, and the command passes it when it differs from vLLM's default.
    max_num_batched_tokens: StrictInt | None = Field(default=None, alias="maxNumBatchedTokens", ge=1)
    kv_cache_dtype: Literal["fp8", "bf16"] = Field(default="fp8", alias="kvCacheDtype")
    gpu_memory_utilization: StrictFloat = Field(default=0.90, alias="gpuMemoryUtilization", ge=0.1, le=0.98)
    tensor_parallel: StrictInt | None = Field(default=None, alias="tensorParallel", ge=1)
    pipeline_parallel: StrictInt | None = Field(default=None, alias="pipelineParallel", ge=1)
    engine: Literal["vllm", "nim", "jumpstart"] | None = None
    mtp_tokens: StrictInt = Field(default=3, alias="mtpTokens", ge=0, le=8)
    vllm_extra_args: tuple[str, ...] = Field(default=(), alias="vllmExtraArgs")
    allowed_cidrs: tuple[str, ...] = Field(default=(), alias="allowedCidrs")
    availability_zone: str | None = Field(default=None, alias="availabilityZone", pattern=r"^[a-z]{2}-[a-z]+-\d[a-z]$")
    network: NetworkConfig | None = None
    weights_s3_uri: str | None = Field(default=None, alias="weightsS3Uri", pattern=r"^s3://[a-z0-9.\-]{3,63}/.+$")
    # With weightsS3Uri: stream the staged copy into GPU memory (default; the only way on eks) or, on ec2, stage it
    # on the NVMe RAID0 first (docs/ec2.md#weights, planner/startup.py).
    weights_loader: Literal["stream", "nvme"] | None = Field(default=None, alias="weightsLoader")
    capacity_reservation_id: str | None = Field(default=None, alias="capacityReservationId",
                                                pattern=r"^cr-[0-9a-f]{8,17}$")
    capacity_block: StrictBool = Field(default=False, alias="capacityBlock")
    api_key: SecretRef | None = Field(default=None, alias="apiKey")
    hf_token: SecretRef | None = Field(default=None, alias="hfToken")
    ngc_api_key: SecretRef | None = Field(default=None, alias="ngcApiKey")
    jumpstart: JumpStartConfig | None = None
    eks: EksConfig | None = None
    auto_deploy: StrictBool = Field(default=False, alias="autoDeploy")  # GitOps: `pulumi up` on merge to main
    # Who the stack's AWS Budget alerts (planner/budget.py); default: the owner, when the owner is an email address
    alert_emails: tuple[str, ...] = Field(default=(), alias="alertEmails")

    @field_validator("owner")
    @classmethod
    def _owner_is_a_tag_value(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9 _.:/=+\-@]+", v):
            raise ValueError("letters, digits, spaces and _ . : / = + - @ (an AWS tag value)")
        return v

    @field_validator("alert_emails", mode="before")
    @classmethod
    def _email_addresses(cls, emails: object) -> tuple[str, ...]:
        if not isinstance(emails, list | tuple):
            raise ValueError("a list of email addresses, e.g. [owner@example.com]")
        for address in emails:
            if not isinstance(address, str) or not EMAIL_ADDRESS.fullmatch(address):
                raise ValueError(f"email addresses such as owner@example.com ({address!r} is not one)")
        if len(set(emails)) != len(emails):
            raise ValueError("distinct email addresses (one is listed twice)")
        if len(emails) > MAX_EMAIL_SUBSCRIBERS:
            raise ValueError(f"at most {MAX_EMAIL_SUBSCRIBERS} addresses (AWS Budgets' limit per alert)")
        return tuple(emails)

    @field_validator("allowed_cidrs")
    @classmethod
    def _no_world_ingress(cls, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        return _narrow_cidrs(cidrs)

    @field_validator("expires_at", mode="before")
    @classmethod
    def _expiry(cls, v: object) -> datetime | None:
        # Text in the forms the reaper and the node's dead-man switch accept (planner/expiry.py); a YAML timestamp
        # (an unquoted value, already read by YAML) only when it has a zone.
        if v is None:
            return None
        expiry = v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo is not None else parse_expiry(v)
        if expiry is None:
            raise ValueError(EXPIRY_FORMS)
        return expiry

    @model_validator(mode="after")
    def _target_sections(self) -> StackConfig:
        engine = self.engine or {"ec2": "vllm", "jumpstart": "jumpstart", "eks": "vllm"}[self.target]
        allowed_engines = {"ec2": ("vllm",), "jumpstart": ("jumpstart",), "eks": ("vllm", "nim")}[self.target]
        if engine not in allowed_engines:
            raise ValueError(f"engine: {engine!r} is not valid for target {self.target}; allowed: "
                             f"{one_of(allowed_engines)}")
        object.__setattr__(self, "engine", engine)
        if self.target == "jumpstart" and self.jumpstart is None:
            raise ValueError("jumpstart: a jumpstart section (acceptEula; modelName or modelId) is required for "
                             "target jumpstart")
        if self.target != "jumpstart" and self.jumpstart is not None:
            raise ValueError(f"jumpstart: the jumpstart section is only for target jumpstart, not {self.target}")
        if self.jumpstart is not None:
            self._check_jumpstart(self.jumpstart)
        if engine == "jumpstart" and self.max_num_batched_tokens is not None:
            raise ValueError("maxNumBatchedTokens: not used by target jumpstart (the hub's container keeps vLLM's "
                             "default, which the fit assumes); remove it")
        if self.target != "eks" and self.eks is not None:
            raise ValueError(f"eks: the eks section is only for target eks, not {self.target}")
        if self.weights_loader is not None and (self.target != "ec2" or self.weights_s3_uri is None):
            raise ValueError("weightsLoader: only for target ec2 with weightsS3Uri (how the staged copy reaches the "
                             "GPUs); remove it or set weightsS3Uri")
        if self.capacity_block and not self.capacity_reservation_id:
            raise ValueError("capacityReservationId: a Capacity Block needs its reservation id (cr-...)")
        if self.target == "eks":
            self._check_eks(engine)
        return self

    def _check_eks(self, engine: str) -> None:
        """What an EKS stack cannot combine; each message starts with the key it names."""
        eks = self.eks or EksConfig()
        if eks.min_nodes is not None and eks.min_nodes > self.nodes:
            raise ValueError(f"eks.minNodes: at most nodes ({self.nodes}): the node group starts with nodes")
        if eks.max_nodes is not None and eks.max_nodes < self.nodes:
            raise ValueError(f"eks.maxNodes: at least nodes ({self.nodes}): the node group starts with nodes")
        if engine == "nim" and self.nodes > 1:
            raise ValueError("nodes: 1 for engine nim on eks (multi-node NIM is not supported here; use engine "
                             "vllm, which runs a LeaderWorkerSet with Ray)")
        if self.weights_s3_uri is not None and engine != "vllm":
            raise ValueError("weightsS3Uri: not used by engine nim (NIM downloads its profile from NGC into the model "
                             "cache); remove it, or use engine vllm, which streams the staged copy")
        if self.allowed_cidrs:
            raise ValueError("allowedCidrs: not used by target eks (the API is a ClusterIP Service; clients are "
                             "admitted by the label nemotron-deploy/client=true); remove it")
        if eks.cluster_name is not None:
            if self.network is None:
                raise ValueError("network: an existing cluster (eks.clusterName) needs network.vpcId and "
                                 "network.subnetId, the subnet of its GPU nodes")
            if eks.control_plane_subnet_ids or eks.public_access_cidrs:
                raise ValueError("eks.clusterName: an existing cluster keeps its own subnets and endpoint; remove "
                                 "controlPlaneSubnetIds and publicAccessCidrs")
        elif self.network is not None and len(eks.control_plane_subnet_ids) < 2:
            raise ValueError("eks.controlPlaneSubnetIds: two or more subnets in different Availability Zones "
                             "(EKS requires them) when network is set")

    def _check_jumpstart(self, js: JumpStartConfig) -> None:
        """Each endpoint instance serves a whole copy of the model: scale with capacity, not with nodes."""
        if self.nodes != 1:
            raise ValueError(f"nodes: a SageMaker endpoint instance holds a whole copy of the model, so nodes is 1 "
                             f"for target jumpstart ({self.nodes} given); scale with jumpstart.minCapacity/maxCapacity")
        if js.max_capacity < js.min_capacity:
            raise ValueError(f"jumpstart.maxCapacity: {js.max_capacity} is below minCapacity {js.min_capacity}; "
                             "it must be at least minCapacity")
        if js.accept_eula and js.resolved is not None and js.resolved.source == "example":
            raise ValueError("jumpstart.acceptEula: true cannot accept the EULA of an example resolved section; run "
                             "`python -m scripts.jumpstart resolve <stack>`, read its eulaUri, then set it to true")


class StackFile(_Strict):
    """A parsed stack: its name, where it came from, our config and the provider keys."""

    name: str
    source: str
    config: StackConfig
    region: str | None = None
    aws_profile: str | None = None


SECRET_KEYS = ("apiKey", "hfToken", "ngcApiKey")


def parse_stack(name: str, raw: object, source: str, regions: tuple[str, ...] = AWS_REGIONS) -> StackFile:
    """Validate the `config:` mapping of a stack file. Raises PlanInputError naming the key.

    `regions` is the list of AWS regions a stack may name (planner/regions.py keeps botocore's EC2 list).
    """
    if not isinstance(raw, dict):
        raise PlanInputError("config", type(raw).__name__, f"a mapping of {PROJECT}:<key> and aws:<key>", source)
    ours: dict = {}
    region = profile = None
    known = [f.alias or n for n, f in StackConfig.model_fields.items()]
    for key, value in raw.items():
        namespace, _, short = str(key).partition(":")
        if namespace == PROJECT and short:
            if short in SECRET_KEYS and not isinstance(value, dict):
                raise PlanInputNote(str(key), f"a plaintext secret (not shown) in the stack file; remove it and run "
                                              f"`pulumi config set --secret {short} VALUE`", source)
            if short not in known:
                raise unknown_key_error(str(key), short, value, known).with_source(source)
            ours[short] = value
        elif namespace == "aws" and short in AWS_KEYS:
            if short == "region":
                region = value
            else:
                profile = value
        else:
            raise PlanInputNote(str(key), f"unknown key; allowed: {PROJECT}:<key> or aws:{{{','.join(AWS_KEYS)}}}",
                                source)
    if region is not None and (not isinstance(region, str) or region not in regions):
        close = difflib.get_close_matches(str(region), regions, n=3)
        hint = f"did you mean {one_of(close)}?" if close else "an AWS region such as us-east-1"
        raise PlanInputError("aws:region", region, f"an AWS region with EC2 ({hint})", source)
    try:
        config = StackConfig.model_validate(ours)
    except ValidationError as exc:
        err = first_validation_error(exc, prefix=f"{PROJECT}:", model=StackConfig)
        if err.field == f"{PROJECT}:" or err.field.endswith(":"):
            # model-level validator: its message already starts with the key
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            key, _, rest = message.partition(": ")
            raise PlanInputError(f"{PROJECT}:{key}", _value_at(ours, key), rest, source) from None
        raise err.with_source(source) from None
    if region is None:
        raise PlanInputError("aws:region", None, "an AWS region, e.g. us-east-1 (required)", source)
    _check_region_placement(config, region, source)
    return StackFile(name=name, source=source, config=config, region=region, aws_profile=profile)


def _check_region_placement(config: StackConfig, region: str, source: str) -> None:
    """The Availability Zone belongs to the region; the instance type is offered there when the catalogue knows."""
    zone = config.availability_zone
    if zone is not None and zone[:-1] != region:
        raise PlanInputError(f"{PROJECT}:availabilityZone", zone,
                             f"a zone of aws:region {region}, e.g. {region}a", source)
    missing = not_offered_in(config.instance_type, region)
    if missing:
        raise PlanInputError(f"{PROJECT}:instanceType", config.instance_type, missing, source)


def _value_at(config: dict, dotted_key: str) -> object:
    """The configured value under `eks.minNodes`-style keys, or None."""
    value: object = config
    for part in dotted_key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def stack_path(stacks_dir: Path, name: str) -> Path:
    return stacks_dir / f"Pulumi.{name}.yaml"


def stack_names(stacks_dir: Path) -> list[str]:
    """Every stack shipped in stacks_dir, sorted."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))


def load_stack(stacks_dir: Path, name: str) -> StackFile:
    """Read and validate stacks/Pulumi.<name>.yaml."""
    path = stack_path(stacks_dir, name)
    if not stacks_dir.is_dir():
        raise YamlFileError(str(stacks_dir), "no such directory; --stacks-dir names the folder of Pulumi.<stack>.yaml "
                                             "files")
    if not path.exists():
        raise PlanInputError("stack", name, one_of(stack_names(stacks_dir)) or f"a file {path}")
    document = load_yaml_file(path, "a Pulumi stack file")
    if document is None:
        raise YamlFileError(str(path), "is empty (or only comments); a stack file holds a config: mapping")
    if not isinstance(document, dict) or set(document) - {"config", "encryptionsalt", "secretsprovider",
                                                          "encryptedkey"}:
        raise PlanInputError("(document)", sorted(document) if isinstance(document, dict) else document,
                             "a Pulumi stack file with a config: mapping", str(path))
    return parse_stack(name, document.get("config", {}), str(path))


__all__ = ["PRECISIONS", "KV_CACHE_DTYPES", "TARGETS", "StackConfig", "StackFile", "load_stack", "parse_stack",
           "stack_names", "stack_path", "TARGET_PLATFORM", "PROJECT", "MAX_TTL_HOURS", "JumpStartConfig",
           "ResolvedHubContent", "RESOLVED_SOURCES"]
