"""What each `fab spark.<task>` does: gather facts -> plan -> act (unless dry run) -> gather again and verify,
on every node at once, into one TaskReport. The Fabric @task wrappers in tasks.py only parse flags and print.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from spark_cluster import clusterenv, nccl, raycluster, roce, session, sshtrust, vllm_serve
from spark_cluster import link as linkops
from spark_cluster.bounded import attempts
from spark_cluster.inventory import Inventory, Node
from spark_cluster.remote import Cluster, NodeError, connect, describe_exception, last_line, run, run_steps
from spark_cluster.report import NodeReport, TaskReport
from spark_cluster.step import Step, as_user, parse_read_file, read_file_command


def progress(message: str) -> None:
    """A progress line for a person at a terminal (stderr, so --json output stays clean; silent in pipelines)."""
    if sys.stderr.isatty():
        print(f"... {message}", file=sys.stderr, flush=True)


def new_reports(inventory: Inventory, dry_run: bool = False) -> dict[str, NodeReport]:
    return {n.name: NodeReport(n.name, n.host, dry_run=dry_run) for n in inventory.nodes}


def collect(cluster: Cluster, reports: dict[str, NodeReport], fn: Callable[[Any, Node], Any],
            names: Iterable[str] | None = None, label: str = "") -> dict[str, Any]:
    """Fan `fn` out over the named nodes (default: those not failed yet); a node whose call raised is marked
    failed and left out of the result."""
    wanted = set(names) if names is not None else {n for n in reports if reports[n].ok}
    names = [n for n in reports if n in wanted]  # inventory order
    what = label.rstrip(": ") or getattr(fn, "__name__", "")
    progress(f"{what if what and not what.startswith('<') else 'facts'} on {', '.join(names)}")
    results = cluster.each(fn, names)
    values = {}
    for name, value in results.items():
        if isinstance(value, BaseException):
            reports[name].fail(f"{label}{describe_exception(value, cluster.connections[name])}")
        else:
            values[name] = value
    return values


def apply_steps(cluster: Cluster, reports: dict[str, NodeReport], plans: dict[str, tuple[Step, ...]],
                dry_run: bool) -> None:
    """Run each node's steps (or, in a dry run, only list them), all nodes at once."""
    user = cluster.inventory.user
    for name, steps in plans.items():
        if dry_run:
            reports[name].changes += [s.summary for s in steps]
            reports[name].commands += [as_user(s.command, user, s.privileged) for s in steps]
    if dry_run:
        return
    busy = [name for name, steps in plans.items() if steps and reports[name].ok]

    def act(cxn: Any, node: Node) -> list[str]:
        return run_steps(cxn, user, plans[node.name])

    done = collect(cluster, reports, act, busy)
    for name, summaries in done.items():
        reports[name].changes += summaries


def connect_or_fail(inventory: Inventory, task: str, parallel: bool = True,
                    dry_run: bool = False) -> tuple[Cluster | None, TaskReport, dict[str, NodeReport]]:
    """The cluster connections, the task's report and its rows by node name. Without connections (no known_hosts)
    every row has already failed for that one reason."""
    rows = new_reports(inventory, dry_run)
    report = TaskReport(task, list(rows.values()))
    try:
        return connect(inventory, parallel), report, rows
    except NodeError as exc:
        for row in rows.values():
            row.fail(str(exc))
        return None, report, rows


# ---- spark.link ----------------------------------------------------------------------------------------------------

CARRIER_WAIT_S = 10.0
CARRIER_POLL_S = 0.5


def gather_link_facts(cxn: Any, inventory: Inventory, node: Node) -> linkops.LinkFacts:
    interfaces = linkops.parse_ip_addr(run(cxn, linkops.LINK_STATE_COMMAND).stdout)
    netplan_file, profiles = None, {}
    if inventory.network_backend == "netplan":
        command = read_file_command(inventory.netplan_file, linkops.NETPLAN_MARKER)
        out = run(cxn, as_user(command, inventory.user, True)).stdout
        netplan_file = parse_read_file(out, linkops.NETPLAN_MARKER)
    elif inventory.network_backend == "nmcli":
        profiles = linkops.parse_nmcli_facts(run(cxn, linkops.nmcli_facts_command(node)).stdout)
    return linkops.LinkFacts(interfaces, netplan_file, profiles)


def link_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False,
                  parallel: bool = True) -> TaskReport:
    """spark.link: addresses and MTU on the link interfaces, then the MTU and jumbo-path checks."""
    cluster, report, reports = connect_or_fail(inventory, "spark.link", parallel, dry_run)
    if cluster is None:
        return report
    try:
        def gather(cxn: Any, node: Node) -> linkops.LinkFacts:
            return gather_link_facts(cxn, inventory, node)

        facts = collect(cluster, reports, gather)
        plans = {name: linkops.plan_link(inventory, inventory.node(name), f) for name, f in facts.items()}
        for name, plan in plans.items():
            for problem in plan.problems:
                reports[name].fail(problem)
        if verify_only:
            for name, plan in plans.items():
                for step in plan.steps:
                    reports[name].fail(f"differs from the inventory: would {step.summary}")
        else:
            apply_steps(cluster, reports, {n: p.steps for n, p in plans.items() if reports[n].ok}, dry_run)
            if dry_run:
                return report
            if any(plan.steps for plan in plans.values()):
                changed = [n for n, p in plans.items() if p.steps]
                facts = collect(cluster, reports, gather, [n for n in facts if reports[n].ok])
                # a port just brought up takes a moment to get carrier (link training on a real ConnectX-7)
                waiting: list[str] = []
                for attempt in attempts(CARRIER_WAIT_S, CARRIER_POLL_S):
                    if attempt:
                        facts.update(collect(cluster, reports, gather, waiting))
                    waiting = [n for n in changed if n in facts and reports[n].ok
                               and linkops.carrier_findings(inventory.node(n), facts[n].interfaces)]
                    if not waiting:
                        break
                for name, f in facts.items():
                    for step in linkops.plan_link(inventory, inventory.node(name), f).steps:
                        reports[name].fail(f"still differs after the change: would {step.summary}")
        verify_links(cluster, inventory, reports, facts)
    finally:
        cluster.close()
    return report


def verify_links(cluster: Cluster, inventory: Inventory, reports: dict[str, NodeReport],
                 facts: dict[str, linkops.LinkFacts]) -> None:
    """Every node reports the inventory MTU on every link, has carrier on every link that is up, and reaches every
    peer's link addresses with a don't-fragment ping of mtu - 28 bytes. Peers that failed earlier are left out
    (they are reported already), and so are paths over a link without carrier (reported on the node that has it)."""
    states = {name: f.interfaces for name, f in facts.items()}
    for name, findings in linkops.mtu_findings(inventory, states).items():
        for finding in findings:
            reports[name].fail(finding)
    for name, interfaces in states.items():
        for finding in linkops.carrier_findings(inventory.node(name), interfaces):
            reports[name].fail(finding)
    reachable = [n for n in inventory.nodes if n.name in facts]
    skipped = [n.name for n in inventory.nodes if n.name not in facts]
    usable = linkops.usable_links(inventory, states)
    probes = {node.name: linkops.mesh_probes(inventory, node, reachable, usable) for node in reachable}

    def probe(cxn: Any, node: Node) -> list[str]:
        if not probes[node.name]:
            return []
        out = run(cxn, linkops.probe_script(probes[node.name]), timeout_s=60, check=False).stdout
        return linkops.probe_findings(probes[node.name], linkops.parse_probe_output(out))

    results = collect(cluster, reports, probe, [n.name for n in reachable], label="jumbo ping: ")
    notes = {}
    for node in reachable:
        mine = probes[node.name]
        peers, links = {p.peer for p in mine}, {p.interface for p in mine}
        passed = (f"mtu {inventory.mtu}; {inventory.mtu - linkops.ICMP_IPV4_OVERHEAD}-byte DF ping to "
                  f"{len(peers)} peer(s) x {len(links)} link(s) ok" if mine else "")
        left_out = [f"{name} (failed)" for name in skipped]
        left_out += linkops.paths_without_carrier(node, reachable, usable)
        if left_out:
            passed = "; ".join(filter(None, [passed, "not probed: " + ", ".join(left_out)]))
        notes[node.name] = passed
    record_peer_checks(reports, results, notes)


def record_peer_checks(reports: dict[str, NodeReport], results: dict[str, list[str]], notes: dict[str, str]) -> None:
    """Record a check every node ran against its peers: its findings fail the node; otherwise the node gets its
    note: what it checked and passed, and which peers or paths were left out and why."""
    for name, findings in results.items():
        for finding in findings:
            reports[name].fail(finding)
        if not findings and notes.get(name):
            reports[name].messages.append(notes[name])


# ---- spark.ssh -----------------------------------------------------------------------------------------------------

def gather_ssh_facts(cxn: Any, node: Node) -> sshtrust.SshFacts:
    return sshtrust.parse_ssh_facts(run(cxn, sshtrust.facts_command()).stdout)


def ssh_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False,
                 parallel: bool = True) -> TaskReport:
    """spark.ssh: a key pair per node, every node's key authorized everywhere, peers' host keys in known_hosts
    under their link addresses; then every node logs in to every peer link address (BatchMode, strict keys)."""
    cluster, report, reports = connect_or_fail(inventory, "spark.ssh", parallel, dry_run)
    if cluster is None:
        return report
    try:
        facts = collect(cluster, reports, gather_ssh_facts)
        if not verify_only:
            keypairs = {name: sshtrust.plan_keypair(f, inventory.user, inventory.node(name))
                        for name, f in facts.items()}
            apply_steps(cluster, reports, keypairs, dry_run)
            if any(keypairs.values()) and not dry_run:
                facts = collect(cluster, reports, gather_ssh_facts, [n for n in facts if reports[n].ok])
            trust = {name: sshtrust.plan_trust(inventory, inventory.node(name), facts) for name in facts}
            apply_steps(cluster, reports, trust, dry_run)
            if dry_run:
                new_keys = [name for name, steps in keypairs.items() if steps]
                if new_keys:
                    for r in reports.values():
                        r.messages.append(f"the new keys of {', '.join(new_keys)} are authorized on the real run")
                return report
        verify_logins(cluster, inventory, reports, [n for n in inventory.nodes if n.name in facts])
    finally:
        cluster.close()
    return report


def verify_logins(cluster: Cluster, inventory: Inventory, reports: dict[str, NodeReport], peers: list[Node]) -> None:
    def probe(cxn: Any, node: Node) -> list[str]:
        targets = sshtrust.login_targets(node, peers)
        if not targets:
            return []
        out = run(cxn, sshtrust.login_probe_script(inventory, targets), timeout_s=60, check=False).stdout
        return sshtrust.login_findings(targets, out)

    results = collect(cluster, reports, probe, [n.name for n in peers], label="ssh check: ")
    skipped = [n.name for n in inventory.nodes if n not in peers]
    checked = (f"logs in to {len(peers) - 1} peer(s) on every link address (no password, strict host keys)"
               if len(peers) > 1 else "")
    note = "; ".join(filter(None, [checked, f"not checked: {', '.join(skipped)} (failed)" if skipped else ""]))
    record_peer_checks(reports, results, {n.name: note for n in peers})


# ---- spark.ray / spark.down ----------------------------------------------------------------------------------------

STOP_POLL_S = 0.5
API_POLL_S = 5.0
KILL_WAIT_S = 5.0


def gather_sessions(inventory: Inventory, names: tuple[str, ...]) -> Callable[[Any, Node], dict]:
    def gather(cxn: Any, node: Node) -> dict[str, session.SessionFacts]:
        return session.parse_facts(run(cxn, session.facts_command(inventory.state_dir, names)).stdout)
    return gather


def stop_sessions(cluster: Cluster, reports: dict[str, NodeReport], nodes: Iterable[str], names: tuple[str, ...],
                  grace_s: float, dry_run: bool) -> None:
    """Stop the recorded sessions `names` on `nodes`: SIGTERM to their pids, a bounded wait, SIGKILL for what is
    left, another bounded wait; then forget the records. A node where something survives is marked failed."""
    inventory = cluster.inventory
    gather = gather_sessions(inventory, names)
    facts = collect(cluster, reports, gather, [n for n in nodes if reports[n].ok])

    def signal_plans(sig: str) -> dict[str, tuple[Step, ...]]:
        return {n: tuple(s for f in facts[n].values() for s in session.plan_signal(f, sig)) for n in facts}

    apply_steps(cluster, reports, signal_plans("TERM"), dry_run)
    if dry_run:
        return
    for sig, wait_s in (("TERM", grace_s), ("KILL", KILL_WAIT_S)):
        if sig == "KILL":
            apply_steps(cluster, reports, {n: p for n, p in signal_plans("KILL").items() if p}, dry_run)
        running = list(facts)
        for attempt in attempts(wait_s, STOP_POLL_S):
            if attempt:
                facts.update(collect(cluster, reports, gather, running))
            running = [n for n, f in facts.items() if any(s.running for s in f.values())]
            if not running:
                break
        if not running:
            break
    for name, node_facts in facts.items():
        alive = [p for f in node_facts.values() for p in f.live_pids]
        if alive:
            reports[name].fail(f"still running after SIGKILL: pids {alive}")
    forget = {n: tuple(s for f in facts[n].values() for s in session.plan_forget(f, inventory.state_dir))
              for n in facts}
    apply_steps(cluster, reports, forget, dry_run)


RDMA_TOOLS_MISSING = roce.RDMA_TOOLS_MISSING


def gather_cluster_env(cxn: Any, inventory: Inventory, node: Node) -> tuple[str | None, list[roce.RdmaPort] | None,
                                                                            bool]:
    """The env file as it is, the node's RDMA ports (None where ibdev2netdev is missing or fails: the lab), and
    whether the tool is missing altogether (a host without RDMA tools, not a broken one)."""
    out = run(cxn, read_file_command(inventory.env_file, clusterenv.ENV_MARKER)).stdout
    current = parse_read_file(out, clusterenv.ENV_MARKER)
    tool = roce.IBDEV2NETDEV_COMMAND
    probe = run(cxn, roce.tool_output_command(tool), check=False)
    missing = probe.exited == 3 and RDMA_TOOLS_MISSING in probe.stdout
    ports = roce.parse_ibdev2netdev(probe.stdout) if probe.exited == 0 else None
    return current, ports, missing


NO_RDMA_TOOLS = ("no RDMA tools on this host (ibdev2netdev not installed): RoCE and NCCL-over-RoCE checks apply "
                 "to DGX Sparks (ConnectX-7); not counted as a failure here")


def env_plans(inventory: Inventory, reports: dict[str, NodeReport], env_facts: dict[str, tuple],
              require_rdma: bool, applicable_only: bool = False) -> dict[str, tuple[Step, ...]]:
    """Each node's env-file step; with require_rdma a node without RoCE devices for its links fails instead (or,
    with applicable_only, a node without the RDMA tools at all is marked not applicable)."""
    plans = {}
    for name, (current, ports, missing) in env_facts.items():
        node = inventory.node(name)
        devices = None
        if ports is not None:
            found, problems = roce.rdma_devices_for(node, ports)
            if problems and require_rdma:
                for problem in problems:
                    reports[name].fail(problem)
                continue
            devices = tuple(found[link.interface].device for link in node.links if link.interface in found) or None
        elif require_rdma and missing and applicable_only:
            reports[name].not_applicable = NO_RDMA_TOOLS
            continue
        elif require_rdma:
            reports[name].fail("ibdev2netdev not found or failed: no RoCE devices (real DGX Spark hardware only)")
            continue
        else:
            reports[name].messages.append("no RoCE devices (ibdev2netdev): NCCL_IB_HCA not set, NCCL uses sockets")
        plans[name] = clusterenv.plan_env(inventory, clusterenv.cluster_env(inventory, node, devices), current)
    return plans


def ray_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False, wait_s: int = 60,
                 grace_s: float = 10.0, parallel: bool = True) -> TaskReport:
    """spark.ray: the env file on every node, Ray head on the first node and workers on the others, all bound to
    the first link address; then the head must see every node alive on its link address."""
    cluster, report, reports = connect_or_fail(inventory, "spark.ray", parallel, dry_run)
    if cluster is None:
        return report
    try:
        def gather_env(cxn: Any, node: Node) -> tuple:
            return gather_cluster_env(cxn, inventory, node)

        env_facts = collect(cluster, reports, gather_env)
        envs = env_plans(inventory, reports, env_facts, require_rdma=False)
        digests = collect(cluster, reports,
                          lambda cxn, node: raycluster.parse_token_digest(run(cxn, raycluster.AUTH_FILE_DIGEST).stdout))
        facts = {n: f[raycluster.SESSION]
                 for n, f in collect(cluster, reports, gather_sessions(inventory, (raycluster.SESSION,))).items()}
        if len(facts) < len(inventory.nodes) or not reports[inventory.head.name].ok:
            for name in facts:
                reports[name].fail("Ray needs every node: not started while a node is unreachable")
            return report
        head = inventory.head.name
        token = None
        if digests.get(head):
            wanted = digests[head]
        else:
            token = raycluster.new_token()
            wanted = raycluster.token_digest(token)
        token_nodes = raycluster.token_targets(digests, wanted)
        alive = ray_health(cluster, inventory, reports, facts)
        plan = raycluster.plan_ray(inventory, facts, wanted, alive)
        if verify_only:
            for name, steps in envs.items():
                for step in steps:
                    reports[name].fail(f"differs: would {step.summary}")
            for name in token_nodes:
                reports[name].fail("the Ray auth token differs from the head's (run spark.ray)")
            for name in plan.start:
                reports[name].fail("Ray is not running with the inventory's settings or not alive in the cluster "
                                   "(run spark.ray: it restarts what is unhealthy)")
            if alive is None and any(f.running for f in facts.values()):
                return report  # the cluster does not answer: no membership to check
        else:
            if token_nodes and token is None and not dry_run:
                token = run(cluster.connections[head], raycluster.AUTH_FILE_READ).stdout.strip()
            for name in token_nodes:
                envs[name] = envs.get(name, ()) + (raycluster.token_step(token or ""),)
            apply_steps(cluster, reports, envs, dry_run)
            if plan.stop:
                if dry_run:
                    for name in plan.stop:
                        reports[name].changes.append("restart: stop the running Ray first")
                else:
                    stop_sessions(cluster, reports, plan.stop, (raycluster.SESSION,), grace_s, dry_run)
            first = {head: (raycluster.start_step(inventory, inventory.head, wanted),)} if head in plan.start else {}
            apply_steps(cluster, reports, first, dry_run)
            if not reports[head].ok:
                for name in plan.start:
                    if name != head:
                        reports[name].fail("not started: the Ray head did not start")
                return report
            apply_steps(cluster, reports, {n: (raycluster.start_step(inventory, inventory.node(n), wanted),)
                                           for n in plan.start if n != head and reports[n].ok}, dry_run)
            if dry_run:
                return report
        verify_ray(cluster, inventory, reports, wait_s)
    finally:
        cluster.close()
    return report


def ray_health(cluster: Cluster, inventory: Inventory, reports: dict[str, NodeReport],
               facts: dict[str, session.SessionFacts]) -> set[str] | None:
    """The link addresses the head's Ray cluster reports alive, asked once, bounded on the head; None when it does
    not answer (a dead GCS, a head that is not running). Not asked when no node runs Ray: all of it starts."""
    if not any(f.running for f in facts.values()):
        return None
    head = inventory.head
    connect_s = raycluster.HEALTH_CONNECT_S

    def list_nodes(cxn: Any, node: Node) -> list[dict] | None:
        out = run(cxn, raycluster.nodes_script(inventory, 0, 0, connect_s),
                  timeout_s=raycluster.check_bound_s(0, connect_s), check=False)
        return raycluster.parse_nodes(out.stdout)

    listed = collect(cluster, reports, list_nodes, [head.name], label="Ray health: ")
    alive = raycluster.alive_addresses(listed.get(head.name))
    if alive is None and reports[head.name].ok:
        reports[head.name].messages.append(
            f"the Ray cluster at {raycluster.head_address(inventory)} does not answer (its GCS is down or the head "
            "is not running): Ray is unhealthy")
    return alive


def verify_ray(cluster: Cluster, inventory: Inventory, reports: dict[str, NodeReport], wait_s: int) -> None:
    head = inventory.head

    expected = sum(1 for r in reports.values() if r.ok)  # do not wait for a node that already failed to start

    def list_nodes(cxn: Any, node: Node) -> list[dict] | None:
        out = run(cxn, raycluster.nodes_script(inventory, expected, wait_s),
                  timeout_s=raycluster.check_bound_s(wait_s))
        return raycluster.parse_nodes(out.stdout)

    listed = collect(cluster, reports, list_nodes, [head.name], label="Ray cluster check: ")
    if head.name not in listed:
        return
    reported = listed[head.name] or []
    for name, findings in raycluster.membership_findings(inventory, list(inventory.nodes), reported).items():
        for finding in findings:
            reports[name].fail(finding)
    alive = sum(1 for n in reported if n["alive"])
    reports[head.name].messages.append(f"Ray head {raycluster.head_address(inventory)}: {alive} node(s) alive")
    for node in inventory.nodes:
        if reports[node.name].ok:
            reports[node.name].messages.append(f"in the Ray cluster on {node.links[0].ip}")


def down_workflow(inventory: Inventory, dry_run: bool = False, grace_s: float = 10.0,
                  parallel: bool = True) -> TaskReport:
    """spark.down: stop what the toolkit started (vLLM, Ray) by the pids of its recorded sessions."""
    cluster, report, reports = connect_or_fail(inventory, "spark.down", parallel, dry_run)
    if cluster is None:
        return report
    try:
        stop_sessions(cluster, reports, list(reports),
                      (vllm_serve.SESSION, raycluster.SESSION, raycluster.CHECK_SESSION), grace_s, dry_run)
        for r in reports.values():
            if r.ok and not r.changes:
                r.messages.append("nothing started by the toolkit runs here")
    finally:
        cluster.close()
    return report


# ---- spark.roce ----------------------------------------------------------------------------------------------------

def gather_roce(cxn: Any, inventory: Inventory, node: Node) -> tuple[dict[str, roce.RdmaPort], dict[str, int]]:
    """RDMA device and RoCE v2 GID index behind each link interface; NodeError naming what is missing."""
    for tool in (roce.IBDEV2NETDEV_COMMAND, roce.SHOW_GIDS_COMMAND):
        if run(cxn, roce.has_tool_command(tool), check=False).exited != 0:
            raise RdmaToolsMissing(f"{tool} not found: RoCE checks need a DGX Spark (or another host with ConnectX "
                                   "RDMA)")
    found, problems = roce.rdma_devices_for(node, roce.parse_ibdev2netdev(run(cxn, roce.IBDEV2NETDEV_COMMAND).stdout))
    gids = roce.parse_show_gids(run(cxn, roce.SHOW_GIDS_COMMAND).stdout)
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


class RdmaToolsMissing(NodeError):
    """The host has no RDMA tools: the RoCE checks do not apply to it (a failure only when asked for explicitly)."""


def roce_workflow(inventory: Inventory, skip_bench: bool = False, parallel: bool = True,
                  applicable_only: bool = False) -> TaskReport:
    """spark.roce: RoCE devices and GID indexes on every node, then ib_write_bw per node pair and link half,
    judged per port against the 175 Gb/s gate."""
    cluster, report, reports = connect_or_fail(inventory, "spark.roce", parallel)
    if cluster is None:
        return report
    try:
        def gather(cxn: Any, node: Node) -> Any:
            try:
                return gather_roce(cxn, inventory, node)
            except RdmaToolsMissing:
                if not applicable_only:
                    raise
                return None  # (an exception returned would count as the node's failure)

        facts = collect(cluster, reports, gather)
        for name, value in list(facts.items()):
            if value is None:
                reports[name].not_applicable = NO_RDMA_TOOLS
                del facts[name]
        for name, (ports, indexes) in facts.items():
            node = inventory.node(name)
            reports[name].messages.append("; ".join(
                f"{ports[link.interface].device} -> {link.interface} up, GID index {indexes[link.interface]}"
                for link in node.links))
        if skip_bench or len(facts) < len(inventory.nodes):
            return report
        runs = roce.bandwidth_runs(inventory)

        def device(name: str, link_index: int) -> tuple[str, int]:
            iface = inventory.node(name).links[link_index].interface
            return facts[name][0][iface].device, facts[name][1][iface]

        servers = {name: [roce.server_command(*device(name, r.link_index), r.tcp_port) for r in runs
                          if r.server == name] for name in facts}
        collect(cluster, reports, lambda cxn, node: run(cxn, " ".join(servers[node.name]) or "true"),
                label="ib_write_bw server: ")
        time.sleep(1.0)  # let the servers listen

        def clients(cxn: Any, node: Node) -> dict[str, tuple[int, str]]:
            mine = [r for r in runs if r.client == node.name]
            if not mine:
                return {}
            commands = [(f"{r.server}.{r.link_index}",
                         roce.client_command(*device(node.name, r.link_index), r.tcp_port,
                                             inventory.node(r.server).links[r.link_index].ip)) for r in mine]
            out = run(cxn, roce.clients_script(commands), timeout_s=roce.PERFTEST_TIMEOUT_S + 30, check=False)
            return roce.split_runs(out.stdout)

        for name, outputs in collect(cluster, reports, clients, label="ib_write_bw: ").items():
            for server in sorted({r.server for r in runs if r.client == name}):
                halves = {}
                for r in runs:
                    if r.client == name and r.server == server:
                        iface = inventory.node(name).links[r.link_index].interface
                        rc, text = outputs.get(f"{server}.{r.link_index}", (1, ""))
                        halves[iface] = roce.parse_ib_write_bw(text) if rc == 0 else None
                findings = roce.judge_port(f"{name} -> {server}", halves)
                for finding in findings:
                    reports[name].fail(finding)
                if not findings:
                    total = sum(h.average_gbps for h in halves.values() if h)
                    reports[name].messages.append(f"{name} -> {server}: {total:.1f} Gb/s over {len(halves)} halves")
    finally:
        cluster.close()
    return report


# ---- spark.nccl ----------------------------------------------------------------------------------------------------

def nccl_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False, skip_bench: bool = False,
                  parallel: bool = True, applicable_only: bool = False) -> TaskReport:
    """spark.nccl: the NCCL/UCX/Gloo env file on every node (both RoCE halves in NCCL_IB_HCA), then nccl-tests
    all_gather_perf through mpirun from the head with safe sizes, its bus bandwidth judged."""
    cluster, report, reports = connect_or_fail(inventory, "spark.nccl", parallel, dry_run)
    if cluster is None:
        return report
    try:
        env_facts = collect(cluster, reports, lambda cxn, node: gather_cluster_env(cxn, inventory, node))
        plans = env_plans(inventory, reports, env_facts, require_rdma=True, applicable_only=applicable_only)
        if verify_only:
            for name, steps in plans.items():
                for step in steps:
                    reports[name].fail(f"differs: would {step.summary}")
        else:
            apply_steps(cluster, reports, plans, dry_run)
        head = inventory.head
        env = clusterenv.parse_env(clusterenv.render_env(inventory, clusterenv.cluster_env(inventory, head, ("x",))))
        command = nccl.mpirun_command(inventory, [k for k in clusterenv.FORWARDED if k in env])
        if dry_run:
            reports[head.name].changes.append("run all_gather_perf through mpirun")
            reports[head.name].commands.append(command)
            return report
        if skip_bench or not all(r.ok and not r.not_applicable for r in reports.values()):
            return report
        result = collect(cluster, reports, lambda cxn, node: run(cxn, command, timeout_s=nccl.TIMEOUT_S, check=False),
                         [head.name], label="all_gather_perf: ")
        if head.name in result:
            out = result[head.name]
            parsed = nccl.parse_all_gather(out.stdout)
            findings = nccl.judge_all_gather(parsed)
            if out.exited != 0:
                findings.insert(0, f"mpirun exit {out.exited}: {last_line(out.stderr or out.stdout)}")
            for finding in findings:
                reports[head.name].fail(finding)
            if not findings:
                reports[head.name].messages.append(
                    f"all_gather_perf busbw {parsed.average_busbw} GB/s via NET/{parsed.transport or '?'}")
    finally:
        cluster.close()
    return report


# ---- spark.vllm ----------------------------------------------------------------------------------------------------

def vllm_workflow(inventory: Inventory, dry_run: bool = False, wait_s: int = 0, grace_s: float = 10.0,
                  parallel: bool = True) -> TaskReport:
    """spark.vllm: the planner's vLLM command for this cluster size, started on the head over the running Ray
    cluster, API key from a mode-600 file. Raises PlanInputError (exit 2) for sizes the planner rejects."""
    fit, command = vllm_serve.serving_command(inventory)
    cluster, report, reports = connect_or_fail(inventory, "spark.vllm", parallel, dry_run)
    if cluster is None:
        return report
    head = inventory.head
    reports[head.name].messages.append(f"planner: {fit.layout.describe()}")
    try:
        names = (raycluster.SESSION, vllm_serve.SESSION)
        sessions = collect(cluster, reports, gather_sessions(inventory, names))
        for name, facts in sessions.items():
            if not facts[raycluster.SESSION].running:
                reports[name].fail("Ray is not running here: run spark.ray first")

        def key_fact(cxn: Any, node: Node) -> vllm_serve.KeyFileFacts:
            return vllm_serve.parse_key_fact(run(cxn, vllm_serve.key_fact_command(inventory)).stdout)

        key = collect(cluster, reports, key_fact, [head.name])
        for problem in vllm_serve.key_file_problems(inventory, key[head.name]) if head.name in key else []:
            reports[head.name].fail(problem)
        step = vllm_serve.launch_step(inventory, command)
        if not all(r.ok for r in reports.values()):
            return report
        running = sessions[head.name][vllm_serve.SESSION]
        argv = vllm_serve.argv_for(inventory, command)
        wanted = vllm_serve.settings_for(inventory, command)
        if running.running and running.record is not None and running.record.settings == wanted:
            reports[head.name].messages.append("vLLM already runs with this command")
        else:
            if running.running:
                if dry_run:
                    reports[head.name].changes.append("restart: stop the running vLLM first")
                else:
                    stop_sessions(cluster, reports, [head.name], (vllm_serve.SESSION,), grace_s, dry_run)
            apply_steps(cluster, reports, {head.name: (step,)}, dry_run)
        if dry_run:
            reports[head.name].commands.append("argv: " + shlex.join(argv))
            return report
        log = session.log_path(inventory.state_dir, vllm_serve.SESSION)
        if not reports[head.name].ok:
            return report
        if not vllm_alive(cluster, inventory, reports):
            tail_command = session.log_tail_command(inventory.state_dir, vllm_serve.SESSION)
            tail = run(cluster.connections[head.name], tail_command, check=False).stdout
            reports[head.name].fail(f"vLLM exited right after the start: {last_line(tail)} (see {log})")
            return report
        if wait_s <= 0:
            reports[head.name].messages.append(f"started; loading takes minutes: follow {log}, then spark.doctor")
            return report
        ready, findings = False, []
        for _ in attempts(wait_s, API_POLL_S):
            out = run(cluster.connections[head.name], vllm_serve.api_check_command(inventory), check=False).stdout
            ready, findings = vllm_serve.api_findings(out)
            if ready or findings:
                break
        for finding in findings:
            reports[head.name].fail(finding)
        if not ready:
            reports[head.name].fail(f"the API did not answer with the key within {wait_s}s (see {log})")
        elif not findings:
            reports[head.name].messages.append("API ready; requests without the key are refused")
    finally:
        cluster.close()
    return report


def vllm_alive(cluster: Cluster, inventory: Inventory, reports: dict[str, NodeReport],
               settle_s: float = 3.0) -> bool:
    """Whether the vLLM session still runs a moment after its start (a missing binary or a bad flag ends it)."""
    gather = gather_sessions(inventory, (vllm_serve.SESSION,))
    head = inventory.head.name
    for _ in attempts(settle_s, STOP_POLL_S):
        facts = collect(cluster, reports, gather, [head])
        if head not in facts or not facts[head][vllm_serve.SESSION].running:
            return False
    return True


# ---- spark.doctor --------------------------------------------------------------------------------------------------

def doctor_workflow(inventory: Inventory, skip_bench: bool = False, parallel: bool = True) -> TaskReport:
    """spark.doctor: every check above, read-only, as one report (one line per check and node)."""
    checks: list[tuple[str, TaskReport]] = [
        ("link", link_workflow(inventory, verify_only=True, parallel=parallel)),
        ("ssh", ssh_workflow(inventory, verify_only=True, parallel=parallel)),
        ("roce", roce_workflow(inventory, skip_bench=skip_bench, parallel=parallel, applicable_only=True)),
        ("nccl", nccl_workflow(inventory, verify_only=True, skip_bench=skip_bench, parallel=parallel,
                               applicable_only=True)),
    ]
    started = started_sessions(inventory, parallel)
    if any(raycluster.SESSION in names for names in started.values()):
        checks.append(("ray", ray_workflow(inventory, verify_only=True, wait_s=5, parallel=parallel)))
    if vllm_serve.SESSION in started.get(inventory.head.name, ()):
        checks.append(("vllm", vllm_check(inventory, parallel)))
    merged = new_reports(inventory)
    for check, result in checks:
        for node in result.nodes:
            target = merged[node.node]
            detail = "; ".join(node.messages)
            if node.ok and node.not_applicable:
                target.messages.append(f"{check}: not applicable here: {node.not_applicable}")
            elif node.ok:
                target.messages.append(f"{check}: ok" + (f" ({detail})" if detail else ""))
            else:
                target.fail(f"{check}: FAILED: {detail}")
    for name, names in started.items():
        if not names:
            merged[name].messages.append("ray, vllm: not started by the toolkit (spark.ray, spark.vllm)")
    return TaskReport("spark.doctor", list(merged.values()))


def started_sessions(inventory: Inventory, parallel: bool = True) -> dict[str, tuple[str, ...]]:
    """Which recorded sessions (ray, vllm) run on each reachable node."""
    try:
        cluster = connect(inventory, parallel)
    except NodeError:
        return {}
    try:
        reports = new_reports(inventory)
        facts = collect(cluster, reports, gather_sessions(inventory, (raycluster.SESSION, vllm_serve.SESSION)))
        return {name: tuple(s for s, f in node_facts.items() if f.running) for name, node_facts in facts.items()}
    finally:
        cluster.close()


def vllm_check(inventory: Inventory, parallel: bool = True) -> TaskReport:
    """The running vLLM answers with the key and refuses requests without it."""
    cluster, report, reports = connect_or_fail(inventory, "spark.vllm", parallel)
    if cluster is None:
        return report
    try:
        head = inventory.head.name
        out = collect(cluster, reports, lambda cxn, node: run(cxn, vllm_serve.api_check_command(inventory),
                                                              check=False).stdout, [head])
        if head in out:
            ready, findings = vllm_serve.api_findings(out[head])
            for finding in findings:
                reports[head].fail(finding)
            if not ready:
                reports[head].fail("the API does not answer with the key (still loading? see the vllm log)")
    finally:
        cluster.close()
    return report
