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

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from spark_cluster.bounded import attempts
from spark_cluster.lablayout import (  # noqa: F401 - the layout is named here too (lab.LabLayout, lab.TOOLS_DIR, ...)
    _NAME,
    LAB_NETWORK,
    LAB_ROOT,
    LINK_INTERFACES,
    LINK_NETWORKS,
    MAX_NODES,
    MOUNT_POINT_RECORD,
    MOUNT_POINTS,
    PRIVATE_DIRS,
    SESSION_PATH,
    SSHD,
    SWITCH_MTU,
    TOOLS_DIR,
    WAIT_STEP_S,
    LabError,
    LabLayout,
    LabNode,
    inventory_data,
    lab_layout,
    sshd_config,
)

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
    _wait_veths_gone(name)
    state = LAB_ROOT / name
    if state.exists():
        shutil.rmtree(state)
    _remove_shared_leftovers()
    return mine


def _wait_veths_gone(name: str) -> None:
    """The kernel destroys a deleted namespace's veths asynchronously: wait (bounded) for the root-side ends to go."""
    host_veth = re.compile(rf"^\d+: {re.escape(name)}m\d+[@:]")
    for _ in attempts(10, WAIT_STEP_S):
        if not any(host_veth.match(line) for line in _sh("ip", "-o", "link", "show", check=False).stdout.splitlines()):
            return
    raise LabError(f"veths of lab {name!r} still present 10s after deleting its namespaces")


def _remove_shared_leftovers() -> None:
    """Once the last lab is gone: the mount points labs created (if still empty), the lab root, /etc/netns."""
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
