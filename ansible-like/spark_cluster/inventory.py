"""The Spark inventory: the YAML a user writes (README.md contract), validated into frozen dataclasses.

Bad input raises the planner's PlanInputError naming the field, the value and what is allowed; the tasks turn it into
one line and exit status 2 before any host is contacted.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import PlanInputError, PlanInputNote, one_of
from planner.yamlfile import YamlFileError, load_yaml_file

NETWORK_BACKENDS = ("netplan", "nmcli", "ip")
NETPLAN_DIR = "/etc/netplan/"
INVENTORY_DIR = Path(__file__).resolve().parent.parent / "inventory"
DEFAULT_INVENTORY = INVENTORY_DIR / "spark.yaml"
INVENTORY_ENV = "NEMOTRON_SPARK_INVENTORY"
MTU_MIN, MTU_MAX = 1280, 9216
MAX_NODES = 8  # DGX Spark clusters are 2-4 nodes; the lab and the bench go up to 8
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

_TOP_KEYS = ("user", "ssh_key", "port", "known_hosts", "mtu", "network_backend", "netplan_file", "env_file",
             "state_dir", "nodes", "ray", "nccl", "vllm", "weights")
_NODE_KEYS = ("name", "host", "links")
_LINK_KEYS = ("interface", "address")
_RAY_KEYS = ("bin", "python", "port", "num_cpus", "object_store_memory", "include_dashboard")
_NCCL_KEYS = ("tests_dir", "mpirun")
_VLLM_KEYS = ("bin", "model", "api_key_file", "port", "context_tokens", "concurrency")
_WEIGHTS_KEYS = ("dir", "source", "fetch_command", "copy_parallel", "hash_jobs", "timeout_s")
# a model directory: under the home (~/...) or absolute, of plain path parts (rsync and sh see it unquoted-safe)
_WEIGHTS_DIR = re.compile(r"^(~/|/)[A-Za-z0-9._+@=-]+(/[A-Za-z0-9._+@=-]+)*$")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._+@=/-]*)?$")
_HUB_REPO = re.compile(r"^hf://[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class Link:
    """One link interface (half of a QSFP port) and the address it should carry."""

    interface: str
    address: str  # CIDR, e.g. 192.168.100.10/24

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_interface(self.address).network


@dataclass(frozen=True)
class Node:
    name: str
    host: str  # the SSH (management) address
    links: tuple[Link, ...]


@dataclass(frozen=True)
class RaySettings:
    bin: str = "ray"
    python: str = "python3"  # the interpreter that has `ray` (used to list the cluster's nodes)
    port: int = 6379
    num_cpus: int | None = None
    object_store_memory: int | None = None  # bytes
    include_dashboard: bool = True


@dataclass(frozen=True)
class NcclSettings:
    tests_dir: str = "~/nccl-tests/build"
    mpirun: str = "mpirun"


@dataclass(frozen=True)
class VllmSettings:
    bin: str = "vllm"
    model: str = "nemotron-3-ultra"
    api_key_file: str = "~/.config/nemotron-deploy/vllm-api-key"  # mode 600 on the head node; never in argv
    port: int = 8000
    context_tokens: int = 32768
    concurrency: int = 8


@dataclass(frozen=True)
class WeightsSettings:
    """spark.weights: where the model lives on every node, where the head gets it, how the copies run."""

    dir: str = "~/models/nemotron-3-ultra"  # the model directory on every node (default: ~/models/<vllm.model>)
    source: str = "local"  # local: the head has it in dir; s3://bucket/prefix or hf://org/name: the head fetches it
    fetch_command: str = "python3 -m scripts.stage_weights fetch {source} --to {dir}"  # run on the head
    copy_parallel: int = 3  # nodes copying from the head at once
    hash_jobs: int = 4  # sha256sum processes per node
    timeout_s: int = 21600  # bound of each long step on a node: the fetch, one node's copy, one node's hashing


@dataclass(frozen=True)
class Inventory:
    source: str
    user: str
    nodes: tuple[Node, ...]
    mtu: int
    network_backend: str = "netplan"
    port: int = 22
    ssh_key: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    netplan_file: str = "/etc/netplan/40-cx7.yaml"
    env_file: str = "/etc/nemotron-deploy/spark.env"
    state_dir: str = "~/.local/state/nemotron-deploy"  # per user: what the toolkit started (Ray, vLLM)
    ray: RaySettings = field(default_factory=RaySettings)
    nccl: NcclSettings = field(default_factory=NcclSettings)
    vllm: VllmSettings = field(default_factory=VllmSettings)
    weights: WeightsSettings = field(default_factory=WeightsSettings)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def head(self) -> Node:
        """The first node: Ray head, mpirun launcher, vLLM API."""
        return self.nodes[0]


def inventory_path(given: str | None) -> Path:
    """The inventory a task uses: --inventory, else $NEMOTRON_SPARK_INVENTORY, else the shipped default."""
    return Path(given or os.environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY)


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory file; PlanInputError (field, value, allowed) on any problem."""
    source = str(path)
    data = load_yaml_file(path, "a Spark inventory YAML file")
    if data is None:
        raise YamlFileError(source, "is empty (or only comments); an inventory holds user, mtu and nodes")
    inventory = parse_inventory(data, source)
    _check_local_files(inventory, source)
    return inventory


def _check_local_files(inventory: Inventory, source: str) -> None:
    """The SSH files named in the inventory, on this machine, before any connection.

    ssh_key must exist; known_hosts may not exist yet (`fab spark.ssh` collects it, and a fresh machine has no
    ~/.ssh), but it is never a directory.
    """
    if inventory.ssh_key is not None:
        key = Path(inventory.ssh_key).expanduser()
        if not key.is_file():
            raise PlanInputError("ssh_key", inventory.ssh_key, "an existing private key file (no such file here)",
                                 source)
    known = Path(inventory.known_hosts).expanduser()
    if known.is_dir():
        raise PlanInputError("known_hosts", inventory.known_hosts, "a known_hosts file, not a directory", source)



def parse_inventory(data: object, source: str = "inventory") -> Inventory:
    """Validate already-loaded YAML data into an Inventory."""
    top = _mapping(data, "(top level)", _TOP_KEYS, source)
    user = _string(top, "user", source, required=True)
    nodes_raw = top.get("nodes")
    if not isinstance(nodes_raw, list) or not 1 <= len(nodes_raw) <= MAX_NODES:
        raise PlanInputError("nodes", nodes_raw, f"a list of 1 to {MAX_NODES} nodes", source)
    nodes = tuple(_node(raw, f"nodes[{i}]", source) for i, raw in enumerate(nodes_raw))
    _check_cluster(nodes, source)

    backend = top.get("network_backend", "netplan")
    if backend not in NETWORK_BACKENDS:
        raise PlanInputError("network_backend", backend, one_of(NETWORK_BACKENDS), source)
    kwargs: dict = {}
    for key in ("ssh_key", "known_hosts", "netplan_file", "env_file", "state_dir"):
        value = _string(top, key, source)
        if value is not None:
            kwargs[key] = value
    for key in ("netplan_file", "env_file"):
        if key in kwargs and not kwargs[key].startswith("/"):
            raise PlanInputError(key, kwargs[key], "an absolute path", source)
    netplan = kwargs.get("netplan_file")
    if netplan is not None and (not netplan.startswith(NETPLAN_DIR) or "/" in netplan[len(NETPLAN_DIR):]
                                or not netplan.endswith(".yaml") or ".." in netplan):
        raise PlanInputError("netplan_file", netplan, f"a file {NETPLAN_DIR}NAME.yaml (netplan reads only that folder)",
                             source)
    vllm = _vllm(top.get("vllm"), source)
    return Inventory(
        source=source, user=user, nodes=nodes,
        mtu=_integer(top, "mtu", MTU_MIN, MTU_MAX, source, required=True),
        network_backend=backend,
        port=_integer(top, "port", 1, 65535, source, default=22),
        ray=_ray(top.get("ray"), source), nccl=_nccl(top.get("nccl"), source), vllm=vllm,
        weights=_weights(top.get("weights"), vllm, source), **kwargs,
    )


def _node(raw: object, where: str, source: str) -> Node:
    item = _mapping(raw, where, _NODE_KEYS, source)
    name = _string(item, "name", source, required=True, where=where)
    if not _NODE_NAME.match(name):
        raise PlanInputError(f"{where}.name", name, "letters, digits, '.', '_' or '-' (at most 63)", source)
    host = _string(item, "host", source, required=True, where=where)
    links_raw = item.get("links")
    if not isinstance(links_raw, list) or not links_raw:
        raise PlanInputError(f"{where}.links", links_raw, "a non-empty list of {interface, address}", source)
    links = []
    for j, link_raw in enumerate(links_raw):
        at = f"{where}.links[{j}]"
        link = _mapping(link_raw, at, _LINK_KEYS, source)
        interface = _string(link, "interface", source, required=True, where=at)
        if not _IFNAME.match(interface):
            raise PlanInputError(f"{at}.interface", interface, "a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)",
                                 source)
        address = _string(link, "address", source, required=True, where=at)
        try:
            parsed = ipaddress.ip_interface(address)
        except ValueError:
            parsed = None
        # the subnet's own network and broadcast addresses are no host's (a /31 or /32 has neither)
        if parsed is None or parsed.version != 4 or "/" not in address or (
                parsed.network.prefixlen < 31
                and parsed.ip in (parsed.network.network_address, parsed.network.broadcast_address)):
            raise PlanInputError(f"{at}.address", address, "an IPv4 host address in CIDR form, e.g. 192.168.100.10/24",
                                 source)
        links.append(Link(interface, str(parsed)))
    if len({link.interface for link in links}) != len(links):
        raise PlanInputError(f"{where}.links", [link.interface for link in links], "distinct interfaces", source)
    return Node(name, host, tuple(links))


def _check_cluster(nodes: tuple[Node, ...], source: str) -> None:
    """Cross-node rules: unique names, hosts and addresses; link i of every node on one subnet."""
    for attr in ("name", "host"):
        seen: dict[str, int] = {}
        for i, node in enumerate(nodes):
            value = getattr(node, attr)
            if value in seen:
                raise PlanInputError(f"nodes[{i}].{attr}", value, f"a value not used by nodes[{seen[value]}]", source)
            seen[value] = i
    _check_management(nodes, source)
    _check_links(nodes, source)


def _check_management(nodes: tuple[Node, ...], source: str) -> None:
    """No management address inside a link subnet (SSH would ride the link being configured)."""
    for i, node in enumerate(nodes):
        try:
            management = ipaddress.ip_address(node.host)
        except ValueError:
            continue  # a host name: its address is not known here
        for j, link in enumerate(nodes[0].links):
            if management in link.network:
                raise PlanInputError(f"nodes[{i}].host", node.host,
                                     f"a management address outside the link subnet {link.network} of link {j} "
                                     "(SSH would ride the link being configured)", source)


def _check_links(nodes: tuple[Node, ...], source: str) -> None:
    """As many links as nodes[0], link i of every node on one subnet, no address twice."""
    count = len(nodes[0].links)
    addresses: dict[str, str] = {}
    for i, node in enumerate(nodes):
        if len(node.links) != count:
            raise PlanInputError(f"nodes[{i}].links", len(node.links), f"{count} links, as nodes[0] has", source)
        for j, link in enumerate(node.links):
            if link.network != nodes[0].links[j].network:
                raise PlanInputError(f"nodes[{i}].links[{j}].address", link.address,
                                     f"an address in {nodes[0].links[j].network} (the subnet of link {j})", source)
            if link.ip in addresses:
                raise PlanInputError(f"nodes[{i}].links[{j}].address", link.address,
                                     f"an address not used by {addresses[link.ip]}", source)
            addresses[link.ip] = f"{node.name} {link.interface}"


def _ray(raw: object, source: str) -> RaySettings:
    if raw is None:
        return RaySettings()
    item = _mapping(raw, "ray", _RAY_KEYS, source)
    kwargs: dict = {}
    for key in ("bin", "python"):
        if key in item:
            kwargs[key] = _string(item, key, source, where="ray")
    if "port" in item:
        kwargs["port"] = _integer(item, "port", 1, 65535, source, where="ray")
    if item.get("num_cpus") is not None:
        kwargs["num_cpus"] = _integer(item, "num_cpus", 1, 4096, source, where="ray")
    if item.get("object_store_memory") is not None:
        # Ray refuses less than 75 MiB
        kwargs["object_store_memory"] = _integer(item, "object_store_memory", 78_643_200, 2**46, source, where="ray")
    if "include_dashboard" in item:
        if not isinstance(item["include_dashboard"], bool):
            raise PlanInputError("ray.include_dashboard", item["include_dashboard"], "true or false", source)
        kwargs["include_dashboard"] = item["include_dashboard"]
    return RaySettings(**kwargs)


def _nccl(raw: object, source: str) -> NcclSettings:
    if raw is None:
        return NcclSettings()
    item = _mapping(raw, "nccl", _NCCL_KEYS, source)
    return NcclSettings(**{key: _string(item, key, source, where="nccl") for key in _NCCL_KEYS if key in item})


def _vllm(raw: object, source: str) -> VllmSettings:
    if raw is None:
        return VllmSettings()
    item = _mapping(raw, "vllm", _VLLM_KEYS, source)
    kwargs: dict = {key: _string(item, key, source, where="vllm") for key in ("bin", "model", "api_key_file")
                    if key in item}
    if "port" in item:
        kwargs["port"] = _integer(item, "port", 1, 65535, source, where="vllm")
    if "context_tokens" in item:
        kwargs["context_tokens"] = _integer(item, "context_tokens", 1024, 1_048_576, source, where="vllm")
    if "concurrency" in item:
        kwargs["concurrency"] = _integer(item, "concurrency", 1, 4096, source, where="vllm")
    return VllmSettings(**kwargs)


def default_weights_dir(model: str) -> str:
    """~/models/<vllm.model> (a Hugging Face id keeps its org/ folder); a model given as a path is its own dir."""
    model = model.rstrip("/")
    return model if model.startswith(("/", "~/")) else f"~/models/{model}"


def _weights(raw: object, vllm: VllmSettings, source: str) -> WeightsSettings:
    item = {} if raw is None else _mapping(raw, "weights", _WEIGHTS_KEYS, source)
    given = _string(item, "dir", source, where="weights")
    folder = (given or default_weights_dir(vllm.model)).rstrip("/")
    allowed = ("a directory ~/PATH or /PATH of letters, digits and ._+@=- parts, without . or .. parts "
               "(the model directory on every node)")
    if not _WEIGHTS_DIR.match(folder) or any(part in (".", "..") for part in folder.split("/")):
        raise PlanInputError("weights.dir", folder if given else f"{folder} (from vllm.model)", allowed, source)
    kwargs: dict = {"dir": folder}
    origin = _string(item, "source", source, where="weights")
    if origin is not None:
        if origin != "local" and not _S3_URI.match(origin) and not _HUB_REPO.match(origin):
            raise PlanInputError("weights.source", origin, "local (the head already has the model in weights.dir), "
                                 "s3://BUCKET/PREFIX (a staged copy) or hf://ORG/NAME (Hugging Face), fetched on the "
                                 "head with weights.fetch_command", source)
        kwargs["source"] = origin
    command = _string(item, "fetch_command", source, where="weights")
    if command is not None:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(command) if name is not None}
        except ValueError:
            fields = {"?"}
        if "dir" not in fields or fields - {"dir", "source"}:
            raise PlanInputError("weights.fetch_command", command, "a command run on the head with the placeholder "
                                 "{dir} and optionally {source} (no other {...})", source)
        kwargs["fetch_command"] = command
    if "copy_parallel" in item:
        kwargs["copy_parallel"] = _integer(item, "copy_parallel", 1, MAX_NODES, source, where="weights")
    if "hash_jobs" in item:
        kwargs["hash_jobs"] = _integer(item, "hash_jobs", 1, 64, source, where="weights")
    if "timeout_s" in item:
        kwargs["timeout_s"] = _integer(item, "timeout_s", 10, 7 * 86400, source, where="weights")
    return WeightsSettings(**kwargs)


def _mapping(raw: object, where: str, allowed: tuple[str, ...], source: str) -> dict:
    if not isinstance(raw, dict):
        raise PlanInputError(where, raw, f"a mapping with keys {one_of(allowed)}", source)
    for key in raw:
        if key not in allowed:
            field_name = key if where == "(top level)" else f"{where}.{key}"
            # the value is not shown: an unknown key is often a secret put where it does not belong
            close = [k for k in allowed if str(key).startswith(k) or k.startswith(str(key))] or \
                difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise PlanInputNote(str(field_name), f"unknown key; {hint}allowed: {one_of(allowed)}", source)
    return raw


def _string(item: dict, key: str, source: str, required: bool = False, where: str = "") -> str | None:
    name = f"{where}.{key}" if where else key
    value = item.get(key)
    if value is None:
        if required:
            raise PlanInputError(name, None, "a non-empty string (required)", source)
        return None
    if not isinstance(value, str) or not value.strip():
        raise PlanInputError(name, value, "a non-empty string", source)
    return value


def _integer(item: dict, key: str, low: int, high: int, source: str, required: bool = False,
             default: int | None = None, where: str = "") -> int:
    name = f"{where}.{key}" if where else key
    value = item.get(key)
    if value is None:
        if required:
            raise PlanInputError(name, None, f"an integer from {low} to {high} (required)", source)
        return default  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PlanInputError(name, value, f"an integer from {low} to {high}", source)
    return value
