"""Link addressing and MTU on the QSFP interfaces: facts, plans per network backend, and the checks after.

Pure: parsers from command output to facts, planners from (inventory, facts) to steps (empty when nothing needs to
change), and the verification rules (same MTU everywhere, a don't-fragment path at `mtu - 28` bytes to every peer).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

from spark_cluster.inventory import Inventory, Link, Node
from spark_cluster.step import Step, write_file_command

LINK_STATE_COMMAND = "ip -j addr show"
NETPLAN_MARKER = "### netplan-file"
ICMP_IPV4_OVERHEAD = 28  # 20 bytes IPv4 header + 8 bytes ICMP header: `ping -s mtu-28` fills the MTU exactly
NETPLAN_HEADER = ("# Managed by nemotron-deploy (fab spark.link): addresses and MTU of the QSFP direct links.\n"
                  "# Local edits are replaced on the next run.\n")


@dataclass(frozen=True)
class InterfaceState:
    """What `ip -j addr show` says about one interface."""

    name: str
    mtu: int
    admin_up: bool
    carrier: bool
    ipv4: tuple[str, ...]  # CIDR, e.g. 198.19.0.1/24


@dataclass(frozen=True)
class NmProfile:
    """The NetworkManager profile the toolkit owns for one link interface (`nemotron-<interface>`)."""

    name: str
    interface: str
    method: str
    addresses: tuple[str, ...]
    mtu: int | None  # None = "auto"


@dataclass(frozen=True)
class LinkFacts:
    interfaces: dict[str, InterfaceState]
    netplan_file: str | None = None  # content of the netplan file (netplan backend), None when absent
    nm_profiles: dict[str, NmProfile | None] = field(default_factory=dict)  # nmcli backend


@dataclass(frozen=True)
class LinkPlan:
    steps: tuple[Step, ...]
    problems: tuple[str, ...] = ()  # what no step can fix (an interface that does not exist)


# ---- facts -------------------------------------------------------------------------------------------------------

def parse_ip_addr(text: str) -> dict[str, InterfaceState]:
    """Interfaces from `ip -j addr show` (iproute2 JSON)."""
    interfaces = {}
    for entry in json.loads(text or "[]"):
        flags = entry.get("flags", [])
        ipv4 = tuple(f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", [])
                     if a.get("family") == "inet")
        interfaces[entry["ifname"]] = InterfaceState(
            name=entry["ifname"], mtu=int(entry["mtu"]), admin_up="UP" in flags, carrier="LOWER_UP" in flags,
            ipv4=ipv4)
    return interfaces


def nm_profile_name(interface: str) -> str:
    return f"nemotron-{interface}"


def nmcli_facts_command(node: Node) -> str:
    """Print each owned profile's settings, or `absent`, under a `### nmcli <interface>` marker."""
    fields = "connection.id,connection.interface-name,ipv4.method,ipv4.addresses,802-3-ethernet.mtu"
    parts = []
    for link in node.links:
        name = shlex.quote(nm_profile_name(link.interface))
        parts.append(f"echo '### nmcli {link.interface}'; nmcli -t -f {fields} connection show {name} 2>/dev/null "
                     f"|| echo absent")
    return "; ".join(parts)


def parse_nmcli_facts(text: str) -> dict[str, NmProfile | None]:
    """Profiles from nmcli_facts_command output (`nmcli -t` prints `key:value`, list items joined by commas)."""
    profiles: dict[str, NmProfile | None] = {}
    current: str | None = None
    values: dict[str, str] = {}

    def close() -> None:
        if current is None:
            return
        if not values:
            profiles[current] = None
            return
        mtu = values.get("802-3-ethernet.mtu", "auto")
        addresses = tuple(a.strip() for a in values.get("ipv4.addresses", "").split(",") if a.strip())
        profiles[current] = NmProfile(values.get("connection.id", ""), values.get("connection.interface-name", ""),
                                      values.get("ipv4.method", ""), addresses,
                                      None if mtu in ("auto", "", "0") else int(mtu))

    for line in text.splitlines():
        if line.startswith("### nmcli "):
            close()
            current, values = line.split(" ", 2)[2].strip(), {}
        elif line.strip() == "absent" or not line.strip():
            continue
        elif ":" in line:
            key, _, value = line.partition(":")
            values[key] = value.replace("\\:", ":")
    close()
    return profiles


# ---- plans -------------------------------------------------------------------------------------------------------

def render_netplan(node: Node, mtu: int) -> str:
    """The netplan file for a node's links (NVIDIA's 40-cx7.yaml, plus the MTU that both ends must share)."""
    ethernets = {link.interface: {"dhcp4": False, "dhcp6": False, "addresses": [link.address], "mtu": mtu}
                 for link in node.links}
    body = yaml.safe_dump({"network": {"version": 2, "ethernets": ethernets}}, sort_keys=False,
                          default_flow_style=False)
    return NETPLAN_HEADER + body


def netplan_validate_command(path: str, content: str) -> str:
    """`netplan generate` on a scratch root holding the node's netplan files plus the new one, so a file netplan
    rejects is never installed (it would break the next boot)."""
    return ("scratch=$(mktemp -d) && mkdir -p \"$scratch\"/etc/netplan && "
            "{ [ ! -d /etc/netplan ] || cp -a /etc/netplan/. \"$scratch\"/etc/netplan/; } && "
            + write_file_command(path, content, "600", root='"$scratch"')
            + " && netplan generate --root-dir \"$scratch\"; rc=$?; rm -rf \"$scratch\"; exit $rc")


def _same_address(a: str, b: str) -> bool:
    return ipaddress.ip_interface(a) == ipaddress.ip_interface(b)


def _runtime_steps(link: Link, mtu: int, state: InterfaceState) -> list[Step]:
    """`ip` commands that bring one interface's running state to the desired state."""
    iface = link.interface
    steps = []
    if state.mtu != mtu:
        steps.append(Step(f"set mtu {mtu} on {iface} (was {state.mtu})", f"ip link set dev {iface} mtu {mtu}"))
    if not state.admin_up:
        steps.append(Step(f"bring {iface} up", f"ip link set dev {iface} up"))
    if not any(_same_address(a, link.address) for a in state.ipv4):
        steps.append(Step(f"add {link.address} to {iface}", f"ip addr add {link.address} dev {iface}"))
    return steps


def _stray_steps(node: Node, link: Link, state: InterfaceState) -> list[Step]:
    """Remove other IPv4 addresses from a link interface (an old subnet confuses NCCL's interface choice), except
    the management address the toolkit itself is connected through."""
    return [Step(f"remove stray address {a} from {link.interface}", f"ip addr del {a} dev {link.interface}")
            for a in state.ipv4
            if not _same_address(a, link.address) and str(ipaddress.ip_interface(a).ip) != node.host]


def _nm_steps(link: Link, mtu: int, profile: NmProfile | None, runtime_gap: bool) -> list[Step]:
    name = shlex.quote(nm_profile_name(link.interface))
    settings = f"ipv4.method manual ipv4.addresses {link.address} ipv6.method disabled 802-3-ethernet.mtu {mtu}"
    up = Step(f"activate profile {nm_profile_name(link.interface)}", f"nmcli connection up {name}")
    if profile is None:
        return [Step(f"create NetworkManager profile {nm_profile_name(link.interface)} ({link.address}, mtu {mtu})",
                     f"nmcli connection add type ethernet con-name {name} ifname {link.interface} {settings} "
                     "connection.autoconnect yes connection.autoconnect-priority 100"), up]
    matches = (profile.method == "manual" and len(profile.addresses) == 1
               and _same_address(profile.addresses[0], link.address) and profile.mtu == mtu
               and profile.interface == link.interface)
    if not matches:
        return [Step(f"update NetworkManager profile {profile.name} ({link.address}, mtu {mtu})",
                     f"nmcli connection modify {name} connection.interface-name {link.interface} {settings}"), up]
    return [up] if runtime_gap else []


def plan_link(inventory: Inventory, node: Node, facts: LinkFacts) -> LinkPlan:
    """Steps that give a node's link interfaces their addresses and MTU, persistently unless the backend is `ip`.

    Empty when the node already matches: a second run changes nothing.
    """
    problems = []
    present = []
    for link in node.links:
        state = facts.interfaces.get(link.interface)
        if state is None:
            known = ", ".join(sorted(facts.interfaces)) or "none"
            problems.append(f"interface {link.interface} not found on {node.name} (present: {known})")
        else:
            present.append((link, state))
    steps = _backend_steps(inventory, node, facts, present)
    for link, state in present:
        steps += _stray_steps(node, link, state)
    return LinkPlan(tuple(steps), tuple(problems))


def _backend_steps(inventory: Inventory, node: Node, facts: LinkFacts,
                   present: list[tuple[Link, InterfaceState]]) -> list[Step]:
    """The steps of the inventory's network backend for the link interfaces present."""
    mtu, backend = inventory.mtu, inventory.network_backend
    steps: list[Step] = []
    if backend == "ip":
        for link, state in present:
            steps += _runtime_steps(link, mtu, state)
    elif backend == "netplan":
        desired = render_netplan(node, mtu)
        runtime_gap = any(_runtime_steps(link, mtu, state) for link, state in present)
        if facts.netplan_file != desired:
            what = "write" if facts.netplan_file is None else "rewrite"
            steps.append(Step("validate with netplan generate (scratch copy of /etc/netplan)",
                              netplan_validate_command(inventory.netplan_file, desired)))
            steps.append(Step(f"{what} {inventory.netplan_file} (mode 600)",
                              write_file_command(inventory.netplan_file, desired, "600")))
        if steps or runtime_gap:
            steps.append(Step("netplan apply", "netplan apply", timeout_s=120))
    elif backend == "nmcli":
        for link, state in present:
            steps += _nm_steps(link, mtu, facts.nm_profiles.get(link.interface), bool(_runtime_steps(link, mtu, state)))
    else:  # the inventory validates this; a new backend must be added here
        raise ValueError(f"unknown network backend {backend!r}")
    return steps


# ---- checks ------------------------------------------------------------------------------------------------------

def mtu_findings(inventory: Inventory, states: dict[str, dict[str, InterfaceState]]) -> dict[str, list[str]]:
    """Per node, what is wrong with the link MTUs: every node must report the inventory MTU on every link, since
    a mismatch makes NCCL hang (IBV_WC_LOC_LEN_ERR). Each finding names both nodes and both values."""
    findings: dict[str, list[str]] = {name: [] for name in states}
    for index in range(len(inventory.head.links)):
        reported = {}
        for node in inventory.nodes:
            state = states.get(node.name, {}).get(node.links[index].interface)
            if node.name in states and state is not None:
                reported[node.name] = (node.links[index].interface, state.mtu)
        good = [name for name, (_, mtu) in reported.items() if mtu == inventory.mtu]
        for name, (iface, mtu) in reported.items():
            if mtu == inventory.mtu:
                continue
            # the peer to name: one with the inventory MTU, else one that disagrees with this node (a mismatch
            # between two wrong ends hangs NCCL just the same)
            differing = good or [other for other, (_, value) in reported.items() if value != mtu]
            if differing:
                other, (other_iface, other_mtu) = differing[0], reported[differing[0]]
                findings[name].append(
                    f"MTU mismatch on link {index}: {name} {iface} has mtu {mtu}, {other} {other_iface} has mtu "
                    f"{other_mtu} (inventory mtu {inventory.mtu}); both ends must match")
            else:
                findings[name].append(f"mtu {mtu} on {iface} (link {index}), inventory mtu {inventory.mtu}")
    return findings


@dataclass(frozen=True)
class Probe:
    """One don't-fragment ping from a node, out of one link interface, to one peer's address on that link."""

    peer: str
    interface: str
    address: str
    size: int  # ICMP payload bytes: mtu - 28


def link_usable(state: InterfaceState | None) -> bool:
    """Whether frames can leave and arrive on an interface: administratively up and with carrier."""
    return state is not None and state.admin_up and state.carrier


def carrier_findings(node: Node, interfaces: dict[str, InterfaceState]) -> list[str]:
    """An interface that is up but has no carrier: the cable is pulled, or the port at the other end is down.
    Said on the node that has it; its peers are not blamed for the paths it cannot carry."""
    return [f"no carrier on {link.interface} (link {index}): cable pulled or the far end's port is down; check "
            f"the QSFP cable and the peer's port, then rerun"
            for index, link in enumerate(node.links)
            if (state := interfaces.get(link.interface)) is not None and state.admin_up and not state.carrier]


def mesh_probes(inventory: Inventory, node: Node, peers: Iterable[Node],
                usable: dict[str, set[int]] | None = None) -> tuple[Probe, ...]:
    """Every (peer, link) path from `node`; with `usable` (node -> link indexes that are up with carrier) only the
    paths whose two ends can carry frames (the others are reported on the node whose link is down)."""
    size = inventory.mtu - ICMP_IPV4_OVERHEAD

    def carries(name: str, index: int) -> bool:
        return usable is None or index in usable.get(name, set())

    return tuple(Probe(peer.name, link.interface, peer.links[i].ip, size)
                 for peer in peers if peer.name != node.name
                 for i, link in enumerate(node.links) if carries(node.name, i) and carries(peer.name, i))


def usable_links(inventory: Inventory, interfaces: dict[str, dict[str, InterfaceState]]) -> dict[str, set[int]]:
    """node -> indexes of its links that are up with carrier, for the nodes whose interfaces are known."""
    return {node.name: {i for i, link in enumerate(node.links)
                        if link_usable(interfaces[node.name].get(link.interface))}
            for node in inventory.nodes if node.name in interfaces}


def paths_without_carrier(node: Node, peers: Iterable[Node], usable: dict[str, set[int]]) -> list[str]:
    """The paths mesh_probes leaves out for want of carrier, as `peer link I (why)`."""
    left_out = []
    for peer in peers:
        for i in range(len(node.links)):
            if peer.name == node.name:
                continue
            if i not in usable.get(node.name, set()):
                left_out.append(f"{peer.name} link {i} (down or no carrier here)")
            elif i not in usable.get(peer.name, set()):
                left_out.append(f"{peer.name} link {i} (down or no carrier at {peer.name})")
    return left_out


def probe_script(probes: Iterable[Probe], deadline_s: int = 3) -> str:
    """One sh script running every probe at once (so 8 nodes cost about what 2 do), one result line each.

    `-c 1 -w DEADLINE` makes ping resend every 0.2 s until the first reply, so one lost packet costs 0.2 s, not a
    timeout; a path that never answers fails after the deadline. One process per ping (plus mktemp and rm): each
    ping writes to its own file, and shell builtins (no command substitution: that forks) pick the detail line:
    ping's own error ("local error: message too long, mtu=1500"), or else its summary line."""
    probes = list(probes)
    lines = ['d=$(mktemp -d) || exit 1',
             'detail() { first=; last=; while IFS= read -r line || [ -n "$line" ]; do '
             'case $line in *error*) [ -n "$first" ] || first=$line;; esac; [ -z "$line" ] || last=$line; '
             'done < "$1"; found=${first:-$last}; }']
    for index, p in enumerate(probes):
        lines.append(f"ping -n -Mdo -s {p.size} -c 1 -i 0.2 -w {deadline_s} -I {shlex.quote(p.interface)} "
                     f"{shlex.quote(p.address)} > \"$d/{index}\" 2>&1 < /dev/null & p{index}=$!")
    for index, p in enumerate(probes):
        lines.append(f"wait $p{index}; rc=$?; detail \"$d/{index}\"; printf 'PROBE\\t%s\\t%s\\t%s\\t%s\\n' "
                     f"{shlex.quote(p.interface)} {shlex.quote(p.address)} \"$rc\" \"$found\"")
    lines.append('rm -rf "$d"')
    return "\n".join(lines)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


def parse_probe_output(text: str) -> dict[tuple[str, str], ProbeResult]:
    """(interface, address) -> result, from the PROBE lines probe_script prints."""
    results = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 5 and parts[0] == "PROBE":
            _, iface, address, rc, detail = parts
            results[(iface, address)] = ProbeResult(rc == "0", detail.strip())
    return results


def probe_findings(probes: Iterable[Probe], results: dict[tuple[str, str], ProbeResult]) -> list[str]:
    findings = []
    for probe in probes:
        result = results.get((probe.interface, probe.address))
        if result is None or not result.ok:
            detail = result.detail if result else "no result"
            findings.append(f"no {probe.size}-byte don't-fragment path to {probe.peer} {probe.address} via "
                            f"{probe.interface}: {detail}")
    return findings
