"""Policy rules: find what breaks the README's security and tagging rules in the resources a Pulumi program declares.

Pure: a resource is a mapping `{"type": "<pulumi type token>", "name": str, "inputs": {camelCase inputs}}`, exactly as
the Pulumi mocks receive it. Each rule is a small function `check(resource_type, inputs) -> list[str]` of messages,
so a CrossGuard pack wraps it without change (`args.resource_type`, `args.props`):

    ResourceValidationPolicy(name=rule.name, description=rule.description,
                             validate=lambda args, report, rule=rule: [report(m) for m in
                                                                         rule.check(args.resource_type, args.props)])

`check_resources(resources, required_tags)` runs every rule over a stack and returns `Violation`s. Messages never
repeat a secret they found: they name where it is and what it looks like.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from planner.stack_config import PROJECT

RuleCheck = Callable[[str, Mapping[str, Any]], list[str]]

TAG_STACK = f"{PROJECT}:stack"
TAG_OWNER = f"{PROJECT}:owner"
TAG_EXPIRES_AT = f"{PROJECT}:expires-at"
REQUIRED_TAG_KEYS = (TAG_STACK, TAG_OWNER, TAG_EXPIRES_AT)

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
EBS_VOLUME = "aws:ebs/volume:Volume"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
IAM_POLICY = "aws:iam/policy:Policy"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_USER_POLICY = "aws:iam/userPolicy:UserPolicy"
IAM_GROUP_POLICY = "aws:iam/groupPolicy:GroupPolicy"
IAM_ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"  # noqa: S105 - a type token
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
K8S_SECRET = "kubernetes:core/v1:Secret"  # noqa: S105 - a type token

# Taggable AWS types the toolkit declares (they accept `tags`). Any other aws:* resource whose inputs carry a
# "tags" key is treated as taggable too, so a new resource type cannot slip through untagged.
TAGGABLE_TYPES = frozenset({
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip", "aws:ec2/routeTable:RouteTable", SECURITY_GROUP,
    DEFAULT_SECURITY_GROUP,
    INGRESS_RULE, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", LAUNCH_TEMPLATE, INSTANCE, EBS_VOLUME,
    "aws:ec2/placementGroup:PlacementGroup", "aws:ec2/networkInterface:NetworkInterface",
    "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/keyPair:KeyPair", IAM_ROLE, IAM_POLICY,
    "aws:iam/instanceProfile:InstanceProfile", "aws:secretsmanager/secret:Secret", "aws:sagemaker/model:Model",
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration", "aws:sagemaker/endpoint:Endpoint", EKS_CLUSTER,
    "aws:eks/nodeGroup:NodeGroup", "aws:eks/addon:Addon", "aws:eks/accessEntry:AccessEntry", "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2", "aws:cloudwatch/logGroup:LogGroup", "aws:cloudwatch/eventRule:EventRule",
    "aws:lambda/function:Function", "aws:kms/key:Key", "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/targetGroup:TargetGroup", "aws:ecr/repository:Repository", "aws:sns/topic:Topic", SSM_PARAMETER,
    "aws:appautoscaling/target:Target", "aws:budgets/budget:Budget", "aws:scheduler/scheduleGroup:ScheduleGroup",
    "aws:cloudwatch/metricAlarm:MetricAlarm", "aws:eks/podIdentityAssociation:PodIdentityAssociation",
})

# Launch-template tag specifications that must carry the tags: what the template launches is what the reaper finds.
LAUNCH_TEMPLATE_TAGGED_KINDS = ("instance", "volume")

# Device plugins need privileged containers to manage devices on the host; nothing else does.
PRIVILEGED_ALLOWED = frozenset({"nvidia-device-plugin", "nvidia-device-plugin-daemonset", "aws-efa-k8s-device-plugin",
                                "aws-efa-k8s-device-plugin-daemonset"})

# Broader than these is "the world" for our purposes (the stack config refuses allowedCidrs wider than /8).
MIN_IPV4_PREFIX = 8
MIN_IPV6_PREFIX = 16

SENSITIVE_ACTIONS = (
    "secretsmanager:GetSecretValue", "s3:GetObject", "s3:PutObject", "ssm:GetParameter", "ssm:GetParameters",
    "ssm:GetParametersByPath", "kms:Decrypt", "iam:PassRole", "sts:AssumeRole",
)
# AWS managed policies that grant wildcard actions in effect.
BROAD_MANAGED_POLICIES = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess", "AmazonS3FullAccess",
                          "SecretsManagerReadWrite")

_EXPIRES_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@dataclass(frozen=True)
class Violation:
    """One policy finding: which rule, which resource, what is wrong and how to fix it."""

    rule: str
    resource: str
    type: str
    message: str

    def to_json(self) -> dict:
        return {"rule": self.rule, "resource": self.resource, "type": self.type, "message": self.message}


@dataclass(frozen=True)
class Rule:
    """A named check of one resource's inputs; `check(resource_type, inputs)` returns messages, empty when fine."""

    name: str
    description: str
    check: RuleCheck


# ---------------------------------------------------------------------------------------------------- helpers


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _items(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _true(value: Any) -> bool:
    """Pulumi inputs carry booleans as bools or, from some providers and config, as "true"/"false" strings."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _world_open(cidr: Any) -> bool:
    """A CIDR that opens to the internet: /0, or wider than /8 (IPv4) or /16 (IPv6)."""
    if not isinstance(cidr, str):
        return False
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        return False
    return net.prefixlen < (MIN_IPV4_PREFIX if net.version == 4 else MIN_IPV6_PREFIX)


def _ports(rule: Mapping) -> str:
    low, high, proto = rule.get("fromPort"), rule.get("toPort"), rule.get("protocol", rule.get("ipProtocol"))
    if str(proto) == "-1":
        return "all ports"
    return f"port {low}" if low == high else f"ports {low}-{high}"


# ------------------------------------------------------------------------------------------ 1 world-open ingress


def world_open_ingress(resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
    """Ingress open to 0.0.0.0/0 or ::/0 (egress is fine): reach the API through allowedCidrs or a private path."""
    remedy = "allow only the CIDRs in nemotron-deploy:allowedCidrs or a security group"
    found: list[str] = []
    if resource_type in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        for i, rule in enumerate(_items(inputs.get("ingress"))):
            if not isinstance(rule, Mapping):
                continue
            for cidr in _items(rule.get("cidrBlocks")) + _items(rule.get("ipv6CidrBlocks")):
                if _world_open(cidr):
                    found.append(f"ingress[{i}] allows {cidr} on {_ports(rule)}; {remedy}")
    elif resource_type == INGRESS_RULE:
        for key in ("cidrIpv4", "cidrIpv6"):
            if _world_open(inputs.get(key)):
                found.append(f"{key} {inputs[key]} allows the internet in on {_ports(inputs)}; {remedy}")
    elif resource_type == SECURITY_GROUP_RULE and str(inputs.get("type", "")).lower() == "ingress":
        for cidr in _items(inputs.get("cidrBlocks")) + _items(inputs.get("ipv6CidrBlocks")):
            if _world_open(cidr):
                found.append(f"ingress rule allows {cidr} on {_ports(inputs)}; {remedy}")
    return found


# ------------------------------------------------------------------------------------------------ 2 IMDSv1


def imdsv1_allowed(resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
    """Launch templates and instances must require IMDSv2 tokens (metadataOptions.httpTokens "required").

    An instance launched from a template states it too: a per-resource check sees the instance alone, and an explicit
    setting survives a template change.
    """
    if resource_type not in (LAUNCH_TEMPLATE, INSTANCE):
        return []
    options = inputs.get("metadataOptions")
    if not isinstance(options, Mapping):
        return ['metadataOptions is missing, so IMDSv1 is allowed; set metadataOptions.httpTokens to "required"']
    if str(options.get("httpEndpoint", "enabled")).lower() == "disabled":
        return []
    tokens = options.get("httpTokens")
    if tokens != "required":
        return [f'metadataOptions.httpTokens is {tokens!r}, so IMDSv1 is allowed; set it to "required"']
    return []


# ------------------------------------------------------------------------------------------ 3 unencrypted volumes


def unencrypted_volumes(resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
    """Every EBS volume is encrypted: launch-template mappings, instance root and extra devices, standalone volumes."""
    found: list[str] = []
    if resource_type == LAUNCH_TEMPLATE:
        mappings = _items(inputs.get("blockDeviceMappings"))
        if not mappings:
            found.append("no blockDeviceMappings: the root volume keeps the AMI snapshot's settings (unencrypted); "
                         "map the root device with ebs.encrypted true")
        for i, mapping in enumerate(mappings):
            ebs = _get(mapping, "ebs")
            if isinstance(ebs, Mapping) and not _true(ebs.get("encrypted")):
                device = _get(mapping, "deviceName") or f"blockDeviceMappings[{i}]"
                found.append(f"{device}: ebs.encrypted is {ebs.get('encrypted')!r}; set it to true")
    elif resource_type == INSTANCE:
        root = inputs.get("rootBlockDevice")
        if not _true(_get(root, "encrypted")):
            found.append(f"rootBlockDevice.encrypted is {_get(root, 'encrypted')!r}; set it to true")
        for i, device in enumerate(_items(inputs.get("ebsBlockDevices"))):
            if not _true(_get(device, "encrypted")):
                name = _get(device, "deviceName") or f"ebsBlockDevices[{i}]"
                found.append(f"{name}: encrypted is {_get(device, 'encrypted')!r}; set it to true")
    elif resource_type == EBS_VOLUME and not _true(inputs.get("encrypted")):
        found.append(f"encrypted is {inputs.get('encrypted')!r}; set it to true")
    return found


# ------------------------------------------------------------------------------------------------ 4 tags


def _required_tags(required_tags: Mapping[str, str | None] | Iterable[str]) -> dict[str, str | None]:
    if isinstance(required_tags, Mapping):
        return {str(k): (None if v is None else str(v)) for k, v in required_tags.items()}
    return {str(k): None for k in required_tags}


def _tag_problems(tags: Any, required: Mapping[str, str | None]) -> list[str]:
    if not isinstance(tags, Mapping):
        return [f"no tags; add {', '.join(required)}"]
    problems = []
    missing = [key for key in required if key not in tags or tags[key] in (None, "")]
    if missing:
        problems.append(f"missing tag(s) {', '.join(missing)}")
    for key, expected in required.items():
        value = tags.get(key)
        if key in missing:
            continue
        if expected is not None and str(value) != expected:
            problems.append(f"tag {key} is {value!r}, expected {expected!r}")
        elif key == TAG_EXPIRES_AT and not _iso_utc(value):
            problems.append(f"tag {key} is {value!r}, not an ISO 8601 UTC time such as 2026-12-01T18:00:00Z")
    return problems


def _iso_utc(value: Any) -> bool:
    if not isinstance(value, str) or not _EXPIRES_AT.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def tag_check(required_tags: Mapping[str, str | None] | Iterable[str] = REQUIRED_TAG_KEYS) -> RuleCheck:
    """A missing-tags check bound to the tags a stack requires: keys, or a mapping of keys to the values they must
    have (a plan's `tags`). The expires-at tag must always be ISO 8601 UTC."""
    required = _required_tags(required_tags)

    def missing_tags(resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
        """Taggable AWS resources carry the stack, owner and expires-at tags the reaper and teardown rely on."""
        if not resource_type.startswith("aws:") or (resource_type not in TAGGABLE_TYPES and "tags" not in inputs):
            return []
        tags = inputs.get("tags")
        if isinstance(inputs.get("tagsAll"), Mapping):  # provider default tags, when the engine reports them
            tags = {**inputs["tagsAll"], **(tags if isinstance(tags, Mapping) else {})}
        found = _tag_problems(tags, required)
        if resource_type == LAUNCH_TEMPLATE:
            specs = {str(_get(s, "resourceType")): _get(s, "tags") for s in _items(inputs.get("tagSpecifications"))}
            for kind in LAUNCH_TEMPLATE_TAGGED_KINDS:
                if kind not in specs:
                    found.append(f'tagSpecifications has no resourceType "{kind}": what it launches goes untagged')
                else:
                    found += [f'tagSpecifications "{kind}": {p}' for p in _tag_problems(specs[kind], required)]
        return found

    return missing_tags


# ------------------------------------------------------------------------------------------------ 5 wildcard IAM


def _policy_document(value: Any) -> Mapping | None:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        try:
            document = json.loads(value)
        except ValueError:
            return None
        return document if isinstance(document, Mapping) else None
    return None


def _wildcard_resource(resource: Any) -> bool:
    return isinstance(resource, str) and (
        resource == "*" or bool(re.fullmatch(r"arn:aws[\w-]*:[^:]+:[^:]*:[^:]*:\*", resource))
        or bool(re.fullmatch(r"arn:aws[\w-]*:s3:::\*(/\*)?", resource)))


def _statement_problems(statement: Any, where: str) -> list[str]:
    if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
        return []
    sid = f" ({statement['Sid']})" if statement.get("Sid") else ""
    found = []
    actions = [a for a in _items(statement.get("Action")) if isinstance(a, str)]
    for action in actions:
        if action == "*" or action.endswith(":*"):
            found.append(f"{where}{sid} allows action {action!r}; list the actions the workload calls")
    if "NotAction" in statement:
        found.append(f"{where}{sid} allows NotAction {statement['NotAction']!r}, i.e. every other action; "
                     "list the allowed actions instead")
    resources = _items(statement.get("Resource"))
    wildcard = any(_wildcard_resource(r) for r in resources) or "NotResource" in statement
    if wildcard:
        for action in actions:
            sensitive = [s for s in SENSITIVE_ACTIONS if fnmatchcase(s.lower(), action.lower())]
            if sensitive and action != "*" and not action.endswith(":*"):
                found.append(f"{where}{sid} allows {action!r} on every resource; name the secrets, objects or "
                             f"roles ({', '.join(sensitive)})")
    return found


def _document_problems(value: Any, where: str) -> list[str]:
    document = _policy_document(value)
    if document is None:
        return []
    found = []
    for i, statement in enumerate(_items(document.get("Statement"))):
        found += _statement_problems(statement, f"{where} Statement[{i}]")
    return found


def wildcard_iam(resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
    """IAM grants name their actions: no "*" or "service:*" (nor NotAction), no sensitive action on Resource "*"."""
    found: list[str] = []
    if resource_type in (IAM_POLICY, IAM_ROLE_POLICY, IAM_USER_POLICY, IAM_GROUP_POLICY):
        found += _document_problems(inputs.get("policy"), "policy")
    elif resource_type == IAM_ROLE:
        for i, inline in enumerate(_items(inputs.get("inlinePolicies"))):
            name = _get(inline, "name") or f"inlinePolicies[{i}]"
            found += _document_problems(_get(inline, "policy"), f"inline policy {name}")
        for arn in _items(inputs.get("managedPolicyArns")):
            found += _broad_managed_policy(arn)
        trust = _policy_document(inputs.get("assumeRolePolicy")) or {}
        for i, statement in enumerate(_items(trust.get("Statement"))):
            principal = _get(statement, "Principal")
            if principal == "*" or (isinstance(principal, Mapping) and "*" in _items(principal.get("AWS"))):
                found.append(f"assumeRolePolicy Statement[{i}] lets any principal assume the role; name the service "
                             "or account")
    elif resource_type == IAM_ROLE_POLICY_ATTACHMENT:
        found += _broad_managed_policy(inputs.get("policyArn"))
    return found


def _broad_managed_policy(arn: Any) -> list[str]:
    if isinstance(arn, str) and arn.rsplit("/", 1)[-1] in BROAD_MANAGED_POLICIES and ":aws:policy/" in arn:
        return [f"attaches {arn.rsplit('/', 1)[-1]}, which grants wildcard actions; attach a policy that lists "
                "the actions the workload calls"]
    return []


# ------------------------------------------------------------------------------------------ 6 plaintext secrets

_SECRET_WORDS = frozenset({"TOKEN", "PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "APIKEY", "ACCESSKEY",
                           "SECRETKEY", "PRIVATEKEY", "CREDENTIAL", "CREDENTIALS", "AUTHKEY"})
# A name ending in one of these holds a reference to a secret (its ARN, id, file, path), not the secret itself.
_REFERENCE_ENDINGS = frozenset({"ARN", "ID", "IDS", "NAME", "NAMES", "FILE", "PATH", "REF", "REFS", "URI", "URL",
                                "TYPE", "SOURCE", "HEADER", "LENGTH", "ENABLED", "POLICY", "ROTATION", "VERSION",
                                "KMS", "SELECTOR"})
TOKEN_SHAPES = (
    ("a Hugging Face token (hf_...)", re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}")),
    ("an NGC API key (nvapi-...)", re.compile(r"(?<![A-Za-z0-9])nvapi-[A-Za-z0-9_\-]{20,}")),
    ("an AWS access key id (AKIA...)", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")),
    ("an API secret key (sk-...)", re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{20,}")),
    ("a GitHub token (ghp_...)", re.compile(r"(?<![A-Za-z0-9])(?:ghp|github_pat)_[A-Za-z0-9_]{30,}")),
    ("a private key block", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
)
SECRET_FLAGS = frozenset({"--api-key", "--hf-token", "--token", "--password", "--ngc-api-key"})
# Types that are where secrets belong, or that generate them.
SECRET_STORES = frozenset({SECRET_VERSION, K8S_SECRET})
_EXEMPT_PREFIXES = ("random:",)


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w.upper() for w in re.split(r"[\s_\-.:/]+", spaced) if w]


def secret_like(name: str) -> bool:
    """Does this env var or input key name hold a secret (HF_TOKEN, NGC_API_KEY, apiKey, password)?

    Names of references are not secrets: HF_TOKEN_FILE, apiKeySecretArn, and camelCase keys ending in Secret
    (ngcAPISecret, imagePullSecrets) name a Kubernetes Secret. An UPPER_SNAKE name ending in SECRET (CLIENT_SECRET)
    is one.
    """
    words = _words(name)
    if not words or words[-1] in _REFERENCE_ENDINGS:
        return False
    if words[-1] in ("SECRET", "SECRETS") and not name.isupper():
        return False
    pairs = [a + b for a, b in zip(words, words[1:], strict=False)]
    return any(w in _SECRET_WORDS for w in words + pairs)


def _literal(value: Any) -> bool:
    """A value written into the resource, as opposed to a reference resolved at run time ($VAR, $(cmd), an ARN)."""
    if not isinstance(value, str):
        return False
    text = value.strip().strip("\"'").strip()
    return bool(text) and not text.startswith(("$", "arn:", "{{resolve:"))


def _token_shape(text: str) -> str | None:
    for label, pattern in TOKEN_SHAPES:
        if pattern.search(text):
            return label
    return None


def _flag_problems(words: list[str], where: str) -> list[str]:
    found = []
    for i, word in enumerate(words):
        flag, eq, value = word.partition("=")
        if flag not in SECRET_FLAGS:
            continue
        value = value if eq else (words[i + 1] if i + 1 < len(words) else "")
        if _literal(value):
            found.append(f"{where} passes {flag} a literal value; read it from an environment variable filled from "
                         "a secret (e.g. --api-key \"$VLLM_API_KEY\")")
    return found


_ASSIGNMENT = re.compile(r"(?<![\w\-])(?:export\s+)?([A-Za-z_]\w*)=(?=(\"[^\"]*\"|'[^']*'|[^\s;]*))")
_KEY_VALUE = re.compile(r"^\s*(?:-\s+)?[\"']?([A-Za-z_][\w.\-]*)[\"']?\s*:\s+(\S.*?)\s*,?\s*$")


def _decoded_user_data(text: str) -> str:
    """User data as cloud-init reads it: launch templates carry it base64-encoded, sometimes gzipped."""
    compact = re.sub(r"\s+", "", text)
    if not compact or len(compact) % 4 or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", compact):
        return text
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return text
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except OSError:
            return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return text


def _user_data_problems(text: str, where: str) -> list[str]:
    found = []
    for number, line in enumerate(_decoded_user_data(text).splitlines(), start=1):
        comment = line.lstrip().startswith("#")
        hits = [] if comment else [m.group(1) for m in _ASSIGNMENT.finditer(line)
                                   if secret_like(m.group(1)) and _literal(m.group(2))]
        key_value = None if comment else _KEY_VALUE.match(line)
        if key_value and secret_like(key_value.group(1)) and _literal(key_value.group(2)):
            hits.append(key_value.group(1))
        flags = [] if comment else _flag_problems(line.split(), f"{where} line {number}")
        if hits:
            found.append(f"{where} line {number} sets {', '.join(dict.fromkeys(hits))} to a literal value; read it "
                         "at boot from Secrets Manager (aws secretsmanager get-secret-value)")
        elif flags:
            found += flags
        elif shape := _token_shape(line):
            found.append(f"{where} line {number} contains what looks like {shape}; move it to Secrets Manager")
    return found


def _env_problems(env: Any, where: str) -> list[str]:
    found = []
    for item in _items(env):
        if not isinstance(item, Mapping):
            continue
        name, value = str(item.get("name", "")), item.get("value")
        if secret_like(name) and _literal(value):
            found.append(f"{where} env {name} holds a literal value; use valueFrom.secretKeyRef")
        elif isinstance(value, str) and (shape := _token_shape(value)):
            found.append(f"{where} env {name} holds what looks like {shape}; use valueFrom.secretKeyRef")
    return found


def _walk(value: Any, path: str) -> Iterator[tuple[str, str | None, Any]]:
    """Every (path, key, value) below value; key is None for list items."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else str(key)
            yield child_path, str(key), child
            yield from _walk(child, child_path)
    elif isinstance(value, list | tuple):
        for i, child in enumerate(value):
            yield f"{path}[{i}]", None, child
            yield from _walk(child, f"{path}[{i}]")


def plaintext_secrets(resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
    """Secrets live in Secrets Manager, Pulumi secrets or Kubernetes Secrets, never as literals in env, user data or
    inputs (a SecretVersion or a Kubernetes Secret is where they belong and is not checked)."""
    if resource_type in SECRET_STORES or resource_type.startswith(_EXEMPT_PREFIXES):
        return []
    if resource_type == SSM_PARAMETER and inputs.get("type") == "SecureString":
        return []
    found: list[str] = []
    for key in ("userData", "userDataBase64"):
        if isinstance(inputs.get(key), str):
            found += _user_data_problems(inputs[key], key)
    judged: set[str] = set()  # lists whose secret flags were reported: their items are not reported again
    for path, key, value in _walk({k: v for k, v in inputs.items() if k not in ("userData", "userDataBase64")}, ""):
        if key == "env" and isinstance(value, list):
            found += _env_problems(value, path.removesuffix(".env"))
            judged.add(path)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            flags = _flag_problems([w for v in value for w in v.split()], path)
            if flags:
                found += flags
                judged.add(path)
        if not isinstance(value, str) or path.rsplit("[", 1)[0] in judged or ".env[" in path:
            continue
        if key is not None and secret_like(key) and _literal(value):
            found.append(f"{path} holds a literal secret; reference Secrets Manager or a Kubernetes Secret instead")
        elif shape := _token_shape(value):
            found.append(f"{path} contains what looks like {shape}; move it to Secrets Manager")
    return found


# ------------------------------------------------------------------------------------------ 7 public EKS endpoint


def public_eks_endpoint(resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
    """An EKS API endpoint is private, or public only to named CIDRs (AWS makes it public to 0.0.0.0/0 by default)."""
    if resource_type != EKS_CLUSTER:
        return []
    vpc_config = inputs.get("vpcConfig") if isinstance(inputs.get("vpcConfig"), Mapping) else {}
    public = vpc_config.get("endpointPublicAccess")
    if public is not None and not _true(public):
        return []
    cidrs = _items(vpc_config.get("publicAccessCidrs"))
    stated = "is true" if public is not None else "is not set (AWS defaults it to true)"
    if not cidrs:
        return [f"vpcConfig.endpointPublicAccess {stated} with no publicAccessCidrs (0.0.0.0/0); set "
                "endpointPublicAccess false or publicAccessCidrs to the allowed CIDRs"]
    wide = [c for c in cidrs if _world_open(c)]
    if wide:
        return [f"vpcConfig.publicAccessCidrs includes {', '.join(map(str, wide))}; narrow it to the allowed CIDRs"]
    return []


# ------------------------------------------------------------------------------------------ 8 privileged pods


def _pod_specs(inputs: Mapping[str, Any]) -> Iterator[tuple[str, Mapping]]:
    """Every pod spec in a Kubernetes object: Deployment, StatefulSet, DaemonSet, Job, LeaderWorkerSet templates..."""
    spec = inputs.get("spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("containers"), list):
        yield "spec", spec
    for path, _key, value in _walk(spec, "spec"):
        if isinstance(value, Mapping) and isinstance(value.get("containers"), list):
            yield path, value


def privileged_pods(resource_type: str, inputs: Mapping[str, Any]) -> list[str]:
    """No privileged containers, except in the device-plugin DaemonSets that manage GPUs and EFA on the host."""
    if not resource_type.startswith("kubernetes:"):
        return []
    name = str(_get(inputs, "metadata", "name") or "")
    if resource_type.endswith(":DaemonSet") and name in PRIVILEGED_ALLOWED:
        return []
    found = []
    for path, pod in _pod_specs(inputs):
        for kind in ("initContainers", "containers"):
            for i, container in enumerate(_items(pod.get(kind))):
                if _true(_get(container, "securityContext", "privileged")):
                    label = _get(container, "name") or f"{kind}[{i}]"
                    found.append(f"{path} container {label} is privileged; grant the capabilities or device "
                                 "resources it needs instead (only device-plugin DaemonSets such as "
                                 "nvidia-device-plugin may be privileged)")
    return found


# ---------------------------------------------------------------------------------------------------- registry

RULES: tuple[Rule, ...] = (
    Rule("world-open-ingress", "No security group ingress from 0.0.0.0/0 or ::/0.", world_open_ingress),
    Rule("imdsv1-allowed", 'Launch templates and instances require IMDSv2 (httpTokens "required").', imdsv1_allowed),
    Rule("unencrypted-volume", "Every EBS volume is encrypted.", unencrypted_volumes),
    Rule("missing-tags", "Taggable resources carry the nemotron-deploy stack, owner and expires-at tags.",
         tag_check()),
    Rule("wildcard-iam", 'IAM grants no "*" or "service:*" actions and no sensitive action on every resource.',
         wildcard_iam),
    Rule("plaintext-secret", "No secrets as literals in env, user data or inputs.", plaintext_secrets),
    Rule("public-eks-endpoint", "The EKS API endpoint is private or limited to named CIDRs.", public_eks_endpoint),
    Rule("privileged-pod", "No privileged containers except device plugins.", privileged_pods),
)
RULE_NAMES = tuple(rule.name for rule in RULES)


def rules_for(required_tags: Mapping[str, str | None] | Iterable[str] = REQUIRED_TAG_KEYS) -> tuple[Rule, ...]:
    """The registry, with the missing-tags rule bound to the tags this stack requires."""
    return tuple(replace(rule, check=tag_check(required_tags)) if rule.name == "missing-tags" else rule
                 for rule in RULES)


def check_resources(resources: Iterable[Mapping[str, Any]],
                    required_tags: Mapping[str, str | None] | Iterable[str] = REQUIRED_TAG_KEYS) -> list[Violation]:
    """Every policy violation in a stack's declared resources, in declaration order then rule order.

    `required_tags` is either the tag keys every taggable resource must carry, or a mapping of keys to the values
    they must have (pass a plan's `tags` to also catch a resource tagged for another stack).
    """
    rules = rules_for(required_tags)
    violations = []
    for index, resource in enumerate(resources):
        if not isinstance(resource, Mapping) or not isinstance(resource.get("type"), str):
            raise ValueError(f"resources[{index}]: expected a mapping with type, name and inputs, got {resource!r}")
        inputs = resource.get("inputs") or {}
        if not isinstance(inputs, Mapping):
            raise ValueError(f"resources[{index}].inputs: expected a mapping, got {type(inputs).__name__}")
        name, rtype = str(resource.get("name", f"resources[{index}]")), resource["type"]
        for rule in rules:
            violations += [Violation(rule.name, name, rtype, message) for message in rule.check(rtype, inputs)]
    return violations
