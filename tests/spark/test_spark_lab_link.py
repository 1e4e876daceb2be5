"""spark.link on the lab: real sshd hosts in network namespaces, real addresses, MTUs and don't-fragment pings."""

from __future__ import annotations

import subprocess

import pytest
from spark_cluster import lab as labmod
from sparklab import FAB, REPO, by_node, fab

pytestmark = pytest.mark.lab

MTU = 9000
LINKS = ("enp1s0f0np0", "enP2p1s0f0np0")


@pytest.fixture(scope="module")
def three(make_lab):
    return make_lab("ptlink", 3, index=201)


def test_dry_run_plans_and_changes_nothing(three):
    status, report, _ = fab("link", three.inventory, "--dry-run")
    assert status == 0
    for node in three.nodes:
        row = by_node(report)[node.name]
        assert row["status"] == "would change"
        assert f"set mtu {MTU} on enp1s0f0np0 (was 1500)" in row["changes"]
        assert any(c.startswith("ip addr add ") for c in row["commands"])
        state = three.link_state(node.name)
        assert all(state[i]["mtu"] == 1500 and state[i]["ipv4"] == [] for i in LINKS)


def test_link_sets_addresses_and_mtu_and_the_jumbo_ping_passes(three):
    status, report, _ = fab("link", three.inventory)
    assert status == 0, report
    for node in three.nodes:
        row = by_node(report)[node.name]
        assert row["status"] == "changed" and row["ok"]
        assert "8972-byte DF ping to 2 peer(s) x 2 link(s) ok" in " ".join(row["messages"])
        state = three.link_state(node.name)  # looked at from outside the toolkit
        for iface, address in node.links:
            assert state[iface] == {"mtu": MTU, "up": True, "ipv4": [address]}
    # and the path really carries 9000-byte frames, unfragmented, both ways
    ping = three.ip("node1", "ping", "-n", "-M", "do", "-s", str(MTU - 28), "-c", "1", "-W", "2", "198.19.1.3")
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_second_run_changes_nothing(three):
    before = {n.name: three.link_state(n.name) for n in three.nodes}
    status, report, _ = fab("link", three.inventory)
    assert status == 0
    assert [r["status"] for r in report["nodes"]] == ["ok", "ok", "ok"]
    assert all(r["changes"] == [] for r in report["nodes"])
    assert {n.name: three.link_state(n.name) for n in three.nodes} == before


def test_one_node_left_at_mtu_1500_fails_the_check_naming_it(three):
    three.ip("node2", "ip", "link", "set", "dev", "enp1s0f0np0", "mtu", "1500")  # an MTU reset behind our back
    status, report, _ = fab("link", three.inventory, "--verify-only")
    assert status == 1
    rows = by_node(report)
    node2 = " ".join(rows["node2"]["messages"])
    assert rows["node2"]["status"] == "FAILED"
    assert "node2 enp1s0f0np0 has mtu 1500" in node2 and "node1 enp1s0f0np0 has mtu 9000" in node2
    assert "message too long, mtu=1500" in node2  # node2's own jumbo ping cannot leave
    assert "no 8972-byte don't-fragment path to node2 198.19.0.2" in " ".join(rows["node1"]["messages"])
    assert three.link_state("node2")["enp1s0f0np0"]["mtu"] == 1500  # verify-only changed nothing
    # the table a person reads says the same
    table = subprocess.run([str(FAB), "spark.link", "--inventory", str(three.inventory), "--verify-only"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 1 and "FAILED" in table.stdout and "has mtu 1500" in table.stdout
    # a normal run repairs the drift
    status, report, _ = fab("link", three.inventory)
    assert status == 0 and by_node(report)["node2"]["changes"] == ["set mtu 9000 on enp1s0f0np0 (was 1500)"]


def test_a_node_whose_sshd_is_down_fails_while_the_others_converge(three):
    node3 = three.node("node3")
    labmod.stop_sshd(three.layout, node3)
    three.ip("node1", "ip", "addr", "flush", "dev", "enP2p1s0f0np0")
    try:
        status, report, _ = fab("link", three.inventory)
        assert status == 1
        rows = by_node(report)
        assert rows["node3"]["status"] == "FAILED"
        assert "cannot connect to 198.18.201.5:22" in rows["node3"]["messages"][0]
        assert rows["node1"]["ok"] and rows["node1"]["changes"] == ["add 198.19.1.1/24 to enP2p1s0f0np0"]
        assert rows["node2"]["ok"] and rows["node2"]["status"] == "ok"
        assert "not probed (failed): node3" in rows["node1"]["messages"]
        assert three.link_state("node1")["enP2p1s0f0np0"]["ipv4"] == ["198.19.1.1/24"]
    finally:
        labmod.start_sshd(three.layout, node3)
        labmod.wait_for_port(node3.mgmt_address, 22)
    status, _, _ = fab("link", three.inventory, "--verify-only")
    assert status == 0


def test_an_unknown_host_key_is_refused(three, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    status, report, _ = fab("link", three.with_inventory(tmp_path, known_hosts=str(empty)), "--verify-only")
    assert status == 1
    assert all("not in known_hosts: refusing to connect" in r["messages"][0] for r in report["nodes"])


def test_netplan_backend_plans_per_node_files_without_writing_them(three, tmp_path):
    status, report, _ = fab("link", three.with_inventory(tmp_path, network_backend="netplan"), "--dry-run")
    assert status == 0
    for node in three.nodes:
        # links are converged at runtime, but no netplan file persists them yet
        assert by_node(report)[node.name]["changes"] == [
            "validate with netplan generate (scratch copy of /etc/netplan)",
            "write /etc/netplan/40-cx7.yaml (mode 600)", "netplan apply"]
        assert list((three.layout.etc_dir(node) / "netplan").iterdir()) == []  # the node's own /etc/netplan
