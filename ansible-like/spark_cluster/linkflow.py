"""spark.link and spark.ssh as declarations for converge(): their gather, plan and verify units."""

from __future__ import annotations

from typing import Any

from spark_cluster import link as linkops
from spark_cluster import remote, sshtrust
from spark_cluster.bounded import attempts
from spark_cluster.converge import Facts, Plans, Run, Stage, Task, apply_to_ok, converge, each, regather
from spark_cluster.inventory import Inventory, Node
from spark_cluster.report import TaskReport
from spark_cluster.step import as_user, parse_read_file, read_file_command

# ---- spark.link ----------------------------------------------------------------------------------------------------

CARRIER_WAIT_S = 10.0
CARRIER_POLL_S = 0.5


def gather_link_facts(cxn: Any, inventory: Inventory, node: Node) -> linkops.LinkFacts:
    interfaces = linkops.parse_ip_addr(remote.run(cxn, linkops.LINK_STATE_COMMAND).stdout)
    netplan_file, profiles = None, {}
    if inventory.network_backend == "netplan":
        command = read_file_command(inventory.netplan_file, linkops.NETPLAN_MARKER)
        out = remote.run(cxn, as_user(command, inventory.user, True)).stdout
        netplan_file = parse_read_file(out, linkops.NETPLAN_MARKER)
    elif inventory.network_backend == "nmcli":
        profiles = linkops.parse_nmcli_facts(remote.run(cxn, linkops.nmcli_facts_command(node)).stdout)
    return linkops.LinkFacts(interfaces, netplan_file, profiles)


def link_gatherer(inventory: Inventory) -> Any:
    def gather(cxn: Any, node: Node) -> linkops.LinkFacts:
        return gather_link_facts(cxn, inventory, node)
    return gather


def plan_links(run: Run, facts: Facts) -> Plans:
    """Every node's link steps; a node whose plan has problems (an interface missing) fails."""
    plans = {name: linkops.plan_link(run.inventory, run.inventory.node(name), f) for name, f in facts.items()}
    run.fail_all({name: list(plan.problems) for name, plan in plans.items()})
    return {name: plan.steps for name, plan in plans.items()}


def settle_links(run: Run, facts: Facts, plans: Plans) -> Facts:
    """After a change: the facts again, once the changed ports have carrier (bounded: link training on a real
    ConnectX-7 takes a moment); a node whose links still differ from the inventory fails."""
    inventory, gather = run.inventory, link_gatherer(run.inventory)
    changed = [name for name, steps in plans.items() if steps]
    facts = run.collect(gather, [n for n in facts if run.ok(n)])
    waiting: list[str] = []
    for attempt in attempts(CARRIER_WAIT_S, CARRIER_POLL_S):
        if attempt:
            facts.update(run.collect(gather, waiting))
        waiting = [n for n in changed if n in facts and run.ok(n)
                   and linkops.carrier_findings(inventory.node(n), facts[n].interfaces)]
        if not waiting:
            break
    run.fail_steps({name: linkops.plan_link(inventory, inventory.node(name), f).steps for name, f in facts.items()},
                   "still differs after the change: would {}")
    return facts


def verify_links(run: Run, facts: Facts) -> None:
    """Every node reports the inventory MTU on every link, has carrier on every link that is up, and reaches every
    peer's link addresses with a don't-fragment ping of mtu - 28 bytes. Peers that failed earlier are left out
    (they are reported already), and so are paths over a link without carrier (reported on the node that has it)."""
    inventory = run.inventory
    states = {name: f.interfaces for name, f in facts.items()}
    run.fail_all(linkops.mtu_findings(inventory, states))
    run.fail_all({name: linkops.carrier_findings(inventory.node(name), interfaces)
                  for name, interfaces in states.items()})
    reachable = [n for n in inventory.nodes if n.name in facts]
    usable = linkops.usable_links(inventory, states)
    probes = {node.name: linkops.mesh_probes(inventory, node, reachable, usable) for node in reachable}

    def probe(cxn: Any, node: Node) -> list[str]:
        if not probes[node.name]:
            return []
        out = remote.run(cxn, linkops.probe_script(probes[node.name]), timeout_s=60, check=False).stdout
        return linkops.probe_findings(probes[node.name], linkops.parse_probe_output(out))

    results = run.collect(probe, [n.name for n in reachable], label="jumbo ping: ")
    skipped = [n.name for n in inventory.nodes if n.name not in facts]
    run.record_peer_checks(results, {node.name: probe_note(inventory, node, probes[node.name], reachable, usable,
                                                           skipped) for node in reachable})


def probe_note(inventory: Inventory, node: Node, mine: list, reachable: list[Node], usable: Any,
               skipped: list[str]) -> str:
    """What a node's jumbo pings checked, and which peers or paths were left out and why."""
    peers, links = {p.peer for p in mine}, {p.interface for p in mine}
    passed = (f"mtu {inventory.mtu}; {inventory.mtu - linkops.ICMP_IPV4_OVERHEAD}-byte DF ping to "
              f"{len(peers)} peer(s) x {len(links)} link(s) ok" if mine else "")
    left_out = [f"{name} (failed)" for name in skipped]
    left_out += linkops.paths_without_carrier(node, reachable, usable)
    if left_out:
        passed = "; ".join(filter(None, [passed, "not probed: " + ", ".join(left_out)]))
    return passed


def link_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False,
                  parallel: bool = True) -> TaskReport:
    """spark.link: addresses and MTU on the link interfaces, then the MTU and jumbo-path checks."""
    links = Stage(gather=each(link_gatherer(inventory)), plan=plan_links, apply=apply_to_ok,
                  drift="differs from the inventory: would {}", after_change=settle_links)
    task = Task("spark.link", (links,), verify=verify_links)
    return converge(task, inventory, dry_run, verify_only, parallel)


# ---- spark.ssh -----------------------------------------------------------------------------------------------------

def gather_ssh_facts(cxn: Any, node: Node) -> sshtrust.SshFacts:
    return sshtrust.parse_ssh_facts(remote.run(cxn, sshtrust.facts_command()).stdout)


def plan_keypairs(run: Run, facts: Facts) -> Plans:
    """A key pair for each node that has none; a dry run says when the new keys get authorized."""
    plans = {name: sshtrust.plan_keypair(f, run.inventory.user, run.inventory.node(name)) for name, f in facts.items()}
    new_keys = [name for name, steps in plans.items() if steps]
    if run.dry_run and new_keys:
        for name in run.reports:
            run.note(name, f"the new keys of {', '.join(new_keys)} are authorized on the real run")
    return plans


def plan_trust(run: Run, facts: Facts) -> Plans:
    return {name: sshtrust.plan_trust(run.inventory, run.inventory.node(name), facts) for name in facts}


def verify_logins(run: Run, facts: Facts) -> None:
    """Every node logs in to every peer link address (BatchMode, strict host keys)."""
    inventory = run.inventory
    peers = [n for n in inventory.nodes if n.name in facts]

    def probe(cxn: Any, node: Node) -> list[str]:
        targets = sshtrust.login_targets(node, peers)
        if not targets:
            return []
        out = remote.run(cxn, sshtrust.login_probe_script(inventory, targets), timeout_s=60, check=False).stdout
        return sshtrust.login_findings(targets, out)

    results = run.collect(probe, [n.name for n in peers], label="ssh check: ")
    skipped = [n.name for n in inventory.nodes if n not in peers]
    checked = (f"logs in to {len(peers) - 1} peer(s) on every link address (no password, strict host keys)"
               if len(peers) > 1 else "")
    note = "; ".join(filter(None, [checked, f"not checked: {', '.join(skipped)} (failed)" if skipped else ""]))
    run.record_peer_checks(results, {n.name: note for n in peers})


SSH = Task("spark.ssh", (
    # verify-only plans nothing here (drift=None): it only checks the logins
    Stage(gather=each(gather_ssh_facts), plan=plan_keypairs, drift=None, after_change=regather(gather_ssh_facts)),
    Stage(plan=plan_trust, drift=None),
), verify=verify_logins)


def ssh_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False,
                 parallel: bool = True) -> TaskReport:
    """spark.ssh: a key pair per node, every node's key authorized everywhere, peers' host keys in known_hosts
    under their link addresses; then every node logs in to every peer link address (BatchMode, strict keys)."""
    return converge(SSH, inventory, dry_run, verify_only, parallel)
