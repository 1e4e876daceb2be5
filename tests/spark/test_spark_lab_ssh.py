"""spark.ssh on the lab: each lab node has its own /root and /etc/ssh, so these are real node-to-node logins."""

from __future__ import annotations

import pytest

from tests.spark.sparklab import by_node, fab

pytestmark = pytest.mark.lab

STRICT = "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=5"


@pytest.fixture(scope="module")
def three(make_lab):
    built = make_lab("ptssh", 3, index=202)
    status, _, _ = fab("link", built.inventory)
    assert status == 0
    return built


def test_nodes_start_without_trust(three):
    login = three.ssh("node1", f"{STRICT} root@198.19.0.2 true")
    assert login.returncode != 0


def test_ssh_sets_up_passwordless_logins_with_strict_host_keys(three):
    status, report, _ = fab("ssh", three.inventory)
    assert status == 0, report
    for row in report["nodes"]:
        assert row["status"] == "changed"
        assert "create ~/.ssh and an ed25519 key pair" in row["changes"]
        assert "logs in to 2 peer(s) on every link address (no password, strict host keys)" in row["messages"]
    # checked from outside the toolkit: node1 logs in to node3 over the second link and lands on node3
    login = three.ssh("node1", f"{STRICT} root@198.19.1.3 hostname")
    assert login.returncode == 0 and login.stdout.strip() == "node3"
    # the collected key is node3's real host key
    node3_key = (three.layout.etc_dir(three.node("node3")) / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert node3_key in three.ssh("node1", "cat ~/.ssh/known_hosts").stdout
    # strict checking stayed on: an address whose key was not collected (node1's own link address) is refused
    refused = three.ssh("node1", f"{STRICT} root@198.19.0.1 true")
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr


def test_second_run_changes_nothing(three):
    before = three.ssh("node2", "cat ~/.ssh/authorized_keys ~/.ssh/known_hosts").stdout
    status, report, _ = fab("ssh", three.inventory)
    assert status == 0 and all(r["changes"] == [] for r in report["nodes"])
    assert three.ssh("node2", "cat ~/.ssh/authorized_keys ~/.ssh/known_hosts").stdout == before


def test_a_stale_host_key_fails_the_check_and_is_replaced(three):
    # node1 remembers another key for node2's first link address (node2 "reinstalled")
    fake = "AAAAC3NzaC1lZDI1NTE5AAAAIGnQ3c0bqEuxGDNf8tdYlmBlYzOHKyQz7hK9mTqyPtYh"
    three.ssh("node1", f"ssh-keygen -R 198.19.0.2 >/dev/null 2>&1; echo '198.19.0.2 ssh-ed25519 {fake}' "
                       ">> ~/.ssh/known_hosts")
    status, report, _ = fab("ssh", three.inventory, "--verify-only")
    assert status == 1
    assert "cannot log in to node2 at 198.19.0.2" in " ".join(by_node(report)["node1"]["messages"])
    status, report, _ = fab("ssh", three.inventory)
    assert status == 0
    assert by_node(report)["node1"]["changes"] == ["known_hosts: node2 at 198.19.0.2 (replaced a stale key)"]
    assert fake not in three.ssh("node1", "cat ~/.ssh/known_hosts").stdout
