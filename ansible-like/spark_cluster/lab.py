"""The Spark lab: N fake DGX Sparks on one Linux machine, each a network namespace running a real sshd.

Each lab node has
- a management veth to the root namespace (198.18.<index>.x/31): what the inventory's `host` is;
- two link interfaces named like a Spark's QSFP halves (enp1s0f0np0, enP2p1s0f0np0), unconfigured (mtu 1500,
  down, no address), plugged into one bridge per half in a switch namespace: the "QSFP cable" (mtu 9216);
- its own /etc/ssh, /etc/netplan and /etc/nemotron-deploy (`ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc),
  its own /root and /tmp (bind mounts in the sshd's mount namespace) and its own hostname (UTS namespace), so tasks
  that write system files or ~/.ssh never write the same file on two nodes.

Addresses come only from 198.18.0.0/15 (RFC 2544 benchmarking). Teardown stops the processes by the pids in the
lab's own namespaces (`ip netns pids`), then deletes the namespaces; nothing is ever stopped by name.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from spark_cluster.bounded import attempts

LAB_ROOT = Path("/var/tmp/nemotron-spark-lab")  # not under /tmp or /root: those are per node inside the lab  # noqa: S108
LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")
LINK_INTERFACES = ("enp1s0f0np0", "enP2p1s0f0np0")  # the two halves of a Spark's QSFP port 0
LINK_NETWORKS = ("198.19.0.0/24", "198.19.1.0/24")
SWITCH_MTU = 9216
MAX_NODES = 8
SSHD = "/usr/sbin/sshd"
# Root-filesystem directories the lab needs: mount points of the per-node /etc entries, sshd's privsep directory.
MOUNT_POINTS = (Path("/etc/netplan"), Path("/etc/nemotron-deploy"), Path("/run/sshd"))
PRIVATE_DIRS = ("/root", "/tmp")  # each lab node has its own (bind mounts in its sshd's mount namespace)  # noqa: S108
MOUNT_POINT_RECORD = LAB_ROOT / "created-mount-points.json"  # those the labs made, removed with the last lab
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
WAIT_STEP_S = 0.1
# Each node's own directory first on the PATH of its SSH sessions: tests install stand-ins there for the tools the
# lab has no hardware for (ibdev2netdev, show_gids, ib_write_bw, mpirun), so the rendered scripts run for real.
TOOLS_DIR = "/root/lab-tools"
SESSION_PATH = f"{TOOLS_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class LabNode:
    name: str  # node1
    namespace: str  # <lab>-n1
    host_veth: str  # root-namespace end of the management veth
    host_address: str  # CIDR, root-namespace end
    mgmt_address: str  # the node's SSH address (no prefix)
    links: tuple[tuple[str, str], ...]  # (interface, CIDR address) the inventory asks spark.link to set


@dataclass(frozen=True)
class LabLayout:
    name: str
    index: int
    nodes: tuple[LabNode, ...]

    @property
    def switch_namespace(self) -> str:
        return f"{self.name}-sw"

    @property
    def state_dir(self) -> Path:
        return LAB_ROOT / self.name

    @property
    def client_key(self) -> Path:
        return self.state_dir / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def inventory_file(self) -> Path:
        return self.state_dir / "inventory.yaml"

    def node(self, name: str) -> LabNode:
        return next(n for n in self.nodes if n.name == name)

    def node_dir(self, node: LabNode) -> Path:
        return self.state_dir / node.name

    def etc_dir(self, node: LabNode) -> Path:
        return Path("/etc/netns") / node.namespace


def lab_layout(name: str, count: int, index: int = 0) -> LabLayout:
    """Names and addresses of a lab of `count` nodes (pure)."""
    if not _NAME.match(name):
        raise LabError(f"lab name {name!r}: 1-8 of a-z 0-9, starting with a letter (it prefixes interface names)")
    if not 1 <= count <= MAX_NODES:
        raise LabError(f"node count {count}: 1 to {MAX_NODES}")
    if not 0 <= index <= 255:
        raise LabError(f"lab index {index}: 0 to 255 (selects 198.18.<index>.0/24 for management)")
    nodes = []
    for i in range(1, count + 1):
        host = ipaddress.ip_address(f"198.18.{index}.{2 * i - 2}")
        links = tuple((iface, f"{ipaddress.ip_network(net)[i]}/24") for iface, net in zip(LINK_INTERFACES,
                                                                                          LINK_NETWORKS, strict=True))
        nodes.append(LabNode(f"node{i}", f"{name}-n{i}", f"{name}m{i}", f"{host}/31", str(host + 1), links))
    for node in nodes:  # the hard rule, checked rather than assumed
        for address in [node.host_address, node.mgmt_address] + [a for _, a in node.links]:
            assert ipaddress.ip_interface(address).ip in LAB_NETWORK, address
    return LabLayout(name, index, tuple(nodes))


def inventory_data(layout: LabLayout, mtu: int = 9000, network_backend: str = "ip") -> dict:
    """The inventory for a lab: root over the lab's client key, host keys from the lab's known_hosts."""
    venv_bin = Path(sys.prefix) / "bin"
    return {
        "user": "root", "port": 22, "ssh_key": str(layout.client_key), "known_hosts": str(layout.known_hosts),
        "mtu": mtu, "network_backend": network_backend,
        # two cores for the whole lab: minimal Ray nodes
        "ray": {"bin": str(venv_bin / "ray"), "python": str(venv_bin / "python"), "num_cpus": 1,
                "object_store_memory": 80 * 2**20, "include_dashboard": False},
        "nodes": [{"name": n.name, "host": n.mgmt_address,
                   "links": [{"interface": i, "address": a} for i, a in n.links]} for n in layout.nodes],
    }


def sshd_config(layout: LabLayout, node: LabNode) -> str:
    return "\n".join([
        f"# sshd of lab node {node.name} ({node.namespace}); listens on every address of its namespace",
        "Port 22",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        f"PidFile {layout.node_dir(node)}/sshd.pid",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "X11Forwarding no",
        "PrintMotd no",
        "MaxStartups 200",
        "MaxSessions 50",
        f"SetEnv PATH={SESSION_PATH}",
        "Subsystem sftp internal-sftp",
        "",
    ])


# ---- doing ---------------------------------------------------------------------------------------------------------

def _sh(*argv: str, check: bool = True, capture: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=capture, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {result.returncode}: {(result.stderr or '').strip()[:300]}")
    return result


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, mounts)")
    if shutil.which("ip") is None or _sh("ip", "netns", "list", check=False).returncode != 0:
        raise LabError("`ip netns` is not available (install iproute2)")
    if not Path(SSHD).exists():
        raise LabError(f"{SSHD} not found: run scripts/install_lab_deps.sh")


def up(count: int, name: str = "lab", index: int = 0, mtu: int = 9000, network_backend: str = "ip") -> LabLayout:
    """Create a lab of `count` nodes and write its inventory; on any failure, tear down what was made."""
    require_root()
    layout = lab_layout(name, count, index)
    if layout.state_dir.exists() or any(ns.startswith(f"{name}-") for ns in namespaces()):
        raise LabError(f"lab {name!r} already exists: run `spark_lab.py down --name {name}` first")
    try:
        _create(layout, mtu, network_backend)
    except BaseException:
        down(name)
        raise
    return layout


def _create(layout: LabLayout, mtu: int, network_backend: str) -> None:
    state = layout.state_dir
    state.mkdir(parents=True, mode=0o700)
    created = set(json.loads(MOUNT_POINT_RECORD.read_text())) if MOUNT_POINT_RECORD.exists() else set()
    for mount_point in MOUNT_POINTS:
        if not mount_point.exists():
            mount_point.mkdir(parents=True, mode=0o755)
            created.add(str(mount_point))
    MOUNT_POINT_RECORD.write_text(json.dumps(sorted(created)))
    (state / "lab.json").write_text(json.dumps({"name": layout.name, "index": layout.index,
                                                "nodes": [n.name for n in layout.nodes]}))
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"spark-lab-{layout.name}", "-f", str(layout.client_key))
    client_pub = (state / "client_ed25519.pub").read_text()

    switch = layout.switch_namespace
    _sh("ip", "netns", "add", switch)
    for j in range(len(LINK_INTERFACES)):
        _sh("ip", "-n", switch, "link", "add", f"br{j}", "type", "bridge")
    known_hosts = []
    for i, node in enumerate(layout.nodes, start=1):
        ns = node.namespace
        _sh("ip", "netns", "add", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "link", "add", node.host_veth, "type", "veth", "peer", "name", "mgmt0", "netns", ns)
        _sh("ip", "addr", "add", node.host_address, "dev", node.host_veth)
        _sh("ip", "link", "set", node.host_veth, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{node.mgmt_address}/31", "dev", "mgmt0")
        _sh("ip", "-n", ns, "link", "set", "mgmt0", "up")
        for j, (iface, _) in enumerate(node.links):
            port = f"p{i}l{j}"
            _sh("ip", "-n", switch, "link", "add", port, "mtu", str(SWITCH_MTU), "type", "veth",
                "peer", "name", iface, "netns", ns)
            _sh("ip", "-n", switch, "link", "set", port, "master", f"br{j}", "up")
        known_hosts.append(f"{node.mgmt_address} {_prepare_node_files(layout, node, client_pub)}")
    for j in range(len(LINK_INTERFACES)):
        _sh("ip", "-n", switch, "link", "set", f"br{j}", "mtu", str(SWITCH_MTU), "up")

    layout.known_hosts.write_text("\n".join(known_hosts) + "\n")
    for node in layout.nodes:
        start_sshd(layout, node)
    for node in layout.nodes:
        wait_for_port(node.mgmt_address, 22)
    layout.inventory_file.write_text(
        f"# Spark lab {layout.name!r}: {len(layout.nodes)} network-namespace nodes (scripts/spark_lab.py).\n"
        "# Addresses from 198.18.0.0/15 only.\n"
        + yaml.safe_dump(inventory_data(layout, mtu, network_backend), sort_keys=False))


def _prepare_node_files(layout: LabLayout, node: LabNode, client_pub: str) -> str:
    """Per-node /etc/ssh, /etc/netplan, /etc/nemotron-deploy, /root and /tmp; returns the host public key."""
    node_dir = layout.node_dir(node)
    root_home, tmp = node_dir / "root", node_dir / "tmp"
    (root_home / ".ssh").mkdir(parents=True, mode=0o700)
    root_home.chmod(0o700)
    authorized = root_home / ".ssh" / "authorized_keys"
    authorized.write_text(client_pub)
    authorized.chmod(0o600)
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    for private, entry in passthrough():  # mount points, made after their parents (a checkout under /tmp too)
        (node_dir / private.strip("/") / entry).mkdir(mode=0o755)

    etc = layout.etc_dir(node)
    if etc.exists():
        shutil.rmtree(etc)
    ssh_dir = etc / "ssh"
    ssh_dir.mkdir(parents=True, mode=0o755)
    for extra in ("ssh_config", "ssh_config.d", "moduli"):  # the ssh client inside the node still needs these
        source = Path("/etc/ssh") / extra
        if source.is_dir():
            shutil.copytree(source, ssh_dir / extra)
        elif source.exists():
            shutil.copy2(source, ssh_dir / extra)
    (ssh_dir / "sshd_config").write_text(sshd_config(layout, node))
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{node.name}", "-f",
        str(ssh_dir / "ssh_host_ed25519_key"))
    (etc / "netplan").mkdir(mode=0o755)
    (etc / "nemotron-deploy").mkdir(mode=0o755)
    return " ".join((ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])


def start_sshd(layout: LabLayout, node: LabNode) -> None:
    """Start the node's sshd in its namespace with its own hostname, /root and /tmp (sshd daemonizes)."""
    node_dir = layout.node_dir(node)
    keep = "".join(f"mount --bind {private}/{entry} {node_dir}{private}/{entry} && "
                   for private, entry in passthrough())
    mounts = " && ".join(f"mount --rbind {node_dir}{private} {private}" for private in PRIVATE_DIRS)
    script = f"hostname {node.name} && {keep}{mounts} && exec {SSHD} -E {node_dir}/sshd.log"
    _sh("ip", "netns", "exec", node.namespace, "unshare", "--uts", "--", "sh", "-c", script)


def passthrough() -> list[tuple[str, str]]:
    """(private dir, entry) pairs the nodes must still see through their own /root and /tmp: the Python that runs
    the lab and Ray when it is installed there (pyenv, a checkout or venv in /root or /tmp). Bound only inside
    the node's mount namespace."""
    keep = set()
    for path in (sys.prefix, sys.base_prefix, sys.executable):
        parts = Path(os.path.realpath(path)).parts
        for private in PRIVATE_DIRS:
            if "/" + "/".join(parts[1:2]) == private and len(parts) > 2:
                keep.add((private, parts[2]))
    return sorted(keep)


def sshd_pid(layout: LabLayout, node: LabNode) -> int | None:
    """The pid of the node's sshd, if it runs in the node's namespace (the pid file alone is not trusted)."""
    try:
        pid = int((layout.node_dir(node) / "sshd.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid in netns_pids(node.namespace) else None


def stop_sshd(layout: LabLayout, node: LabNode) -> None:
    """Stop one node's sshd (a node that is down for SSH), by its pid in that node's namespace."""
    pid = sshd_pid(layout, node)
    if pid is not None:
        _terminate([pid])


def crash_node(layout: LabLayout, node: LabNode) -> list[int]:
    """Kill everything running on a node at once (SIGKILL, by the pids in its namespace): its sshd, the SSH
    sessions in flight and what they run, as when the node loses power. Returns the pids signalled."""
    pids = netns_pids(node.namespace)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def wait_for_port(address: str, port: int, timeout_s: float = 10.0) -> None:
    error: OSError | None = None
    for _ in attempts(timeout_s, WAIT_STEP_S):
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError as exc:
            error = exc
    raise LabError(f"{address}:{port} not reachable after {timeout_s:g}s: {error}")


def namespaces() -> list[str]:
    out = _sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(namespace: str) -> list[int]:
    out = _sh("ip", "netns", "pids", namespace, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _alive(pid: int) -> bool:
    """A pid that still runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _terminate(pids: list[int], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, a bounded wait, SIGKILL for what is left, another bounded wait; returns the pids still alive."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 3.0)):
        for pid in pids:
            if _alive(pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        for _ in attempts(wait_s, WAIT_STEP_S):
            if not any(_alive(p) for p in pids):
                break
        pids = [p for p in pids if _alive(p)]
        if not pids:
            break
    return pids


def down(name: str = "lab") -> list[str]:
    """Stop every process in the lab's namespaces (by pid), delete the namespaces and the lab's files.

    Returns the namespaces removed. Safe to run twice and after a failed `up`.
    """
    if not _NAME.match(name):
        raise LabError(f"lab name {name!r}: 1-8 of a-z 0-9, starting with a letter")
    pattern = re.compile(rf"^{re.escape(name)}-(n\d+|sw)$")
    mine = [ns for ns in namespaces() if pattern.match(ns)]
    leftovers = []
    for ns in mine:
        leftovers += _terminate(netns_pids(ns))
    if leftovers:
        raise LabError(f"processes {leftovers} in lab {name!r} did not stop; namespaces kept for inspection")
    for ns in mine:
        _sh("ip", "netns", "del", ns, check=False)
        etc = Path("/etc/netns") / ns
        if etc.exists():
            shutil.rmtree(etc)
    # the kernel destroys a deleted namespace's veths asynchronously: wait (bounded) for the root-side ends to go
    host_veth = re.compile(rf"^\d+: {re.escape(name)}m\d+[@:]")
    for _ in attempts(10, WAIT_STEP_S):
        if not any(host_veth.match(line) for line in _sh("ip", "-o", "link", "show", check=False).stdout.splitlines()):
            break
    else:
        raise LabError(f"veths of lab {name!r} still present 10s after deleting its namespaces")
    state = LAB_ROOT / name
    if state.exists():
        shutil.rmtree(state)
    if LAB_ROOT.exists() and not [p for p in LAB_ROOT.iterdir() if p != MOUNT_POINT_RECORD]:
        # the last lab is gone: remove the mount points labs created, if still empty
        created = json.loads(MOUNT_POINT_RECORD.read_text()) if MOUNT_POINT_RECORD.exists() else []
        for path in created:
            try:
                Path(path).rmdir()
            except OSError:
                pass
        MOUNT_POINT_RECORD.unlink(missing_ok=True)
        LAB_ROOT.rmdir()
    if Path("/etc/netns").exists() and not any(Path("/etc/netns").iterdir()):
        Path("/etc/netns").rmdir()
    return mine


def load(name: str = "lab") -> LabLayout:
    """The layout of a running lab, from its state file."""
    state = LAB_ROOT / name / "lab.json"
    if not state.exists():
        raise LabError(f"lab {name!r} is not up ({state} missing)")
    data = json.loads(state.read_text())
    return lab_layout(data["name"], len(data["nodes"]), data["index"])


def node_ssh(layout: LabLayout, node: LabNode, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command on a lab node the way an operator would: ssh with the lab key and strict host keys."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(layout.client_key), "-o", f"UserKnownHostsFile={layout.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         f"root@{node.mgmt_address}", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def netns_run(node: LabNode, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command in a node's network namespace (network state only: no per-node mounts here)."""
    return subprocess.run(["ip", "netns", "exec", node.namespace, *argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
