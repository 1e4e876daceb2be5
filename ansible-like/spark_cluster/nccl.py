"""nccl-tests `all_gather_perf` across the nodes through mpirun, with sizes that cannot freeze a node, and the verdict
on its bus bandwidth (docs/sources.md#dgx-spark).
Pure: the command, the parser and the judgement; GPUs only on real Sparks.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from spark_cluster.inventory import Inventory
from spark_cluster.step import shell_path

# 512M..4G doubling: larger sizes (16G) can freeze a Spark, whose GPU shares the system's memory
MIN_BYTES, MAX_BYTES, FACTOR = "512M", "4G", 2
HEALTHY_BUSBW_GBS = 18.0  # a healthy 2-node run averages ~20-24 GB/s
SOCKET_FALLBACK_GBS = 5.0  # ~3 GB/s: one RoCE half only, or NCCL on TCP sockets
TIMEOUT_S = 900  # the SSH side's wait; mpirun is bounded on the head a little sooner (its answer comes back)
REMOTE_TIMEOUT_S = TIMEOUT_S - 30


def mpirun_command(inventory: Inventory, forwarded: list[str]) -> str:
    """The mpirun line the head runs: one rank per node on its link address, the env file loaded first and the
    cluster variables forwarded to every rank."""
    hosts = ",".join(f"{node.links[0].ip}:1" for node in inventory.nodes)
    env = shlex.quote(inventory.env_file)
    parts = ["timeout", "-k", "10", str(REMOTE_TIMEOUT_S), shlex.quote(inventory.nccl.mpirun),
             "-np", str(len(inventory.nodes)), "-H", hosts]
    if inventory.user == "root":
        parts.append("--allow-run-as-root")
    if inventory.port != 22:
        parts += ["--mca", "plm_rsh_args", shlex.quote(f"-p {inventory.port}")]
    parts += ["-x", "NCCL_DEBUG=INFO"]
    for name in forwarded:
        parts += ["-x", name]
    test = shell_path(inventory.nccl.tests_dir.rstrip("/") + "/all_gather_perf")
    parts += [test, "-b", MIN_BYTES, "-e", MAX_BYTES, "-f", str(FACTOR), "-g", "1"]
    return f"set -a && . {env} && set +a && " + " ".join(parts)


@dataclass(frozen=True)
class AllGatherRow:
    size_bytes: int
    busbw_out_of_place: float
    busbw_in_place: float
    wrong: int


@dataclass(frozen=True)
class AllGatherResult:
    rows: tuple[AllGatherRow, ...]
    average_busbw: float | None
    transport: str | None  # "IB" (RoCE), "Socket" (TCP fallback) or None when NCCL_DEBUG lines are absent


_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+\S+\s+\S+\s+-?\d+\s+(.+)$")


def parse_all_gather(text: str) -> AllGatherResult:
    rows = []
    average = None
    transport = None
    for line in text.splitlines():
        if "via NET/Socket" in line:
            transport = "Socket"
        elif "via NET/IB" in line and transport is None:
            transport = "IB"
        if line.startswith("# Avg bus bandwidth"):
            average = float(line.split(":")[1].split()[0])
            continue
        match = _ROW.match(line)
        if match and not line.lstrip().startswith("#"):
            numbers = match.group(3).split()
            # out-of-place: time algbw busbw #wrong, then in-place: time algbw busbw #wrong
            if len(numbers) >= 8:
                wrong = sum(int(n) for n in (numbers[3], numbers[7]) if n.isdigit())
                rows.append(AllGatherRow(int(match.group(1)), float(numbers[2]), float(numbers[6]), wrong))
    return AllGatherResult(tuple(rows), average, transport)


def judge_all_gather(result: AllGatherResult) -> list[str]:
    """Findings; empty when the run was correct and fast enough."""
    if not result.rows:
        return ["all_gather_perf printed no result rows"]
    findings = []
    wrong = sum(r.wrong for r in result.rows)
    if wrong:
        findings.append(f"all_gather_perf found {wrong} wrong value(s): data corruption on the link")
    if result.transport == "Socket":
        findings.append("NCCL used NET/Socket (TCP fallback), not NET/IB: check NCCL_IB_HCA and the RoCE devices")
    average = result.average_busbw
    if average is None:
        average = sum(r.busbw_out_of_place for r in result.rows) / len(result.rows)
    if average < SOCKET_FALLBACK_GBS:
        findings.append(f"bus bandwidth {average:.1f} GB/s: one RoCE half or sockets only; NCCL_IB_HCA must list "
                        f"both halves")
    elif average < HEALTHY_BUSBW_GBS:
        findings.append(f"bus bandwidth {average:.1f} GB/s, below {HEALTHY_BUSBW_GBS:g} (healthy ~20-24)")
    return findings
