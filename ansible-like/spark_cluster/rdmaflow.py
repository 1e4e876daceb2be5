"""spark.roce and spark.nccl as declarations for converge(): their gather, plan and verify (benchmark) units."""

from __future__ import annotations

import time
from typing import Any

from spark_cluster import clusterenv, nccl, remote, roce
from spark_cluster.converge import Done, Facts, Plans, Run, Stage, Task, converge
from spark_cluster.inventory import Inventory, Node
from spark_cluster.remote import NodeError, last_line
from spark_cluster.report import TaskReport
from spark_cluster.units import NO_RDMA_TOOLS, env_gatherer, env_plans

# ---- spark.roce ----------------------------------------------------------------------------------------------------


class RdmaToolsMissing(NodeError):
    """The host has no RDMA tools: the RoCE checks do not apply to it (a failure only when asked for explicitly)."""


def gather_roce(cxn: Any, inventory: Inventory, node: Node) -> tuple[dict[str, roce.RdmaPort], dict[str, int]]:
    """RDMA device and RoCE v2 GID index behind each link interface; NodeError naming what is missing."""
    for tool in (roce.IBDEV2NETDEV_COMMAND, roce.SHOW_GIDS_COMMAND):
        if remote.run(cxn, roce.has_tool_command(tool), check=False).exited != 0:
            raise RdmaToolsMissing(f"{tool} not found: RoCE checks need a DGX Spark (or another host with ConnectX "
                                   "RDMA)")
    found, problems = roce.rdma_devices_for(
        node, roce.parse_ibdev2netdev(remote.run(cxn, roce.IBDEV2NETDEV_COMMAND).stdout))
    gids = roce.parse_show_gids(remote.run(cxn, roce.SHOW_GIDS_COMMAND).stdout)
    indexes = {}
    for link in node.links:
        port = found.get(link.interface)
        if port is None:
            continue
        index = roce.gid_index(gids, port.device, port.port, link.ip)
        if index is None:
            problems.append(f"no RoCE v2 GID for {link.ip} on {port.device} (addresses not applied? run spark.link)")
        else:
            indexes[link.interface] = index
    if problems:
        raise NodeError("; ".join(problems))
    return found, indexes


def roce_gatherer(applicable_only: bool) -> Any:
    """A stage's gather: RoCE devices and GID indexes per node; with applicable_only a host without the RDMA tools
    is marked not applicable (and left out) instead of failing."""
    def gather_ports(run: Run) -> Facts:
        def gather(cxn: Any, node: Node) -> Any:
            try:
                return gather_roce(cxn, run.inventory, node)
            except RdmaToolsMissing:
                if not applicable_only:
                    raise
                return None  # (an exception returned would count as the node's failure)

        facts = run.collect(gather)
        for name in [n for n, value in facts.items() if value is None]:
            run.reports[name].not_applicable = NO_RDMA_TOOLS
            del facts[name]
        return facts
    return gather_ports


def note_ports(run: Run, facts: Facts) -> Plans:
    """Nothing to change: each node's devices and GID indexes go into its report."""
    for name, (ports, indexes) in facts.items():
        run.note(name, "; ".join(f"{ports[link.interface].device} -> {link.interface} up, GID index "
                                 f"{indexes[link.interface]}" for link in run.inventory.node(name).links))
    return {}


def bench_roce(run: Run, facts: Facts) -> None:
    """ib_write_bw per node pair and link half (servers first), judged per port against the 175 Gb/s gate."""
    inventory = run.inventory
    runs = roce.bandwidth_runs(inventory)

    def device(name: str, link_index: int) -> tuple[str, int]:
        iface = inventory.node(name).links[link_index].interface
        return facts[name][0][iface].device, facts[name][1][iface]

    servers = {name: [roce.server_command(*device(name, r.link_index), r.tcp_port) for r in runs
                      if r.server == name] for name in facts}
    run.collect(lambda cxn, node: remote.run(cxn, " ".join(servers[node.name]) or "true"),
                label="ib_write_bw server: ")
    time.sleep(1.0)  # let the servers listen

    def clients(cxn: Any, node: Node) -> dict[str, tuple[int, str]]:
        mine = [r for r in runs if r.client == node.name]
        if not mine:
            return {}
        commands = [(f"{r.server}.{r.link_index}",
                     roce.client_command(*device(node.name, r.link_index), r.tcp_port,
                                         inventory.node(r.server).links[r.link_index].ip)) for r in mine]
        out = remote.run(cxn, roce.clients_script(commands), timeout_s=roce.PERFTEST_TIMEOUT_S + 30, check=False)
        return roce.split_runs(out.stdout)

    for name, outputs in run.collect(clients, label="ib_write_bw: ").items():
        for server in sorted({r.server for r in runs if r.client == name}):
            judge_pair(run, name, server, [r for r in runs if r.client == name and r.server == server], outputs)


def judge_pair(run: Run, client: str, server: str, pair_runs: list, outputs: dict[str, tuple[int, str]]) -> None:
    """One client -> server port: both link halves judged together."""
    halves = {}
    for r in pair_runs:
        iface = run.inventory.node(client).links[r.link_index].interface
        rc, text = outputs.get(f"{server}.{r.link_index}", (1, ""))
        halves[iface] = roce.parse_ib_write_bw(text) if rc == 0 else None
    findings = roce.judge_port(f"{client} -> {server}", halves)
    run.fail_all({client: findings})
    if not findings:
        total = sum(h.average_gbps for h in halves.values() if h)
        run.note(client, f"{client} -> {server}: {total:.1f} Gb/s over {len(halves)} halves")


def roce_workflow(inventory: Inventory, skip_bench: bool = False, parallel: bool = True,
                  applicable_only: bool = False) -> TaskReport:
    """spark.roce: RoCE devices and GID indexes on every node, then ib_write_bw per node pair and link half,
    judged per port against the 175 Gb/s gate (every node needed; not with skip_bench)."""
    def bench(run: Run, facts: Facts) -> None:
        if not skip_bench and len(facts) == len(inventory.nodes):
            bench_roce(run, facts)

    ports = Stage(gather=roce_gatherer(applicable_only), plan=note_ports)
    return converge(Task("spark.roce", (ports,), verify=bench), inventory, parallel=parallel)


# ---- spark.nccl ----------------------------------------------------------------------------------------------------

def mpirun_command(inventory: Inventory) -> str:
    head = inventory.head
    env = clusterenv.parse_env(clusterenv.render_env(inventory, clusterenv.cluster_env(inventory, head, ("x",))))
    return nccl.mpirun_command(inventory, [k for k in clusterenv.FORWARDED if k in env])


def plan_all_gather(run: Run, facts: Facts) -> None:
    """A dry run (verify-only or not) ends with the benchmark it would run."""
    run.reports[run.head].changes.append("run all_gather_perf through mpirun")
    run.reports[run.head].commands.append(mpirun_command(run.inventory))
    raise Done


def all_gather(run: Run) -> None:
    """nccl-tests all_gather_perf through mpirun from the head, its bus bandwidth judged."""
    head, command = run.head, mpirun_command(run.inventory)
    result = run.collect(lambda cxn, node: remote.run(cxn, command, timeout_s=nccl.TIMEOUT_S, check=False),
                         [head], label="all_gather_perf: ")
    if head not in result:
        return
    out = result[head]
    parsed = nccl.parse_all_gather(out.stdout)
    findings = nccl.judge_all_gather(parsed)
    if out.exited != 0:
        findings.insert(0, f"mpirun exit {out.exited}: {last_line(out.stderr or out.stdout)}")
    run.fail_all({head: findings})
    if not findings:
        run.note(head, f"all_gather_perf busbw {parsed.average_busbw} GB/s via NET/{parsed.transport or '?'}")


def nccl_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False, skip_bench: bool = False,
                  parallel: bool = True, applicable_only: bool = False) -> TaskReport:
    """spark.nccl: the NCCL/UCX/Gloo env file on every node (both RoCE halves in NCCL_IB_HCA), then nccl-tests
    all_gather_perf through mpirun from the head with safe sizes, its bus bandwidth judged (every node ok and
    applicable; not with skip_bench)."""
    def plan_env(run: Run, facts: Facts) -> Plans:
        return env_plans(run, facts, require_rdma=True, applicable_only=applicable_only)

    def bench(run: Run, facts: Facts) -> None:
        if not skip_bench and all(r.ok and not r.not_applicable for r in run.reports.values()):
            all_gather(run)

    env = Stage(gather=lambda run: run.collect(env_gatherer(inventory)), plan=plan_env)
    task = Task("spark.nccl", (env,), verify=bench, planned=plan_all_gather)
    return converge(task, inventory, dry_run, verify_only, parallel)
