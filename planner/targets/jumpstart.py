"""The JumpStart target: the SageMaker endpoint of a stack, decided once from its core plan and the hub content
`resolve` recorded: pure. components/jumpstart.py declares what it decides.

Three steps, each a plain function of data:

- `resolved_from_hub`: a DescribeHubContent response (HubContentDocument is a JSON string; field names as the
  SageMaker Python SDK's HubModelDocument reads them) -> the stack file's `jumpstart.resolved` section for one
  instance type: image, artifact prefix, container environment, EULA, supported instance types.
- `plan_endpoint`: a fitted core plan -> `JumpStartEndpointPlan` (StackPlan.jumpstart), everything the component
  declares: names, the execution role's exact scopes, the two startup timeouts derived from the weights' size and
  stated rates (the same rates as the EC2 boot budget, planner/startup.py), the volume decision, autoscaling bounds
  and target, plus the warnings the plan shows. Inconsistent or unsafe hub content (a secret in the environment, an
  unsupported instance type, a resolve for another model or region) is a PlanInputError naming the key.
- `parse_chat_completion`: what the smoke test reads back from the endpoint.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from planner.core import CorePlan
from planner.errors import PlanInputError, one_of
from planner.estimates import iso_utc
from planner.fit import FitResult
from planner.hardware import GIB, InstanceType
from planner.policy import TOKEN_SHAPES, secret_like
from planner.stack_config import PROJECT, ResolvedHubContent
from planner.startup import LOAD_GB_S, S3_STAGE_GB_S, WARMUP_S, S3Location, StartupBudget, s3_location

HUB_NAME = "SageMakerPublicHub"
HUB_CONTENT_TYPE = "Model"
VARIANT_NAME = "AllTraffic"
# CreateEndpointConfig accepts both startup timeouts in 60..3600 s and VolumeSizeInGB in 1..512
# (docs/sources.md#aws-limits).
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 60, 3600
VOLUME_MIN_GB, VOLUME_MAX_GB = 1, 512
# A timeout, not a promise: the stated rates' estimate times this margin.
TIMEOUT_MARGIN = 1.5
# EBS volume (instance types without instance storage only): the weights plus the container's scratch space.
VOLUME_HEADROOM = 1.1
VOLUME_SCRATCH_GB = 30
# Autoscaling: an instance saturates at concurrency x 60 / request-seconds invocations a minute; track 70% of that.
# A request is assumed to take a minute (a ~2,000-token reasoning answer at ~35 tokens/s per stream).
ASSUMED_REQUEST_S = 60
TARGET_UTILISATION = 0.7
# A new instance of a 550B model takes tens of minutes to serve: never drop one on a short lull.
SCALE_IN_COOLDOWN_S = 3600
LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
LOG_RETENTION_DAYS = 30
# The endpoint ends itself at the stack's expiry: an EventBridge Scheduler one-time schedule calls SageMaker's
# DeleteEndpoint through the universal target (no Lambda). A failed call is retried for a day, 185 times at most
# (Scheduler's own defaults, stated so the plan shows them).
SELF_END_SCHEDULE_NAME = "delete-endpoint"
SELF_END_RETRY_ATTEMPTS = 185
SELF_END_RETRY_MAX_AGE_S = 86400
# CreateModel's ContainerDefinition.Environment: at most 100 entries, keys [a-zA-Z_][a-zA-Z0-9_]*, 1024 chars each.
ENV_MAX_ENTRIES = 100
ENV_MAX_CHARS = 1024
_ENV_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}")
# Container variables that state the tensor-parallel degree or the longest sequence (LMI, TGI, vLLM containers).
TENSOR_PARALLEL_ENV = ("OPTION_TENSOR_PARALLEL_DEGREE", "TENSOR_PARALLEL_DEGREE", "SM_NUM_GPUS")
MAX_MODEL_LEN_ENV = ("OPTION_MAX_MODEL_LEN", "MAX_MODEL_LEN", "MAX_TOTAL_TOKENS")
_ECR_IMAGE = re.compile(r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                        r"(?P<repository>[a-z0-9][a-z0-9._/\-]*?)(?P<reference>[:@][\w.:\-]+)")
_JS = f"{PROJECT}:jumpstart"


class HubContentError(ValueError):
    """The hub's document lacks what an endpoint needs, or is not shaped like a JumpStart model document."""


# ------------------------------------------------------------------------------------------ hub content -> config


def _key(mapping: Mapping, *names: str):
    """The first of `names` present in mapping: the hub writes UpperCamel, older documents snake_case."""
    for name in names:
        if name in mapping:
            return mapping[name]
    return None


def instance_family(instance_type: str) -> str:
    """ml.p5en.48xlarge -> ml.p5en: the level at which the hub groups per-instance properties."""
    return instance_type.rsplit(".", 1)[0]


def _variant_properties(document: Mapping, instance_type: str) -> tuple[dict, dict]:
    """(aliases, properties) for one instance type: its family's properties overlaid by the type's own."""
    variants = _key(document, "HostingInstanceTypeVariants") or {}
    aliases = _key(variants, "Aliases", "aliases") or {}
    found = _key(variants, "Variants", "variants") or {}
    merged: dict = {"environment": {}}
    for level in (instance_family(instance_type), instance_type):
        properties = _key(found.get(level) or {}, "Properties", "properties") or {}
        image = _key(properties, "ImageUri", "image_uri")
        if image:
            merged["image"] = image
        merged["environment"].update(_key(properties, "EnvironmentVariables", "environment_variables") or {})
    return aliases, merged


def _alias(value: str, aliases: Mapping, what: str) -> str:
    if isinstance(value, str) and value.startswith("$"):
        if value[1:] not in aliases:
            raise HubContentError(f"{what} {value} names an alias the document does not define "
                                  f"({one_of(sorted(aliases)) or 'none defined'})")
        return aliases[value[1:]]
    return value


def _seconds(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise HubContentError(f"a timeout of {value!r} is not a number of seconds") from None


def resolved_from_hub(response: Mapping, instance_type: str, recorded_at: datetime,
                      source: str = "DescribeHubContent") -> dict:
    """The `jumpstart.resolved` section (camelCase, as the stack file holds it) for one instance type.

    The image is the instance type's variant image (aliases resolved) or HostingEcrUri; the artifact is the
    prepacked prefix when the hub has one (it carries the inference code) else HostingArtifactUri; the environment is
    the container-scoped InferenceEnvironmentVariables overlaid by the variant's. Raises HubContentError when the
    document lacks an image or artifact, or is not a model document.
    """
    if response.get("HubContentType") not in (None, HUB_CONTENT_TYPE, "ModelReference"):
        raise HubContentError(f"HubContentType is {response.get('HubContentType')!r}, not a model")
    raw = response.get("HubContentDocument")
    try:
        document = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise HubContentError(f"HubContentDocument is not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise HubContentError("HubContentDocument is missing or not a JSON object")
    aliases, variant = _variant_properties(document, instance_type)
    image = _alias(variant.get("image") or _key(document, "HostingEcrUri") or "", aliases, "ImageUri")
    if not image:
        raise HubContentError(f"no HostingEcrUri and no image for {instance_type} in HostingInstanceTypeVariants")
    artifact = _key(document, "HostingPrepackedArtifactUri") or _key(document, "HostingArtifactUri")
    if not artifact:
        raise HubContentError("no HostingPrepackedArtifactUri or HostingArtifactUri: nothing to load")
    data_type = _key(document, "HostingArtifactS3DataType") or "S3Prefix"
    if data_type == "S3Prefix" and not artifact.endswith("/"):
        artifact += "/"  # SageMaker reads an uncompressed S3Prefix as a directory
    environment: dict[str, str] = {}
    for variable in _key(document, "InferenceEnvironmentVariables") or []:
        name = _key(variable, "Name", "name")
        scope = _key(variable, "Scope", "scope") or "container"
        default = _key(variable, "Default", "default")
        if name and scope == "container" and default is not None:
            environment[str(name)] = _env_text(default)
    environment.update({str(k): _env_text(v) for k, v in variant["environment"].items()})
    section = {
        "source": source,
        "recordedAt": iso_utc(recorded_at),
        "hubContentArn": response.get("HubContentArn"),
        "hubContentVersion": response.get("HubContentVersion"),
        "instanceType": instance_type,
        "imageUri": image,
        "artifactS3Uri": artifact,
        "artifactS3DataType": data_type,
        "artifactCompression": _key(document, "HostingArtifactCompressionType") or "None",
        "eulaUri": _key(document, "HostingEulaUri"),
        "networkIsolation": bool(_key(document, "InferenceEnableNetworkIsolation")),
        "environment": dict(sorted(environment.items())),
        "defaultInstanceType": _key(document, "DefaultInferenceInstanceType"),
        "supportedInstanceTypes": list(_key(document, "SupportedInferenceInstanceTypes") or []),
        "modelDataDownloadTimeoutS": _seconds(_key(document, "ModelDataDownloadTimeout")),
        "containerStartupHealthCheckTimeoutS": _seconds(_key(document, "ContainerStartupHealthCheckTimeout")),
    }
    return {key: value for key, value in section.items() if value is not None}


def hub_content_name(arn: str) -> str:
    """arn:aws:sagemaker:REGION:aws:hub-content/HUB/Model/NAME/VERSION -> NAME."""
    parts = arn.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 5 else parts[-1]


# Suffixes the public hub puts on sibling models of one family, and what they hold.
_PRECISION_SUFFIXES = (("-nvfp4", "nvfp4"), ("-fp4", "nvfp4"), ("-fp8", "fp8"), ("-bf16", "bf16"))
# Members of a model family that are not the served chat model (pre-trained base, reward model).
_NOT_SERVED = ("-base", "genrm", "reward")


@dataclass(frozen=True)
class HubMatch:
    """One model the hub listed for the stack's name filter, and what the planner says of it."""

    name: str
    version: str
    precision: str | None  # read from the id's suffix; None: not a served variant
    fits: bool
    max_concurrent_sequences: int
    reason: str

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def precision_of_hub_id(name: str) -> str | None:
    """The weight precision a hub id names (`...-nvfp4` -> nvfp4); an id without a suffix holds BF16."""
    lowered = name.lower()
    if any(mark in lowered for mark in _NOT_SERVED):
        return None
    for suffix, precision in _PRECISION_SUFFIXES:
        if lowered.endswith(suffix) or f"{suffix}-" in lowered:
            return precision
    return "bf16"


def choose_hub_model(summaries: list[Mapping], fit_for: Callable[[str], FitResult | None],
                     precision: str) -> tuple[HubMatch | None, tuple[HubMatch, ...]]:
    """The hub model to deploy among ListHubContents matches, decided in numbers, and every match's row.

    `fit_for(precision)` is the planner's fit of the stack at that precision (None when the planner cannot serve
    it). Among the matches that fit, the stack's own precision comes first, then the most concurrent sequences.
    """
    rows = []
    for summary in summaries:
        name = str(summary.get("HubContentName", ""))
        version = str(summary.get("HubContentVersion", ""))
        held = precision_of_hub_id(name)
        if held is None:
            rows.append(HubMatch(name, version, None, False, 0, "not a served chat model (base or reward model)"))
            continue
        fit = fit_for(held)
        if fit is None:
            rows.append(HubMatch(name, version, held, False, 0, f"the planner has no {held} checkpoint to fit"))
        elif fit.fits:
            rows.append(HubMatch(name, version, held, True, fit.max_concurrent_sequences,
                                 f"{held}: fits, up to {fit.max_concurrent_sequences:,} sequences, "
                                 f"{fit.margin_gib:,.1f} GiB per GPU to spare"))
        else:
            rows.append(HubMatch(name, version, held, False, 0, f"{held}: does not fit ({fit.reasons[-1]})"))
    fitting = [row for row in rows if row.fits]
    fitting.sort(key=lambda row: (row.precision != precision, -row.max_concurrent_sequences, row.name))
    return (fitting[0] if fitting else None), tuple(rows)


def _env_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def eula_url(uri: str | None, region: str) -> str | None:
    """A link a person can open: s3://bucket/key -> https://bucket.s3.<region>.amazonaws.com/key."""
    if not uri or not uri.startswith("s3://"):
        return uri
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


# ------------------------------------------------------------------------------------------ timeouts and volume


@dataclass(frozen=True)
class EndpointTimeouts:
    """ModelDataDownloadTimeoutInSeconds and ContainerStartupHealthCheckTimeoutInSeconds, and how they were set."""

    download_s: int
    startup_health_check_s: int
    budget: StartupBudget  # the weights' size over the stated rates (before the margin)
    derived_download_s: int  # budget x margin, before the hub's floor and SageMaker's range
    derived_startup_health_check_s: int
    warnings: tuple[str, ...]

    def describe(self) -> str:
        b = self.budget
        return (f"download {self.download_s} s ({b.weights_gb:,.0f} GB at {b.stage_gb_s:g} GB/s = {b.stage_s} s "
                f"x {TIMEOUT_MARGIN:g}); startup health check {self.startup_health_check_s} s (load at "
                f"{LOAD_GB_S:g} GB/s {b.load_s} s + warm-up {b.warmup_s} s, x {TIMEOUT_MARGIN:g})")

    def to_json(self) -> dict:
        return {"model_data_download_timeout_s": self.download_s,
                "container_startup_health_check_timeout_s": self.startup_health_check_s,
                "derived_download_s": self.derived_download_s,
                "derived_startup_health_check_s": self.derived_startup_health_check_s,
                "weights_gb": round(self.budget.weights_gb, 1), "download_gb_s": self.budget.stage_gb_s,
                "load_gb_s": LOAD_GB_S, "warmup_s": self.budget.warmup_s, "margin": TIMEOUT_MARGIN,
                "range_s": [TIMEOUT_MIN_S, TIMEOUT_MAX_S], "describe": self.describe()}


def endpoint_timeouts(weights_gib: float, resolved: ResolvedHubContent | None = None,
                      ttl_hours: float | None = None) -> EndpointTimeouts:
    """Both startup timeouts from the weights' size: S3 download at the EC2 mirror rate, then load + warm-up.

    Each is the estimate times TIMEOUT_MARGIN, never below the hub's own recommendation, and clamped to SageMaker's
    60..3600 s; a derived value above 3600 s is capped with a warning (the endpoint may then fail to start in time).
    """
    weights_gb = weights_gib * GIB / 1e9
    cap_s = round(ttl_hours * 3600) if ttl_hours else 10**9
    budget = StartupBudget(weights_gb, "the JumpStart artifact prefix (S3)", S3_STAGE_GB_S,
                           round(weights_gb / S3_STAGE_GB_S), round(weights_gb / LOAD_GB_S), WARMUP_S, cap_s)
    derived = {"ModelDataDownloadTimeoutInSeconds": math.ceil(budget.stage_s * TIMEOUT_MARGIN),
               "ContainerStartupHealthCheckTimeoutInSeconds": math.ceil((budget.load_s + budget.warmup_s)
                                                                        * TIMEOUT_MARGIN)}
    floors = {"ModelDataDownloadTimeoutInSeconds": resolved.model_data_download_timeout_s if resolved else None,
              "ContainerStartupHealthCheckTimeoutInSeconds":
                  resolved.container_startup_health_check_timeout_s if resolved else None}
    chosen, warnings = {}, []
    for name, seconds in derived.items():
        wanted = max(seconds, floors[name] or 0)
        if wanted > TIMEOUT_MAX_S:
            warnings.append(f"{name}: {wanted:,} s wanted ({budget.weights_gb:,.0f} GB of weights) exceeds "
                            f"SageMaker's {TIMEOUT_MAX_S:,} s maximum; capped at {TIMEOUT_MAX_S:,} s, so the endpoint "
                            "may fail to start in time: a smaller precision or a faster instance shortens it")
        chosen[name] = min(max(wanted, TIMEOUT_MIN_S), TIMEOUT_MAX_S)
    return EndpointTimeouts(chosen["ModelDataDownloadTimeoutInSeconds"],
                            chosen["ContainerStartupHealthCheckTimeoutInSeconds"], budget,
                            derived["ModelDataDownloadTimeoutInSeconds"],
                            derived["ContainerStartupHealthCheckTimeoutInSeconds"], tuple(warnings))


@dataclass(frozen=True)
class VolumeDecision:
    """VolumeSizeInGB for the production variant, or None (not set) and why."""

    size_gb: int | None
    reason: str

    def to_json(self) -> dict:
        return {"volume_size_in_gb": self.size_gb, "reason": self.reason}


def endpoint_volume(instance: InstanceType, weights_gib: float) -> VolumeDecision:
    """Instance types with instance-store NVMe get none: SageMaker puts the model on the NVMe, attaches no EBS volume
    and refuses VolumeSizeInGB there. Others get the weights plus headroom, at most 512 GB."""
    if instance.nvme_devices > 0:
        return VolumeDecision(None, f"{instance.name} has instance-store NVMe ({instance.nvme}): SageMaker stores the "
                                    "model there and attaches no EBS volume, so VolumeSizeInGB is not set")
    weights_gb = weights_gib * GIB / 1e9
    size = max(VOLUME_MIN_GB, math.ceil(weights_gb * VOLUME_HEADROOM + VOLUME_SCRATCH_GB))
    if size > VOLUME_MAX_GB:
        raise PlanInputError(f"{PROJECT}:instanceType", instance.name,
                             f"an instance type with instance-store NVMe: {weights_gb:,.0f} GB of weights need a "
                             f"{size:,} GB volume and SageMaker attaches at most {VOLUME_MAX_GB} GB")
    return VolumeDecision(size, f"{weights_gb:,.0f} GB of weights x {VOLUME_HEADROOM:g} + {VOLUME_SCRATCH_GB} GB "
                                f"scratch on EBS (range {VOLUME_MIN_GB}..{VOLUME_MAX_GB})")


# ------------------------------------------------------------------------------------------ the endpoint


@dataclass(frozen=True)
class EcrImage:
    """An ECR image reference, split so the execution role can pull exactly its repository."""

    uri: str
    account: str
    region: str
    repository: str

    def repository_arn(self, partition: str) -> str:
        return f"arn:{partition}:ecr:{self.region}:{self.account}:repository/{self.repository}"


def ecr_image(uri: str, field: str = f"{_JS}.resolved.imageUri") -> EcrImage:
    match = _ECR_IMAGE.fullmatch(uri)
    if not match:
        raise PlanInputError(field, uri, "an ECR image such as 763104351884.dkr.ecr.us-east-1.amazonaws.com/repo:tag")
    return EcrImage(uri, match["account"], match["region"], match["repository"])


def partition_of(region: str) -> str:
    """The AWS partition of a region, for the ARNs the role is scoped to."""
    if region.startswith("cn-"):
        return "aws-cn"
    if "-gov-" in region:
        return "aws-us-gov"
    return "aws"


def endpoint_name_for(stack: str) -> str:
    """The endpoint's fixed name (smoke and the autoscaling target need it): nemotron-<stack>, SageMaker's pattern."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", f"nemotron-{stack}").strip("-")
    return name[:63].rstrip("-")


@dataclass(frozen=True)
class EndpointSelfEnd:
    """The endpoint's own end at the stack's expiry: a one-time EventBridge Scheduler schedule that calls
    sagemaker:DeleteEndpoint (universal target) with a role allowed exactly that on exactly this endpoint.

    The time is the plan's expiry, so a renewed expiry moves the schedule on the next `pulumi up`. Deleting the
    endpoint stops its instances; Application Auto Scaling deregisters the variant's scalable target with it when
    the caller may (hence the role's second, equally narrow permission). The model, the endpoint config and the log
    group stay until teardown; only the log group's stored data is billed.
    """

    at: datetime  # UTC
    group_name: str  # a schedule group of the stack's own, which carries the stack's tags (schedules take none)
    schedule_name: str
    endpoint_name: str
    partition: str
    region: str

    @property
    def schedule_expression(self) -> str:
        """`at(yyyy-mm-ddThh:mm:ss)`, read in ScheduleExpressionTimezone UTC."""
        return f"at({self.at:%Y-%m-%dT%H:%M:%S})"

    @property
    def target_arn(self) -> str:
        """The universal target of SageMaker's DeleteEndpoint."""
        return f"arn:{self.partition}:scheduler:::aws-sdk:sagemaker:deleteEndpoint"

    @property
    def target_input(self) -> str:
        """DeleteEndpoint's request, as the universal target passes it to the API."""
        return json.dumps({"EndpointName": self.endpoint_name})

    def endpoint_arn(self, account: str) -> str:
        """The endpoint's ARN in `account` (SageMaker writes resource names in lower case in its ARNs)."""
        return f"arn:{self.partition}:sagemaker:{self.region}:{account}:endpoint/{self.endpoint_name.lower()}"

    def to_json(self) -> dict:
        return {"at": iso_utc(self.at), "schedule_expression": self.schedule_expression,
                "schedule": f"{self.group_name}/{self.schedule_name}", "target_arn": self.target_arn,
                "input": json.loads(self.target_input),
                "retry": {"maximum_retry_attempts": SELF_END_RETRY_ATTEMPTS,
                          "maximum_event_age_s": SELF_END_RETRY_MAX_AGE_S}}


def endpoint_self_end(plan: CorePlan, endpoint_name: str) -> EndpointSelfEnd:
    """The schedule that deletes the endpoint at the plan's expiry (the tags' expires-at, to the second)."""
    return EndpointSelfEnd(at=plan.expires_at.astimezone(UTC).replace(microsecond=0), group_name=endpoint_name,
                           schedule_name=SELF_END_SCHEDULE_NAME, endpoint_name=endpoint_name,
                           partition=partition_of(plan.region), region=plan.region)


@dataclass(frozen=True)
class JumpStartEndpointPlan:
    """Everything the JumpStartEndpointPlan component declares, decided here once."""

    stack: str
    region: str
    partition: str
    endpoint_name: str
    variant_name: str
    model_id: str
    hub_content_arn: str
    hub_content_version: str
    resolved_source: str
    resolved_at: datetime
    image: EcrImage
    artifact_s3_uri: str
    artifact: S3Location
    artifact_s3_data_type: str
    artifact_compression: str
    accept_eula: bool
    eula_url: str | None
    network_isolation: bool
    environment: dict[str, str]
    instance_type: str
    initial_instance_count: int
    min_capacity: int
    max_capacity: int
    target_invocations_per_instance: int
    scale_in_cooldown_s: int
    scale_out_cooldown_s: int
    timeouts: EndpointTimeouts
    volume: VolumeDecision
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    data_capture_s3_uri: str | None
    data_capture_percentage: int
    log_group_name: str
    self_end: EndpointSelfEnd

    @property
    def resource_id(self) -> str:
        """The Application Auto Scaling resource id of the endpoint's variant."""
        return f"endpoint/{self.endpoint_name}/variant/{self.variant_name}"

    def to_json(self) -> dict:
        return {
            "endpoint_name": self.endpoint_name, "variant_name": self.variant_name, "model_id": self.model_id,
            "hub_content_version": self.hub_content_version, "resolved_source": self.resolved_source,
            "resolved_at": iso_utc(self.resolved_at), "image_uri": self.image.uri,
            "artifact_s3_uri": self.artifact_s3_uri, "accept_eula": self.accept_eula, "eula_url": self.eula_url,
            "network_isolation": self.network_isolation, "environment": dict(self.environment),
            "instance_type": self.instance_type, "capacity": {"initial": self.initial_instance_count,
                                                              "min": self.min_capacity, "max": self.max_capacity},
            "target_invocations_per_instance": self.target_invocations_per_instance,
            "timeouts": self.timeouts.to_json(), "volume": self.volume.to_json(),
            "vpc": {"subnet_ids": list(self.subnet_ids), "security_group_ids": list(self.security_group_ids)}
            if self.subnet_ids else None,
            "data_capture_s3_uri": self.data_capture_s3_uri, "log_group": self.log_group_name,
            "self_end": self.self_end.to_json(),
        }


def check_environment(environment: Mapping[str, str], field: str) -> None:
    """The container environment is plain configuration: SageMaker's limits, and no secret in it.

    JumpStart weights come from S3 through the execution role, so no token belongs here; a literal value under a
    secret-like name (HF_TOKEN, API_KEY, ...) or a token-shaped value anywhere is refused. Messages never repeat it.
    """
    if len(environment) > ENV_MAX_ENTRIES:
        raise PlanInputError(field, f"{len(environment)} variables", f"at most {ENV_MAX_ENTRIES} variables")
    for name, value in environment.items():
        where = f"{field}.{name}"
        if not _ENV_NAME.fullmatch(name):
            raise PlanInputError(where, name, "a variable name matching [a-zA-Z_][a-zA-Z0-9_]* (1024 chars at most)")
        if len(value) > ENV_MAX_CHARS:
            raise PlanInputError(where, f"{len(value)} characters", f"at most {ENV_MAX_CHARS} characters")
        if secret_like(name) and value.strip() and not value.strip().startswith(("arn:", "$")):
            raise PlanInputError(where, "[a literal value]", "no secret in the container environment: JumpStart "
                                 "reads its weights from S3 with the execution role; remove the variable")
        for label, pattern in TOKEN_SHAPES:
            if pattern.search(value):
                raise PlanInputError(where, "[hidden]", f"no secret in the container environment (the value looks "
                                     f"like {label}); remove it")


def _environment_warnings(environment: Mapping[str, str], plan: CorePlan) -> list[str]:
    """Where the hub's container settings disagree with the plan's layout or context."""
    warnings = []
    for name in TENSOR_PARALLEL_ENV:
        value = environment.get(name)
        if value and value.isdigit() and int(value) != plan.fit.tensor_parallel:
            warnings.append(f"the container's {name}={value} differs from the plan's tensor parallel "
                            f"{plan.fit.tensor_parallel} on {plan.instance.gpus} GPUs: the fit figures assume "
                            f"TP {plan.fit.tensor_parallel}")
    for name in MAX_MODEL_LEN_ENV:
        value = environment.get(name)
        if value and value.isdigit() and int(value) < plan.config.context_tokens:
            warnings.append(f"the container serves at most {int(value):,} tokens per sequence ({name}) but "
                            f"contextTokens is {plan.config.context_tokens:,}: longer requests are refused")
    return warnings


def _check_resolved(plan: CorePlan, resolved: ResolvedHubContent) -> None:
    c, js = plan.config, plan.config.jumpstart
    field = f"{_JS}.resolved"
    content_name = resolved.hub_content_arn.rstrip("/").split("/")
    if js.model_id is not None and js.model_id not in content_name:
        raise PlanInputError(f"{field}.hubContentArn", resolved.hub_content_arn,
                             f"hub content of modelId {js.model_id}: re-run `python -m scripts.jumpstart resolve "
                             f"{plan.stack}`")
    if js.model_version != "*" and resolved.hub_content_version != js.model_version:
        raise PlanInputError(f"{field}.hubContentVersion", resolved.hub_content_version,
                             f"modelVersion {js.model_version}: re-run `python -m scripts.jumpstart resolve "
                             f"{plan.stack}`")
    if resolved.instance_type != c.instance_type:
        raise PlanInputError(f"{field}.instanceType", resolved.instance_type,
                             f"instanceType {c.instance_type} (the environment is resolved per instance type): re-run "
                             f"`python -m scripts.jumpstart resolve {plan.stack}`")
    if resolved.supported_instance_types and c.instance_type not in resolved.supported_instance_types:
        raise PlanInputError(f"{PROJECT}:instanceType", c.instance_type,
                             f"an instance type the hub supports for {js.model_id or js.model_name}: "
                             f"{one_of(resolved.supported_instance_types)}")
    image = ecr_image(resolved.image_uri)
    if image.region != plan.region:
        raise PlanInputError(f"{field}.imageUri", resolved.image_uri,
                             f"an image in the stack's region {plan.region}: re-run resolve for this region")
    check_environment(resolved.environment, f"{field}.environment")


def target_invocations(plan: CorePlan) -> int:
    """Invocations per instance per minute that target tracking holds: configured, else 70% of saturation."""
    configured = plan.config.jumpstart.target_invocations_per_instance
    if configured:
        return configured
    return max(1, math.floor(plan.config.concurrency * 60 / ASSUMED_REQUEST_S * TARGET_UTILISATION))


def plan_endpoint(plan: CorePlan) -> tuple[JumpStartEndpointPlan | None, tuple[str, ...]]:
    """The endpoint of a jumpstart plan and the warnings it adds; (None, warnings) while hub content is unresolved.

    Raises PlanInputError (located in the stack file) when the resolved section contradicts the config or puts a
    secret in the container environment.
    """
    c, js = plan.config, plan.config.jumpstart
    if c.target != "jumpstart" or js is None:
        raise PlanInputError("plan", plan.stack, "a jumpstart plan")
    warnings: list[str] = []
    resolved = js.resolved
    if resolved is None:
        warnings.append(f"hub content not resolved: the program declares no JumpStart resources until you run "
                        f"`python -m scripts.jumpstart resolve {plan.stack}`")
    link = eula_url(resolved.eula_uri, plan.region) if resolved else None
    if not js.accept_eula:
        warnings.append(f"acceptEula is false: SageMaker will refuse to create the model until you set "
                        f"jumpstart.acceptEula to true after reading {link or 'the EULA (run resolve to find it)'}")
    if resolved is not None and resolved.source == "example":
        warnings.append(f"jumpstart.resolved is an example recorded on {resolved.recorded_at:%Y-%m-%d}, not read "
                        f"from the hub: run `python -m scripts.jumpstart resolve {plan.stack}` before deploying")
    if js.max_capacity > js.min_capacity and plan.instance.usd_per_hour is not None:
        warnings.append(f"autoscaling {js.min_capacity}-{js.max_capacity} instances: "
                        f"${plan.instance.usd_per_hour * js.min_capacity:,.2f}-"
                        f"${plan.instance.usd_per_hour * js.max_capacity:,.2f}/h "
                        "(the maximum spend counts the maximum)")
    if resolved is None:
        return None, tuple(warnings)
    try:
        _check_resolved(plan, resolved)
        volume = endpoint_volume(plan.instance, plan.fit.weights_gib)
    except PlanInputError as err:
        raise err.with_source(plan.source) from None
    timeouts = endpoint_timeouts(plan.fit.weights_gib, resolved, c.ttl_hours)
    warnings += list(timeouts.warnings) + _environment_warnings(resolved.environment, plan)
    name = endpoint_name_for(plan.stack)
    endpoint = JumpStartEndpointPlan(
        stack=plan.stack, region=plan.region, partition=partition_of(plan.region), endpoint_name=name,
        variant_name=VARIANT_NAME, model_id=js.model_id or hub_content_name(resolved.hub_content_arn),
        hub_content_arn=resolved.hub_content_arn,
        hub_content_version=resolved.hub_content_version, resolved_source=resolved.source,
        resolved_at=resolved.recorded_at, image=ecr_image(resolved.image_uri),
        artifact_s3_uri=resolved.artifact_s3_uri, artifact=s3_location(resolved.artifact_s3_uri),
        artifact_s3_data_type=resolved.artifact_s3_data_type, artifact_compression=resolved.artifact_compression,
        accept_eula=js.accept_eula, eula_url=link, network_isolation=resolved.network_isolation,
        environment=dict(resolved.environment), instance_type=c.instance_type,
        initial_instance_count=js.min_capacity, min_capacity=js.min_capacity, max_capacity=js.max_capacity,
        target_invocations_per_instance=target_invocations(plan), scale_in_cooldown_s=SCALE_IN_COOLDOWN_S,
        scale_out_cooldown_s=timeouts.download_s + timeouts.startup_health_check_s, timeouts=timeouts,
        volume=volume, subnet_ids=js.vpc.subnet_ids if js.vpc else (),
        security_group_ids=js.vpc.security_group_ids if js.vpc else (),
        data_capture_s3_uri=js.data_capture.destination_s3_uri if js.data_capture else None,
        data_capture_percentage=js.data_capture.sampling_percentage if js.data_capture else 0,
        log_group_name=f"{LOG_GROUP_PREFIX}{name}", self_end=endpoint_self_end(plan, name))
    return endpoint, tuple(warnings)


# ------------------------------------------------------------------------------------------ smoke request / answer


@dataclass(frozen=True)
class ChatCompletion:
    """The parts of an OpenAI chat completion the smoke test reports."""

    content: str
    reasoning: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str | None


def chat_request(prompt: str, max_tokens: int) -> dict:
    """An OpenAI-style chat body for the JumpStart container (no model field: the endpoint serves one model)."""
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}


def parse_chat_completion(body: bytes | str) -> ChatCompletion:
    """An OpenAI chat completion from a response body; ValueError saying what is missing otherwise."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise ValueError(f"the response is not JSON: {text[:120]!r}") from None
    choices = document.get("choices") if isinstance(document, dict) else None
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        keys = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise ValueError(f"the response is not an OpenAI chat completion (no choices[0].message; got {keys})")
    message, usage = choices[0]["message"], document.get("usage") or {}
    return ChatCompletion(
        content=message.get("content") or "",
        reasoning=message.get("reasoning_content") or message.get("reasoning") or "",
        finish_reason=choices[0].get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
        model=document.get("model"))
