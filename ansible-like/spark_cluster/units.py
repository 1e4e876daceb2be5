"""Units more than one workflow uses: the recorded sessions (Ray, vLLM) and how they stop, and the cluster env file
(NCCL/UCX/Gloo settings, both RoCE halves) that spark.ray and spark.nccl converge."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from spark_cluster import clusterenv, remote, roce, session
from spark_cluster.bounded import attempts
from spark_cluster.converge import Facts, Plans, Run
from spark_cluster.inventory import Inventory, Node
from spark_cluster.step import Step, parse_read_file, read_file_command

# ---- recorded sessions ---------------------------------------------------------------------------------------------

STOP_POLL_S = 0.5
KILL_WAIT_S = 5.0


def gather_sessions(inventory: Inventory, names: tuple[str, ...]) -> Callable[[Any, Node], dict]:
    def gather(cxn: Any, node: Node) -> dict[str, session.SessionFacts]:
        return session.parse_facts(remote.run(cxn, session.facts_command(inventory.state_dir, names)).stdout)
    return gather


def signal_plans(facts: Facts, sig: str) -> Plans:
    return {n: tuple(s for f in facts[n].values() for s in session.plan_signal(f, sig)) for n in facts}


def wait_stopped(run: Run, gather: Callable[[Any, Node], dict], facts: Facts, wait_s: float) -> bool:
    """Gather again (bounded) until no session in `facts` runs; whether one still does. Updates `facts`."""
    running = list(facts)
    for attempt in attempts(wait_s, STOP_POLL_S):
        if attempt:
            facts.update(run.collect(gather, running))
        running = [n for n, f in facts.items() if any(s.running for s in f.values())]
        if not running:
            break
    return bool(running)


def stop_sessions(run: Run, nodes: Iterable[str], names: tuple[str, ...], grace_s: float) -> None:
    """Stop the recorded sessions `names` on `nodes`: SIGTERM to their pids, a bounded wait, SIGKILL for what is
    left, another bounded wait; then forget the records. A node where something survives is marked failed."""
    inventory = run.inventory
    gather = gather_sessions(inventory, names)
    facts = run.collect(gather, [n for n in nodes if run.ok(n)])
    run.apply(signal_plans(facts, "TERM"))
    if run.dry_run:
        return
    if wait_stopped(run, gather, facts, grace_s):
        run.apply({n: p for n, p in signal_plans(facts, "KILL").items() if p})
        wait_stopped(run, gather, facts, KILL_WAIT_S)
    for name, node_facts in facts.items():
        alive = [p for f in node_facts.values() for p in f.live_pids]
        if alive:
            run.fail(name, f"still running after SIGKILL: pids {alive}")
    run.apply({n: tuple(s for f in facts[n].values() for s in session.plan_forget(f, inventory.state_dir))
               for n in facts})


# ---- the cluster env file ------------------------------------------------------------------------------------------

RDMA_TOOLS_MISSING = roce.RDMA_TOOLS_MISSING
NO_RDMA_TOOLS = ("no RDMA tools on this host (ibdev2netdev not installed): RoCE and NCCL-over-RoCE checks apply "
                 "to DGX Sparks (ConnectX-7); not counted as a failure here")


def gather_cluster_env(cxn: Any, inventory: Inventory, node: Node) -> tuple[str | None, list[roce.RdmaPort] | None,
                                                                            bool]:
    """The env file as it is, the node's RDMA ports (None where ibdev2netdev is missing or fails: the lab), and
    whether the tool is missing altogether (a host without RDMA tools, not a broken one)."""
    out = remote.run(cxn, read_file_command(inventory.env_file, clusterenv.ENV_MARKER)).stdout
    current = parse_read_file(out, clusterenv.ENV_MARKER)
    tool = roce.IBDEV2NETDEV_COMMAND
    probe = remote.run(cxn, roce.tool_output_command(tool), check=False)
    missing = probe.exited == 3 and RDMA_TOOLS_MISSING in probe.stdout
    ports = roce.parse_ibdev2netdev(probe.stdout) if probe.exited == 0 else None
    return current, ports, missing


def env_gatherer(inventory: Inventory) -> Callable[[Any, Node], tuple]:
    def gather_env(cxn: Any, node: Node) -> tuple:
        return gather_cluster_env(cxn, inventory, node)
    return gather_env


def env_devices(run: Run, name: str, ports: list[roce.RdmaPort] | None, missing: bool, require_rdma: bool,
                applicable_only: bool) -> tuple[bool, tuple[str, ...] | None]:
    """(whether the node gets an env file, the RoCE devices for NCCL_IB_HCA); a node that needs RoCE devices and
    has none fails (or, with applicable_only, a node without the RDMA tools at all is marked not applicable)."""
    node = run.inventory.node(name)
    if ports is not None:
        found, problems = roce.rdma_devices_for(node, ports)
        if problems and require_rdma:
            run.fail_all({name: problems})
            return False, None
        return True, tuple(found[link.interface].device for link in node.links if link.interface in found) or None
    if require_rdma and missing and applicable_only:
        run.reports[name].not_applicable = NO_RDMA_TOOLS
        return False, None
    if require_rdma:
        run.fail(name, "ibdev2netdev not found or failed: no RoCE devices (real DGX Spark hardware only)")
        return False, None
    run.note(name, "no RoCE devices (ibdev2netdev): NCCL_IB_HCA not set, NCCL uses sockets")
    return True, None


def env_plans(run: Run, env_facts: Facts, require_rdma: bool, applicable_only: bool = False) -> Plans:
    """Each node's env-file step (see env_devices for the nodes without RoCE devices)."""
    plans: dict[str, tuple[Step, ...]] = {}
    inventory = run.inventory
    for name, (current, ports, missing) in env_facts.items():
        wanted, devices = env_devices(run, name, ports, missing, require_rdma, applicable_only)
        if wanted:
            env = clusterenv.cluster_env(inventory, inventory.node(name), devices)
            plans[name] = clusterenv.plan_env(inventory, env, current)
    return plans
