"""spark.link's pure core: facts in, steps out (empty when converged), for the ip, netplan and nmcli backends;
the netplan file checked by `netplan generate`; the MTU and jumbo-ping verdicts."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from spark_cluster import link
from spark_cluster.inventory import parse_inventory
from spark_cluster.link import InterfaceState, LinkFacts, NmProfile, plan_link

from tests.spark.sparklab import GOOD


def inventory(backend="ip", mtu=9000, nodes=None):
    return parse_inventory({**GOOD, "network_backend": backend, "mtu": mtu, **({"nodes": nodes} if nodes else {})})


def fresh(node):
    """A Spark before spark.link: link interfaces down, mtu 1500, no address."""
    return {li.interface: InterfaceState(li.interface, 1500, False, False, ()) for li in node.links}


def converged(node, mtu):
    return {li.interface: InterfaceState(li.interface, mtu, True, True, (li.address,)) for li in node.links}


def summaries(plan):
    return [s.summary for s in plan.steps]


def commands(plan):
    return [s.command for s in plan.steps]


def test_ip_backend_plans_mtu_up_and_address_for_a_fresh_node():
    inv = inventory("ip")
    node = inv.head
    plan = plan_link(inv, node, LinkFacts(fresh(node)))
    assert commands(plan) == [
        "ip link set dev enp1s0f0np0 mtu 9000", "ip link set dev enp1s0f0np0 up",
        "ip addr add 192.168.100.10/24 dev enp1s0f0np0",
        "ip link set dev enP2p1s0f0np0 mtu 9000", "ip link set dev enP2p1s0f0np0 up",
        "ip addr add 192.168.101.10/24 dev enP2p1s0f0np0",
    ]
    assert all(s.privileged for s in plan.steps)


def test_ip_backend_removes_stray_addresses_but_never_the_management_address():
    # The inventory loader refuses a management address inside a link subnet; the plan still never deletes it.
    inv = inventory("ip")
    inv = dataclasses.replace(inv, nodes=(dataclasses.replace(inv.nodes[0], host="192.168.100.99"), inv.nodes[1]))
    node = inv.head
    interfaces = converged(node, 9000)
    interfaces["enp1s0f0np0"] = dataclasses.replace(
        interfaces["enp1s0f0np0"], ipv4=("192.168.100.10/24", "10.9.9.9/8", "192.168.100.99/24"))
    plan = plan_link(inv, node, LinkFacts(interfaces))
    assert commands(plan) == ["ip addr del 10.9.9.9/8 dev enp1s0f0np0"]


def test_ip_backend_only_fixes_what_drifted():
    inv = inventory("ip")
    node = inv.head
    interfaces = converged(node, 9000)
    interfaces["enP2p1s0f0np0"] = dataclasses.replace(interfaces["enP2p1s0f0np0"], mtu=1500)
    assert summaries(plan_link(inv, node, LinkFacts(interfaces))) == ["set mtu 9000 on enP2p1s0f0np0 (was 1500)"]


def test_a_missing_interface_is_a_problem_not_a_step():
    inv = inventory("ip")
    node = inv.head
    interfaces = converged(node, 9000)
    del interfaces["enP2p1s0f0np0"]
    plan = plan_link(inv, node, LinkFacts(interfaces))
    assert plan.steps == ()
    assert plan.problems == ("interface enP2p1s0f0np0 not found on spark-1 (present: enp1s0f0np0)",)


def test_netplan_backend_writes_validates_and_applies_a_600_file():
    inv = inventory("netplan")
    node = inv.head
    plan = plan_link(inv, node, LinkFacts(fresh(node), netplan_file=None))
    assert summaries(plan) == ["validate with netplan generate (scratch copy of /etc/netplan)",
                               "write /etc/netplan/40-cx7.yaml (mode 600)", "netplan apply"]
    assert "netplan generate --root-dir" in plan.steps[0].command and "chmod 600" in plan.steps[1].command
    # converged: nothing to do
    desired = link.render_netplan(node, 9000)
    assert plan_link(inv, node, LinkFacts(converged(node, 9000), netplan_file=desired)).steps == ()
    # the file is right but the MTU was reset (firmware reboot): apply again, do not rewrite
    drifted = converged(node, 9000)
    drifted["enp1s0f0np0"] = dataclasses.replace(drifted["enp1s0f0np0"], mtu=1500)
    assert summaries(plan_link(inv, node, LinkFacts(drifted, netplan_file=desired))) == ["netplan apply"]
    # someone edited the file
    edited = desired.replace("9000", "1500")
    assert summaries(plan_link(inv, node, LinkFacts(converged(node, 9000), netplan_file=edited)))[1] == \
        "rewrite /etc/netplan/40-cx7.yaml (mode 600)"


def test_rendered_netplan_is_what_nvidia_documents_plus_the_mtu():
    node = inventory("netplan").head
    data = yaml.safe_load(link.render_netplan(node, 9000))
    assert data == {"network": {"version": 2, "ethernets": {
        "enp1s0f0np0": {"dhcp4": False, "dhcp6": False, "addresses": ["192.168.100.10/24"], "mtu": 9000},
        "enP2p1s0f0np0": {"dhcp4": False, "dhcp6": False, "addresses": ["192.168.101.10/24"], "mtu": 9000}}}}


@pytest.mark.usefixtures("netplan")
def test_netplan_generate_accepts_the_rendered_file(tmp_path):
    node = inventory("netplan").head
    (tmp_path / "etc/netplan").mkdir(parents=True)
    path = tmp_path / "etc/netplan/40-cx7.yaml"
    path.write_text(link.render_netplan(node, 9000))
    path.chmod(0o600)
    result = subprocess.run(["netplan", "generate", "--root-dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    network = (tmp_path / "run/systemd/network/10-netplan-enp1s0f0np0.network").read_text()
    assert "Address=192.168.100.10/24" in network and "MTUBytes=9000" in network
    # and netplan refuses a broken file, so the check has teeth
    path.write_text(link.render_netplan(node, 9000).replace("addresses:", "adresses:"))
    assert subprocess.run(["netplan", "generate", "--root-dir", str(tmp_path)], capture_output=True).returncode != 0


@pytest.mark.usefixtures("netplan")
def test_the_validation_step_rejects_a_file_netplan_would_refuse():
    node = inventory("netplan").head
    good = link.netplan_validate_command("/etc/netplan/40-cx7.yaml", link.render_netplan(node, 9000))
    assert subprocess.run(["sh", "-c", good], capture_output=True).returncode == 0
    broken = link.render_netplan(node, 9000).replace("mtu:", "mtu_bytes:")
    bad = subprocess.run(["sh", "-c", link.netplan_validate_command("/etc/netplan/40-cx7.yaml", broken)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "mtu_bytes" in bad.stderr


NMCLI_PRESENT = """### nmcli enp1s0f0np0
connection.id:nemotron-enp1s0f0np0
connection.interface-name:enp1s0f0np0
ipv4.method:manual
ipv4.addresses:192.168.100.10/24
802-3-ethernet.mtu:9000
### nmcli enP2p1s0f0np0
absent
"""


def test_nmcli_facts_parse():
    profiles = link.parse_nmcli_facts(NMCLI_PRESENT)
    assert profiles["enP2p1s0f0np0"] is None
    assert profiles["enp1s0f0np0"] == NmProfile("nemotron-enp1s0f0np0", "enp1s0f0np0", "manual",
                                                ("192.168.100.10/24",), 9000)


def test_nmcli_backend_creates_updates_or_only_activates_profiles():
    inv = inventory("nmcli")
    node = inv.head
    profiles = link.parse_nmcli_facts(NMCLI_PRESENT)
    plan = plan_link(inv, node, LinkFacts(fresh(node), nm_profiles=profiles))
    assert summaries(plan) == [
        "activate profile nemotron-enp1s0f0np0",
        "create NetworkManager profile nemotron-enP2p1s0f0np0 (192.168.101.10/24, mtu 9000)",
        "activate profile nemotron-enP2p1s0f0np0",
    ]
    assert "802-3-ethernet.mtu 9000" in plan.steps[1].command and "ipv4.method manual" in plan.steps[1].command
    auto_mtu = {**profiles, "enp1s0f0np0": dataclasses.replace(profiles["enp1s0f0np0"], mtu=None)}
    assert summaries(plan_link(inv, node, LinkFacts(converged(node, 9000), nm_profiles=auto_mtu)))[0] == \
        "update NetworkManager profile nemotron-enp1s0f0np0 (192.168.100.10/24, mtu 9000)"


ADDRESS = st.tuples(st.integers(1, 254), st.integers(1, 254))


@settings(max_examples=60, deadline=None)
@given(backend=st.sampled_from(["ip", "netplan", "nmcli"]), mtu=st.integers(1280, 9216),
       hosts=st.lists(st.integers(1, 254), min_size=1, max_size=8, unique=True), second=st.integers(0, 255))
def test_plans_are_empty_once_converged_and_non_empty_before(backend, mtu, hosts, second):
    nodes = [{"name": f"n{i}", "host": f"10.1.0.{i + 1}",
              "links": [{"interface": "enp1s0f0np0", "address": f"198.19.{second}.{h}/24"}]}
             for i, h in enumerate(hosts)]
    inv = inventory(backend, mtu, nodes)
    for node in inv.nodes:
        profiles = {li.interface: NmProfile(link.nm_profile_name(li.interface), li.interface, "manual",
                                            (li.address,), mtu) for li in node.links}
        done = LinkFacts(converged(node, mtu), netplan_file=link.render_netplan(node, mtu), nm_profiles=profiles)
        assert plan_link(inv, node, done).steps == ()
        assert plan_link(inv, node, LinkFacts(fresh(node), nm_profiles={})).steps != ()


def test_mtu_mismatch_names_both_nodes_and_both_values():
    inv = inventory("ip")
    states = {n.name: converged(n, 9000) for n in inv.nodes}
    states["spark-2"]["enp1s0f0np0"] = dataclasses.replace(states["spark-2"]["enp1s0f0np0"], mtu=1500)
    findings = link.mtu_findings(inv, states)
    assert findings["spark-1"] == []
    assert findings["spark-2"] == [
        "MTU mismatch on link 0: spark-2 enp1s0f0np0 has mtu 1500, spark-1 enp1s0f0np0 has mtu 9000 "
        "(inventory mtu 9000); both ends must match"]


def test_same_wrong_mtu_everywhere_is_still_reported():
    inv = inventory("ip")
    states = {n.name: converged(n, 1500) for n in inv.nodes}
    findings = link.mtu_findings(inv, states)
    assert all(len(f) == 2 and "inventory mtu 9000" in f[0] for f in findings.values())


def test_mesh_probes_use_mtu_minus_28_to_every_peer_on_every_link():
    inv = inventory("ip", 9000)
    probes = link.mesh_probes(inv, inv.head, inv.nodes)
    assert [(p.peer, p.interface, p.address, p.size) for p in probes] == [
        ("spark-2", "enp1s0f0np0", "192.168.100.11", 8972), ("spark-2", "enP2p1s0f0np0", "192.168.101.11", 8972)]
    script = link.probe_script(probes)
    pings = [line for line in script.splitlines() if line.startswith("ping -n -Mdo -s 8972 ")]
    assert len(pings) == 2 and all(line.endswith("& p0=$!") or line.endswith("& p1=$!") for line in pings)


def test_the_probe_script_costs_one_process_per_ping():
    """Each ping runs as the only process of its background job; no subshell, pipe or command substitution per
    probe (they fork), only one mktemp and one rm for the whole script."""
    inv = inventory("ip", 9000)
    script = link.probe_script(link.mesh_probes(inv, inv.head, inv.nodes))
    assert script.count("$(") == 1 and "mktemp" in script and "|" not in script.replace("||", "")
    assert "( " not in script and script.count(" &") == 2


def test_probe_script_runs_and_reports_each_probe(tmp_path):
    """Run the real script with a stand-in `ping` (first probe answers, second gets ping's own error)."""
    fake = tmp_path / "ping"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do last=$a; done\ncase $last in\n'
                    '*.11) echo "PING"; echo "rtt min/avg/max/mdev = 0.1/0.1/0.1/0.0 ms";;\n'
                    '*) echo "ping: local error: message too long, mtu=1500"; echo "1 packets transmitted"; exit 1;;\n'
                    'esac\n')
    fake.chmod(0o755)
    probes = (link.Probe("spark-2", "enp1s0f0np0", "192.168.100.11", 8972),
              link.Probe("spark-2", "enP2p1s0f0np0", "192.168.101.12", 8972))
    out = subprocess.run(["sh", "-c", link.probe_script(probes)], capture_output=True, text=True, check=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).stdout
    assert link.parse_probe_output(out) == {
        ("enp1s0f0np0", "192.168.100.11"): link.ProbeResult(True, "rtt min/avg/max/mdev = 0.1/0.1/0.1/0.0 ms"),
        ("enP2p1s0f0np0", "192.168.101.12"): link.ProbeResult(False, "ping: local error: message too long, mtu=1500")}


def test_no_carrier_is_said_on_its_node_and_its_paths_are_left_out():
    inv = inventory("ip", 9000)
    head, peer = inv.nodes
    pulled = {**converged(peer, 9000)}
    first = peer.links[0].interface
    pulled[first] = dataclasses.replace(pulled[first], carrier=False)
    states = {head.name: converged(head, 9000), peer.name: pulled}
    assert link.carrier_findings(peer, pulled) == [
        f"no carrier on {first} (link 0): cable pulled or the far end's port is down; check the QSFP cable and the "
        "peer's port, then rerun"]
    assert link.carrier_findings(head, states[head.name]) == []
    usable = link.usable_links(inv, states)
    assert usable == {head.name: {0, 1}, peer.name: {1}}
    probes = link.mesh_probes(inv, head, inv.nodes, usable)
    assert [(p.peer, p.interface) for p in probes] == [(peer.name, head.links[1].interface)]
    assert link.paths_without_carrier(head, inv.nodes, usable) == [f"{peer.name} link 0 (down or no carrier at "
                                                                   f"{peer.name})"]
    assert link.paths_without_carrier(peer, inv.nodes, usable) == [f"{head.name} link 0 (down or no carrier here)"]
    # an interface set down is not "no carrier" (the plan brings it up), but its paths are left out just the same
    down = {**converged(peer, 9000), first: InterfaceState(first, 9000, False, False, (peer.links[0].address,))}
    assert link.carrier_findings(peer, down) == []
    assert link.usable_links(inv, {**states, peer.name: down})[peer.name] == {1}


def test_probe_results_become_findings():
    inv = inventory("ip")
    probes = link.mesh_probes(inv, inv.head, inv.nodes)
    out = ("PROBE\tenp1s0f0np0\t192.168.100.11\t0\trtt min/avg/max/mdev = 0.1/0.1/0.1/0.0 ms\n"
           "PROBE\tenP2p1s0f0np0\t192.168.101.11\t1\tping: local error: message too long, mtu=1500\n")
    findings = link.probe_findings(probes, link.parse_probe_output(out))
    assert findings == ["no 8972-byte don't-fragment path to spark-2 192.168.101.11 via enP2p1s0f0np0: "
                        "ping: local error: message too long, mtu=1500"]
    assert link.probe_findings(probes, {}) != []  # no output at all is a failure, not a pass


def test_ip_addr_json_parses():
    text = json.dumps([
        {"ifname": "lo", "mtu": 65536, "flags": ["LOOPBACK", "UP", "LOWER_UP"],
         "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "enp1s0f0np0", "mtu": 9000, "flags": ["BROADCAST", "MULTICAST", "UP"],
         "addr_info": [{"family": "inet", "local": "192.168.100.10", "prefixlen": 24},
                       {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]},
    ])
    state = link.parse_ip_addr(text)["enp1s0f0np0"]
    assert state == InterfaceState("enp1s0f0np0", 9000, True, False, ("192.168.100.10/24",))


def test_mtu_mismatch_between_two_wrong_ends_names_both_nodes_and_values():
    inv = inventory("ip")
    states = {inv.nodes[0].name: converged(inv.nodes[0], 1500), inv.nodes[1].name: converged(inv.nodes[1], 4200)}
    findings = link.mtu_findings(inv, states)
    assert findings["spark-1"][0] == ("MTU mismatch on link 0: spark-1 enp1s0f0np0 has mtu 1500, spark-2 enp1s0f0np0 "
                                      "has mtu 4200 (inventory mtu 9000); both ends must match")
    assert findings["spark-2"][0] == ("MTU mismatch on link 0: spark-2 enp1s0f0np0 has mtu 4200, spark-1 enp1s0f0np0 "
                                      "has mtu 1500 (inventory mtu 9000); both ends must match")
