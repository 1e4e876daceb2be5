"""The Spark lab's layout, pure: its names and addresses (only 198.18.0.0/15), the paths it uses, the inventory and
the sshd config of each node. lab.py builds and tears down labs from it (and names all of this too)."""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass
from pathlib import Path

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

