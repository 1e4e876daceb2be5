"""RoCE on the QSFP links: which RDMA device backs each link interface (`ibdev2netdev`), its RoCE v2 GID index
(`show_gids`, looked up, never hard-coded), and `ib_write_bw` between node pairs per link half, judged against the
175 Gb/s per-port gate (docs/sources.md#dgx-spark).
Pure: parsers, commands and verdicts; the lab has no RDMA devices, so
these are tested on recorded outputs and run for real only on DGX Sparks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spark_cluster.inventory import Inventory, Node

PORT_GATE_GBPS = 175.0  # both halves of one QSFP port together (~190 healthy)
HALF_HEALTHY_GBPS = 85.0  # one half (~92-97 healthy)
DEGRADED_GBPS = (8.0, 25.0)  # the signature of a degraded CX-7 link
DEGRADED_REMEDY = ("degraded ConnectX-7 link: update the CX-7 firmware, then power-cycle both nodes (full power off, "
                   "not a reboot) and re-seat the QSFP cable")
PERFTEST_BASE_PORT = 12000
PERFTEST_TIMEOUT_S = 60
IBDEV2NETDEV_COMMAND = "ibdev2netdev"
SHOW_GIDS_COMMAND = "show_gids"

_IBDEV_LINE = re.compile(r"^(\S+) port (\d+) ==> (\S+) \((\w+)\)")


@dataclass(frozen=True)
class RdmaPort:
    device: str  # rocep1s0f0
    port: int
    netdev: str  # enp1s0f0np0
    up: bool


@dataclass(frozen=True)
class Gid:
    device: str
    port: int
    index: int
    gid: str
    ipv4: str | None
    version: str  # v1 or v2
    netdev: str


def parse_ibdev2netdev(text: str) -> list[RdmaPort]:
    ports = []
    for line in text.splitlines():
        match = _IBDEV_LINE.match(line.strip())
        if match:
            device, port, netdev, state = match.groups()
            ports.append(RdmaPort(device, int(port), netdev, state.lower() == "up"))
    return ports


def parse_show_gids(text: str) -> list[Gid]:
    """Rows of the `show_gids` table: DEV PORT INDEX GID [IPv4] VER DEV."""
    gids = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        ipv4 = parts[4] if len(parts) == 7 else None
        gids.append(Gid(parts[0], int(parts[1]), int(parts[2]), parts[3], ipv4, parts[-2], parts[-1]))
    return gids


def rdma_devices_for(node: Node, ports: list[RdmaPort]) -> tuple[dict[str, RdmaPort], list[str]]:
    """interface -> RDMA port for each link of the node, and the problems (no device, device down)."""
    by_netdev = {p.netdev: p for p in ports}
    found, problems = {}, []
    for link in node.links:
        port = by_netdev.get(link.interface)
        if port is None:
            problems.append(f"no RoCE device for {link.interface} in ibdev2netdev")
        else:
            found[link.interface] = port
            if not port.up:
                problems.append(f"{port.device} port {port.port} ({link.interface}) is Down")
    return found, problems


def gid_index(gids: list[Gid], device: str, port: int, ipv4: str) -> int | None:
    """The RoCE v2 GID index carrying the link's IPv4 address (it shifts when addresses change: look it up)."""
    for gid in gids:
        if gid.device == device and gid.port == port and gid.version == "v2" and gid.ipv4 == ipv4:
            return gid.index
    return None


@dataclass(frozen=True)
class BandwidthRun:
    """One ib_write_bw between two nodes over one link half."""

    server: str
    client: str
    link_index: int
    tcp_port: int


def bandwidth_pairs(inventory: Inventory) -> list[tuple[str, str]]:
    """(server, client) node pairs: each node serves its successor in a ring (one pair for two nodes)."""
    names = [n.name for n in inventory.nodes]
    if len(names) < 2:
        return []
    if len(names) == 2:
        return [(names[0], names[1])]
    return [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]


def bandwidth_runs(inventory: Inventory) -> list[BandwidthRun]:
    runs = []
    for pair_index, (server, client) in enumerate(bandwidth_pairs(inventory)):
        for link_index in range(len(inventory.head.links)):
            port = PERFTEST_BASE_PORT + pair_index * len(inventory.head.links) + link_index
            runs.append(BandwidthRun(server, client, link_index, port))
    return runs


RDMA_TOOLS_MISSING = "RDMA-TOOLS-MISSING"


def has_tool_command(tool: str) -> str:
    """Exit 0 when `tool` is on the node's PATH."""
    return f"command -v {tool}"


def tool_output_command(tool: str) -> str:
    """Run `tool` when it is installed; otherwise print RDMA_TOOLS_MISSING and exit 3 (a host without RDMA tools)."""
    return f"if command -v {tool} >/dev/null; then {tool}; else echo {RDMA_TOOLS_MISSING}; exit 3; fi"


def server_command(device: str, gid: int, tcp_port: int) -> str:
    """Start one ib_write_bw server in the background (it serves one test, then exits; bounded by timeout)."""
    return (f"nohup timeout {PERFTEST_TIMEOUT_S} ib_write_bw -d {device} -i 1 -x {gid} -p {tcp_port} -F "
            f"--report_gbits > /dev/null 2>&1 < /dev/null &")


def client_command(device: str, gid: int, tcp_port: int, server_ip: str) -> str:
    return (f"timeout {PERFTEST_TIMEOUT_S} ib_write_bw -d {device} -i 1 -x {gid} -p {tcp_port} -F --report_gbits "
            f"{server_ip}")


def clients_script(commands: list[tuple[str, str]]) -> str:
    """Run several clients at once (both halves of a port together), each result under a `### run KEY` marker.

    The temporary directory is made in the script's own shell, on a line of its own: in `tmp=$(mktemp -d) &&
    ( client ) &` the whole && list, assignment included, would go to the background and $tmp stay empty here."""
    lines = ['tmp=$(mktemp -d) || { echo "mktemp failed" >&2; exit 1; }']
    for key, command in commands:
        lines.append(f"( out=$({command} 2>&1); printf '### run %s rc=%s\\n%s\\n' {key} \"$?\" \"$out\" ) > "
                     f"\"$tmp/{key}\" &")
    lines += ["wait", 'cat "$tmp"/*', 'rm -rf "$tmp"']
    return "\n".join(lines)


def split_runs(text: str) -> dict[str, tuple[int, str]]:
    """key -> (exit status, output) from clients_script output."""
    runs: dict[str, tuple[int, str]] = {}
    key, rc, body = None, 0, []
    for line in text.splitlines():
        match = re.match(r"^### run (\S+) rc=(\d+)$", line)
        if match:
            if key is not None:
                runs[key] = (rc, "\n".join(body))
            key, rc, body = match.group(1), int(match.group(2)), []
        else:
            body.append(line)
    if key is not None:
        runs[key] = (rc, "\n".join(body))
    return runs


@dataclass(frozen=True)
class BandwidthResult:
    message_bytes: int
    peak_gbps: float
    average_gbps: float


def parse_ib_write_bw(text: str) -> BandwidthResult | None:
    """The result row under `#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]`."""
    header_seen = False
    for line in text.splitlines():
        if "#bytes" in line and "BW average" in line:
            if "Gb/sec" not in line:
                raise ValueError("ib_write_bw reported in MB/sec: run it with --report_gbits")
            header_seen = True
            continue
        parts = line.split()
        if header_seen and len(parts) >= 4 and parts[0].isdigit():
            return BandwidthResult(int(parts[0]), float(parts[2]), float(parts[3]))
    return None


def judge_port(label: str, halves: dict[str, BandwidthResult | None]) -> list[str]:
    """Findings for one port (its halves measured together); empty when the port passes the gate."""
    findings = []
    for half, result in halves.items():
        if result is None:
            findings.append(f"{label} {half}: no ib_write_bw result")
        elif DEGRADED_GBPS[0] <= result.average_gbps <= DEGRADED_GBPS[1]:
            findings.append(f"{label} {half}: {result.average_gbps:.1f} Gb/s: {DEGRADED_REMEDY}")
        elif result.average_gbps < HALF_HEALTHY_GBPS:
            findings.append(f"{label} {half}: {result.average_gbps:.1f} Gb/s, a healthy half gives ~92-97")
    total = sum(r.average_gbps for r in halves.values() if r is not None)
    if total < PORT_GATE_GBPS:
        findings.append(f"{label}: {total:.1f} Gb/s over {len(halves)} half(s), below the "
                        f"{PORT_GATE_GBPS:g} Gb/s gate per port (~190 healthy)")
    return findings
