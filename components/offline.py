"""The offline engine: run the Pulumi program of a stack under mocks and list every resource it declares.

`make plan`, `python -m scripts.plan --json` and the component tests all go through `run_program`, so what they show
is what `pulumi up` would declare, without a Pulumi CLI, provider plugins or a cloud account
(docs/sources.md#pulumi-offline).

Each stack runs in a fresh context (the Pulumi runtime keeps its settings, root stack and config in context
variables), with preview off so every apply runs. Invokes the program makes are answered with plausible fake data;
an invoke the engine does not know fails the run instead of silently returning nothing. Configured secrets are
replaced by placeholders (the stack file holds ciphertext), and every secret input is shown as "[secret]".
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import importlib.util
import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from types import ModuleType

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS, get_root_resource
from pulumi.runtime.stack import run_pulumi_func

from planner.references import ref
from planner.stack_config import PROJECT, load_stack
from planner.targets.eks import required_secret_keys

REPO = Path(__file__).resolve().parent.parent
PROGRAM = REPO / "__main__.py"
STACKS_DIR = REPO / "stacks"
FAKE_ACCOUNT = "123456789012"
HIDDEN_VALUE = "[secret]"
# Stack-file keys that hold Pulumi secrets, read by the program with Config.get_secret.
SECRET_KEYS = ("apiKey", "hfToken", "ngcApiKey")


class OfflineRunError(RuntimeError):
    """The program failed under mocks, or used an invoke the engine cannot answer."""


@dataclass(frozen=True)
class OfflineRun:
    """What the program declared for one stack: its resources and its exports."""

    stack: str
    resources: list[dict]  # {"type", "name", "inputs"} sorted by name; inputs camelCase as declared, secrets masked
    outputs: dict = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[dict]:
        return [r for r in self.resources if r["type"] == type_token]

    def named(self, name: str) -> dict:
        matches = [r for r in self.resources if r["name"] == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r} in {self.stack}")
        return matches[0]


def declared_resources(stack: str, stacks_dir: Path = STACKS_DIR, now: datetime | None = None) -> list[dict]:
    """Every resource the program declares for `stack`, as the `resources` list of `scripts.plan --json`."""
    return run_program(stack, stacks_dir=stacks_dir, now=now).resources


def run_program(stack: str, *, stacks_dir: Path = STACKS_DIR, now: datetime | None = None,
                secrets: dict[str, str] | None = None) -> OfflineRun:
    """Run __main__.py for `stack` under mocks. `secrets` gives values for secret config keys (apiKey, hfToken);
    keys the stack file sets but `secrets` omits get a placeholder value, and so do keys the stack cannot deploy
    without (ngcApiKey for NIM), which `pulumi up` asks for."""
    stack_file = load_stack(stacks_dir, stack)
    config = {"aws:region": stack_file.region or ""}
    required = required_secret_keys(stack_file.config)
    for key in SECRET_KEYS:
        if getattr(stack_file.config, _field_of(key)) is not None or key in required:
            config[f"{PROJECT}:{key}"] = f"offline-placeholder-{key}"
    for key, value in (secrets or {}).items():
        config[f"{PROJECT}:{key}"] = value
    return contextvars.Context().run(_run_isolated, stack, stack_file.region or "us-east-1", config, stacks_dir, now)


def _field_of(key: str) -> str:
    return {"apiKey": "api_key", "hfToken": "hf_token", "ngcApiKey": "ngc_api_key"}[key]


def _forget_pending_outputs() -> None:
    """The one reach into the Pulumi SDK's private state: the runtime tracks every Output still pending in
    SETTINGS.outputs and awaits them when a program ends. set_mocks keeps that set, and a failed run's outputs belong to
    its closed event loop, so the next run would wait on them ("Event loop is closed"). The SDK has no public reset
    for it (reset_options rebuilds the settings but needs engine addresses the offline engine does not have)."""
    SETTINGS.outputs = set()


def _run_isolated(stack: str, region: str, config: dict[str, str], stacks_dir: Path,
                  now: datetime | None) -> OfflineRun:
    errors = _ErrorLog()
    logger = logging.getLogger(f"nemotron-deploy.offline.{stack}")
    logger.propagate = False
    logger.handlers = [errors]
    mocks = OfflineMocks(region)
    # Its own event loop and output set: what a failed run leaves pending must not surface in the next one.
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_drop_unretrieved_exceptions)
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, logger=logger)
    _forget_pending_outputs()
    pulumi.runtime.set_all_config(config)
    program = _program_module()
    exports: dict = {}

    async def run() -> None:
        # the offline plan shows a stack without expiresAt as if renewed now (`pulumi up` would refuse it)
        program.main(stacks_dir=stacks_dir, now=now, provisional_expiry=True)
        # Under mocks the root stack never registers its outputs; read what pulumi.export put on it.
        for name, value in get_root_resource().outputs.items():
            output = pulumi.Output.from_input(value)
            exports[name] = HIDDEN_VALUE if await output.is_secret() else await output.future()

    try:
        loop.run_until_complete(run_pulumi_func(run))
    except Exception as exc:  # noqa: BLE001 - one message naming the stack, whatever failed inside the program
        raise OfflineRunError(f"{stack}: the Pulumi program failed under mocks: {exc}") from exc
    finally:
        _close(loop)
    if mocks.unknown_invokes:
        raise OfflineRunError(f"{stack}: invokes the offline engine does not answer: {sorted(mocks.unknown_invokes)}")
    if errors.messages:
        raise OfflineRunError(f"{stack}: the Pulumi program logged errors: {'; '.join(errors.messages)}")
    return OfflineRun(stack, sorted(mocks.declared, key=lambda r: (r["name"], r["type"])), _plain(exports))


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what a run left pending and close its loop."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    asyncio.set_event_loop(None)


def _drop_unretrieved_exceptions(loop, context: dict) -> None:
    if context.get("message") != "Future exception was never retrieved":
        loop.default_exception_handler(context)


@cache
def _program_module() -> ModuleType:
    """__main__.py imported under another name, so its `if __name__ == "__main__"` entry does not run."""
    spec = importlib.util.spec_from_file_location("nemotron_deploy_program", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ErrorLog(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc", "aws:ec2/subnet:Subnet": "subnet", "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg", "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/internetGateway:InternetGateway": "igw", "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc", "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt", "aws:ec2/instance:Instance": "i",
    "aws:ec2/placementGroup:PlacementGroup": "pg", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
}


class OfflineMocks(pulumi.runtime.Mocks):
    """Plausible ids and state for every resource; answers for the invokes the program makes, nothing else."""

    def __init__(self, region: str):
        self.region = region
        self.declared: list[dict] = []
        self.unknown_invokes: set[str] = set()
        self._instances = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.declared.append({"type": args.typ, "name": args.name, "inputs": _plain(args.inputs)})
        digest = hashlib.sha1(f"{args.typ}/{args.name}".encode(), usedforsecurity=False).hexdigest()
        prefix = _ID_PREFIXES.get(args.typ)
        resource_id = f"{prefix}-0{digest[:16]}" if prefix else f"{args.name}-{digest[:8]}"
        service = args.typ.split(":")[1].split("/")[0]
        state = dict(args.inputs)
        state.setdefault("name", args.name)
        state["arn"] = f"arn:aws:{service}:{self.region}:{FAKE_ACCOUNT}:{args.name}"
        if args.typ == "aws:ec2/instance:Instance":
            self._instances += 1
            state |= {"privateIp": f"10.64.0.{10 + self._instances}", "arn":
                      f"arn:aws:ec2:{self.region}:{FAKE_ACCOUNT}:instance/{resource_id}"}
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state |= {"latestVersion": 1, "defaultVersion": 1}
        elif args.typ == "aws:secretsmanager/secret:Secret":
            state["arn"] = f"arn:aws:secretsmanager:{self.region}:{FAKE_ACCOUNT}:secret:{args.name}-Ab12Cd"
        elif args.typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{FAKE_ACCOUNT}:role/{args.name}"
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"offline-generated-{args.name}"
        elif args.typ == "aws:eks/cluster:Cluster":
            state |= self._eks_cluster(args.inputs.get("name") or args.name, digest, args.inputs.get("vpcConfig"))
        elif args.typ == "aws:eks/nodeGroup:NodeGroup":
            state |= {"nodeGroupName": args.name, "status": "ACTIVE",
                      "resources": [{"autoscalingGroups": [{"name": f"eks-{args.name}-{digest[:8]}"}]}]}
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        answers = {
            "aws:ssm/getParameter:getParameter": self._ssm_parameter,
            "aws:index/getPartition:getPartition": self._partition,
            "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": self._instance_type_offerings,
            "aws:eks/getCluster:getCluster": self._existing_eks_cluster,
        }
        if args.token not in answers:
            self.unknown_invokes.add(args.token)
            raise OfflineRunError(f"invoke {args.token} is not answered by the offline engine (components/offline.py)")
        return answers[args.token](args.args)

    def _eks_cluster(self, name: str, digest: str, vpc_config: dict | None) -> dict:
        """What EKS reports for a cluster: endpoint, CA, OIDC issuer, the security group it creates."""
        host = f"{digest[:32].upper()}.gr7.{self.region}.eks.amazonaws.com"
        return {"name": name, "arn": f"arn:aws:eks:{self.region}:{FAKE_ACCOUNT}:cluster/{name}",
                "endpoint": f"https://{host}", "status": "ACTIVE",
                "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCm9mZmxpbmUK"},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/"
                                                     f"{digest[:32].upper()}"}]}],
                "vpcConfig": dict(vpc_config or {}) | {"clusterSecurityGroupId": f"sg-0{digest[16:32]}"}}

    def _existing_eks_cluster(self, query: dict) -> dict:
        name = query["name"]
        digest = hashlib.sha1(f"existing-cluster/{name}".encode(), usedforsecurity=False).hexdigest()
        cluster = self._eks_cluster(name, digest, {"subnetIds": [f"subnet-0{digest[:16]}"],
                                                   "vpcId": f"vpc-0{digest[16:32]}", "endpointPrivateAccess": True,
                                                   "endpointPublicAccess": False, "publicAccessCidrs": [],
                                                   "securityGroupIds": []})
        return {"id": name, "name": name, "arn": cluster["arn"], "endpoint": cluster["endpoint"],
                "status": "ACTIVE", "version": ref("eks-kubernetes-version"),
                "certificateAuthorities": [cluster["certificateAuthority"]],
                "identities": cluster["identities"], "vpcConfig": cluster["vpcConfig"], "tags": {}}

    def _ssm_parameter(self, query: dict) -> dict:
        name = query["name"]
        ami = "ami-0" + hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:16]
        return {"id": name, "name": name, "type": "String", "value": ami, "insecureValue": ami, "version": 1,
                "arn": f"arn:aws:ssm:{self.region}::parameter{name}"}

    def _partition(self, query: dict) -> dict:
        return {"id": "aws", "partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws"}

    def _instance_type_offerings(self, query: dict) -> dict:
        types = [v for f in query.get("filters", []) if f["name"] == "instance-type" for v in f["values"]]
        zones = [f"{self.region}{letter}" for letter in "abc"] if types else []
        return {"id": self.region, "instanceTypes": [t for _ in zones for t in types], "locations": zones,
                "locationTypes": ["availability-zone"] * len(zones)}


def _plain(value):
    """Inputs as JSON shows them: secrets masked, whole numbers as ints (protobuf sends every number as a float)."""
    if rpc.is_rpc_secret(value):
        return HIDDEN_VALUE
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def accepts_tags(type_token: str) -> bool:
    """Whether resources of this Pulumi type take `tags` (every such resource must carry the stack's tags)."""
    cls = _resource_class(type_token)
    return cls is not None and "tags" in _init_parameters(cls)


@cache
def _resource_class(type_token: str):
    package, module_path, class_name = type_token.split(":")
    module = module_path.split("/")[0]
    try:
        if package == "aws":
            import pulumi_aws as root
        elif package == "random":
            import pulumi_random as root
        else:
            return None
        holder = root if module == "index" else getattr(root, module)
        return getattr(holder, class_name)
    except AttributeError:
        return None


def _init_parameters(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls._internal_init).parameters)
