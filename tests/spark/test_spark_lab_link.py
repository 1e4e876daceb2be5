"""spark.link on the lab: real sshd hosts in network namespaces, real addresses, MTUs and don't-fragment pings."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from spark_cluster import lab as labmod

from tests.spark.sparklab import FAB, REPO, by_node, fab

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
        assert rows["node3"]["messages"][0].startswith("cannot connect to node3 (198.18.201.5:22): ")
        assert "check that the node is up and its sshd runs" in rows["node3"]["messages"][0]
        assert rows["node1"]["ok"] and rows["node1"]["changes"] == ["add 198.19.1.1/24 to enP2p1s0f0np0"]
        assert rows["node2"]["ok"] and rows["node2"]["status"] == "ok"
        # a healthy row says what it passed, not only whom it left out
        assert rows["node1"]["messages"] == ["mtu 9000; 8972-byte DF ping to 1 peer(s) x 2 link(s) ok; "
                                             "not probed: node3 (failed)"]
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


def test_a_frozen_sshd_is_named_with_what_to_check(three):
    pid = labmod.sshd_pid(three.layout, three.node("node3"))
    subprocess.run(["kill", "-STOP", str(pid)], check=True)  # accepts connections, never answers
    try:
        status, report, _ = fab("link", three.inventory, "--verify-only")
    finally:
        subprocess.run(["kill", "-CONT", str(pid)], check=True)
    assert status == 1
    message = by_node(report)["node3"]["messages"][0]
    # paramiko says "Error reading SSH protocol banner" or "No existing session", and nothing else
    assert message.startswith("cannot connect to node3 (198.18.201.5:22): SSH handshake failed (")
    assert "check that sshd on the node is not hung" in message
    assert by_node(report)["node1"]["ok"] and by_node(report)["node2"]["ok"]
    assert fab("link", three.inventory, "--verify-only")[0] == 0


def test_a_changed_host_key_is_refused_naming_the_node(three, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    changed = tmp_path / "known_hosts"
    lines = three.layout.known_hosts.read_text().splitlines()
    forged = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    changed.write_text("\n".join(f"{line.split()[0]} {forged}" if line.startswith("198.18.201.1 ") else line
                                 for line in lines) + "\n")
    status, report, _ = fab("link", three.with_inventory(tmp_path, known_hosts=str(changed)), "--verify-only")
    assert status == 1
    rows = by_node(report)
    assert rows["node1"]["messages"][0].startswith("host key of node1 (198.18.201.1:22) does not match known_hosts: "
                                                   "refusing to connect")
    assert rows["node2"]["ok"] and rows["node3"]["ok"]
    assert fab("link", three.inventory, "--verify-only")[0] == 0  # with the collected keys: converged


def test_a_pulled_cable_is_said_on_the_node_that_has_it(three):
    switch = three.layout.switch_namespace
    subprocess.run(["ip", "-n", switch, "link", "set", "p2l0", "down"], check=True)  # node2's first half unplugged
    try:
        status, report, _ = fab("link", three.inventory)
        assert status == 1
        rows = by_node(report)
        assert rows["node2"]["status"] == "FAILED"
        assert rows["node2"]["messages"][0].startswith("no carrier on enp1s0f0np0 (link 0): cable pulled")
        assert not any("don't-fragment path" in m for m in rows["node2"]["messages"])
        for name in ("node1", "node3"):  # their paths work: they pass, saying what they left out
            assert rows[name]["ok"] and rows[name]["changes"] == []
            assert rows[name]["messages"] == ["mtu 9000; 8972-byte DF ping to 2 peer(s) x 2 link(s) ok; "
                                              "not probed: node2 link 0 (down or no carrier at node2)"]
    finally:
        subprocess.run(["ip", "-n", switch, "link", "set", "p2l0", "up"], check=True)
    status, report, _ = fab("link", three.inventory)  # cable back: converged, nothing to change
    assert status == 0 and all(r["changes"] == [] for r in report["nodes"])


def test_an_interface_set_down_fails_the_check_and_a_run_brings_it_up(three):
    three.ip("node3", "ip", "link", "set", "dev", "enP2p1s0f0np0", "down")
    status, report, _ = fab("link", three.inventory, "--verify-only")
    assert status == 1
    rows = by_node(report)
    assert rows["node3"]["messages"][0] == "differs from the inventory: would bring enP2p1s0f0np0 up"
    assert rows["node1"]["ok"] and rows["node2"]["ok"]
    assert "not probed: node3 link 1 (down or no carrier at node3)" in rows["node1"]["messages"][0]
    status, report, _ = fab("link", three.inventory)
    assert status == 0 and by_node(report)["node3"]["changes"] == ["bring enP2p1s0f0np0 up"]
    assert "8972-byte DF ping to 2 peer(s) x 2 link(s) ok" in by_node(report)["node1"]["messages"][0]


def test_a_session_lost_mid_run_is_a_connection_failure_of_that_node(three):
    node2 = three.node("node2")
    three.ip("node1", "ip", "addr", "flush", "dev", "enp1s0f0np0")  # node2's pings to node1 then take 3 s
    run = subprocess.Popen([str(FAB), "spark.link", "--inventory", str(three.inventory), "--verify-only", "--json"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):  # bounded: 20 s
            pings = [p for p in three.pids("node2") if _comm(p) == "ping"]
            if pings or run.poll() is not None:
                break
            time.sleep(0.05)
        assert pings, "node2 never ran its jumbo pings"
        labmod.crash_node(three.layout, node2)  # sshd and every session on node2, by pid in its namespace
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=10)
        labmod.start_sshd(three.layout, node2)
        labmod.wait_for_port(node2.mgmt_address, 22)
    report = json.loads(out)
    messages = by_node(report)["node2"]["messages"]
    assert by_node(report)["node2"]["status"] == "FAILED"
    assert any(m.startswith("jumbo ping: SSH session to node2 (198.18.201.3:22) lost during") for m in messages)
    assert not any("don't-fragment path" in m for m in messages)  # not a network path failure
    status, report, _ = fab("link", three.inventory)  # the rerun converges (node1's address back too)
    assert status == 0 and by_node(report)["node1"]["changes"] == ["add 198.19.0.1/24 to enp1s0f0np0"]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""
