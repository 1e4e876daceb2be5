"""Parsers and verdicts on recorded outputs of the real tools (the lab has no RDMA devices and no GPUs):
ibdev2netdev, show_gids, ib_write_bw, all_gather_perf; plus the session, known_hosts and Ray membership rules."""

from __future__ import annotations

import subprocess

import paramiko
import pytest
from spark_cluster import clusterenv, nccl, raycluster, remote, roce, session, sshtrust, step
from spark_cluster.inventory import parse_inventory

from tests.spark.sparklab import GOOD, data

INV = parse_inventory(GOOD)


# ---- RoCE ------------------------------------------------------------------------------------------------------

def test_ibdev2netdev_maps_both_halves_of_the_port():
    ports = roce.parse_ibdev2netdev(data("ibdev2netdev.healthy.txt"))
    assert len(ports) == 4
    found, problems = roce.rdma_devices_for(INV.head, ports)
    assert problems == []
    assert {iface: p.device for iface, p in found.items()} == {"enp1s0f0np0": "rocep1s0f0",
                                                              "enP2p1s0f0np0": "roceP2p1s0f0"}


def test_ibdev2netdev_half_down_is_named():
    _, problems = roce.rdma_devices_for(INV.head, roce.parse_ibdev2netdev(data("ibdev2netdev.half-down.txt")))
    assert problems == ["roceP2p1s0f0 port 1 (enP2p1s0f0np0) is Down"]


def test_ibdev2netdev_without_the_link_interface():
    _, problems = roce.rdma_devices_for(INV.head, [])
    assert problems == ["no RoCE device for enp1s0f0np0 in ibdev2netdev",
                        "no RoCE device for enP2p1s0f0np0 in ibdev2netdev"]


def test_gid_index_is_looked_up_not_assumed():
    healthy = roce.parse_show_gids(data("show_gids.healthy.txt"))
    assert len(healthy) == 8
    assert roce.gid_index(healthy, "rocep1s0f0", 1, "192.168.100.10") == 3
    assert roce.gid_index(healthy, "roceP2p1s0f0", 1, "192.168.101.10") == 3
    shifted = roce.parse_show_gids(data("show_gids.shifted.txt"))
    assert roce.gid_index(shifted, "rocep1s0f0", 1, "192.168.100.10") == 5
    assert roce.gid_index(healthy, "rocep1s0f0", 1, "192.168.100.99") is None


def test_ib_write_bw_parses_the_average():
    healthy = roce.parse_ib_write_bw(data("ib_write_bw.healthy.txt"))
    assert healthy == roce.BandwidthResult(65536, 96.62, 96.58)
    assert roce.parse_ib_write_bw(data("ib_write_bw.degraded.txt")).average_gbps == 12.31
    assert roce.parse_ib_write_bw("Couldn't connect to 192.168.100.10:12000") is None
    with pytest.raises(ValueError, match="--report_gbits"):
        roce.parse_ib_write_bw(data("ib_write_bw.mbytes.txt"))


def test_a_healthy_port_passes_the_175_gate():
    half = roce.parse_ib_write_bw(data("ib_write_bw.healthy.txt"))
    assert roce.judge_port("spark-2 -> spark-1", {"enp1s0f0np0": half, "enP2p1s0f0np0": half}) == []


def test_a_degraded_half_is_named_with_the_remedy_and_fails_the_gate():
    healthy = roce.parse_ib_write_bw(data("ib_write_bw.healthy.txt"))
    degraded = roce.parse_ib_write_bw(data("ib_write_bw.degraded.txt"))
    findings = roce.judge_port("spark-2 -> spark-1", {"enp1s0f0np0": healthy, "enP2p1s0f0np0": degraded})
    assert findings[0].startswith("spark-2 -> spark-1 enP2p1s0f0np0: 12.3 Gb/s: degraded ConnectX-7 link")
    assert "firmware" in findings[0] and "power-cycle" in findings[0]
    assert findings[1] == ("spark-2 -> spark-1: 108.9 Gb/s over 2 half(s), below the 175 Gb/s gate per port "
                           "(~190 healthy)")


def test_one_half_alone_cannot_pass_the_port_gate():
    half = roce.parse_ib_write_bw(data("ib_write_bw.healthy.txt"))
    assert "below the 175 Gb/s gate" in roce.judge_port("a -> b", {"enp1s0f0np0": half, "enP2p1s0f0np0": None})[-1]


def test_bandwidth_runs_cover_every_pair_and_half_on_distinct_ports():
    runs = roce.bandwidth_runs(INV)
    assert [(r.server, r.client, r.link_index) for r in runs] == [("spark-1", "spark-2", 0),
                                                                  ("spark-1", "spark-2", 1)]
    assert len({r.tcp_port for r in runs}) == len(runs)
    four = parse_inventory({**GOOD, "nodes": [
        {"name": f"s{i}", "host": f"10.0.0.{i}",
         "links": [{"interface": "enp1s0f0np0", "address": f"192.168.100.{i}/24"}]} for i in range(1, 5)]})
    assert roce.bandwidth_pairs(four) == [("s1", "s2"), ("s2", "s3"), ("s3", "s4"), ("s4", "s1")]
    assert roce.client_command("rocep1s0f0", 3, 12000, "192.168.100.10").endswith(
        "ib_write_bw -d rocep1s0f0 -i 1 -x 3 -p 12000 -F --report_gbits 192.168.100.10")


def test_client_runs_split_back_by_key():
    text = "### run spark-1.0 rc=0\n" + data("ib_write_bw.healthy.txt") + "### run spark-1.1 rc=1\nfailed\n"
    runs = roce.split_runs(text)
    assert runs["spark-1.1"] == (1, "failed")
    assert roce.parse_ib_write_bw(runs["spark-1.0"][1]).average_gbps == 96.58


# ---- NCCL ------------------------------------------------------------------------------------------------------

def test_all_gather_healthy_passes():
    result = nccl.parse_all_gather(data("all_gather_perf.healthy.txt"))
    assert len(result.rows) == 4 and result.rows[-1].size_bytes == 4 * 2**30
    assert result.average_busbw == pytest.approx(22.1338) and result.transport == "IB"
    assert nccl.judge_all_gather(result) == []


def test_all_gather_socket_fallback_fails_with_the_reason():
    findings = nccl.judge_all_gather(nccl.parse_all_gather(data("all_gather_perf.socket-fallback.txt")))
    assert any("NET/Socket" in f for f in findings)
    assert any("3.0 GB/s" in f and "both halves" in f for f in findings)


def test_all_gather_wrong_values_fail():
    findings = nccl.judge_all_gather(nccl.parse_all_gather(data("all_gather_perf.wrong.txt")))
    assert findings == ["all_gather_perf found 12 wrong value(s): data corruption on the link"]
    assert nccl.judge_all_gather(nccl.parse_all_gather("mpirun: command not found")) != []


def test_mpirun_uses_safe_sizes_link_addresses_and_forwards_the_env():
    command = nccl.mpirun_command(INV, ["NCCL_SOCKET_IFNAME", "NCCL_IB_HCA"])
    assert command.startswith("set -a && . /etc/nemotron-deploy/spark.env && set +a && timeout -k 10 870 mpirun -np 2 "
                              "-H 192.168.100.10:1,192.168.100.11:1 ")
    assert "-x NCCL_DEBUG=INFO -x NCCL_SOCKET_IFNAME -x NCCL_IB_HCA" in command
    assert command.endswith('"$HOME"/nccl-tests/build/all_gather_perf -b 512M -e 4G -f 2 -g 1')
    assert "--allow-run-as-root" not in command and "16G" not in command


def test_env_file_lists_both_roce_halves_and_the_link_interface():
    env = clusterenv.cluster_env(INV, INV.head, ("rocep1s0f0", "roceP2p1s0f0"))
    assert env["NCCL_IB_HCA"] == "rocep1s0f0,roceP2p1s0f0"
    for name in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "UCX_NET_DEVICES",
                 "OMPI_MCA_btl_tcp_if_include"):
        assert env[name] == "enp1s0f0np0"
    assert env["VLLM_HOST_IP"] == "192.168.100.10" and env["RAY_AUTH_MODE"] == "token"
    assert "NCCL_IB_SUBNET_AWARE_ROUTING" not in env
    assert "NCCL_IB_HCA" not in clusterenv.cluster_env(INV, INV.head, None)
    rendered = clusterenv.render_env(INV, env)
    assert clusterenv.parse_env(rendered) == env
    assert clusterenv.plan_env(INV, env, rendered) == ()
    assert clusterenv.plan_env(INV, env, None)[0].summary == "write /etc/nemotron-deploy/spark.env"


def test_three_nodes_get_subnet_aware_routing():
    three = parse_inventory({**GOOD, "nodes": GOOD["nodes"] + [
        {"name": "spark-3", "host": "10.0.0.3",
         "links": [{"interface": "enp1s0f0np0", "address": "192.168.100.12/24"},
                   {"interface": "enP2p1s0f0np0", "address": "192.168.101.12/24"}]}]})
    env = clusterenv.cluster_env(three, three.head, ("rocep1s0f0", "roceP2p1s0f0"))
    assert env["NCCL_IB_SUBNET_AWARE_ROUTING"] == "1" and env["NCCL_NET_PLUGIN"] == "none"


# ---- sessions (what spark.down stops) ---------------------------------------------------------------------------

SESSION_FACTS = """### boot-id
0b7c2f3e-1111-2222-3333-444455556666
### record ray
sid=4100
boot_id=0b7c2f3e-1111-2222-3333-444455556666
role=head
node_ip=198.19.0.1
### record vllm
sid=5200
boot_id=an-earlier-boot
### processes
      1       1 Ss
   4100    4100 Ss
   4101    4100 Sl
   4102    4100 Z
   4103    4000 Sl
   5200    5200 Sl
"""


def test_session_facts_find_the_recorded_pids_only():
    facts = session.parse_facts(SESSION_FACTS)
    assert facts["ray"].live_pids == (4100, 4101)  # zombie 4102 and other session 4103 left out
    assert facts["ray"].record.settings == {"role": "head", "node_ip": "198.19.0.1"}
    assert facts["vllm"].live_pids == ()  # recorded in another boot: session ids are reused after a reboot
    steps = session.plan_signal(facts["ray"])
    assert [s.command for s in steps] == ["kill -TERM 4100 4101 2>/dev/null; true"]
    assert session.plan_signal(facts["vllm"]) == ()
    assert [s.command for s in session.plan_forget(facts["vllm"], "~/.local/state/nemotron-deploy")] == \
        ['rm -f "$HOME"/.local/state/nemotron-deploy/vllm.session']


def test_launch_records_the_session_before_it_execs():
    command = session.launch_command("~/st", "ray", {"role": "head"}, "ray start --head", "/etc/x.env")
    assert command.startswith('mkdir -p "$HOME"/st && chmod 700 "$HOME"/st || exit 1; '
                              'if [ -f /etc/x.env ]; then set -a')
    assert "setsid -w sh -c" in command and "exec ray start --head" in command


def test_launch_really_records_the_session_leader(tmp_path):
    state = str(tmp_path / "state")
    command = session.launch_command(state, "demo", {"role": "test"}, "sleep 0")
    subprocess.run(["sh", "-c", command], check=True)
    record = session.parse_record((tmp_path / "state" / "demo.session").read_text().splitlines())
    assert record.settings == {"role": "test"} and record.sid > 1
    assert record.boot_id == open(session.BOOT_ID).read().strip()


# ---- known_hosts and Ray membership -----------------------------------------------------------------------------

def test_known_hosts_matching_understands_hashed_entries(tmp_path):
    key = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIGnQ3c0bqEuxGDNf8tdYlmBlYzOHKyQz7hK9mTqyPtYh")
    known = tmp_path / "known_hosts"
    known.write_text(f"198.19.0.2 {key[0]} {key[1]}\n[198.19.1.2]:2222 {key[0]} {key[1]}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)  # the real hashing
    lines = tuple(known.read_text().splitlines())
    assert all(line.startswith("|1|") for line in lines)
    assert sshtrust.known_keys(lines, "198.19.0.2") == {key}
    assert sshtrust.known_keys(lines, "[198.19.1.2]:2222") == {key}
    assert sshtrust.known_keys(lines, "198.19.1.2") == set()
    assert sshtrust.known_keys(("198.19.*,!198.19.0.9 ssh-rsa AAAA",), "198.19.0.9") == set()


def test_trust_plan_adds_missing_keys_and_replaces_stale_host_keys():
    a_key = sshtrust.PublicKey("ssh-ed25519", "AAAA-user-1", "nvidia@spark-1")
    b_key = sshtrust.PublicKey("ssh-ed25519", "AAAA-user-2", "nvidia@spark-2")
    b_host = sshtrust.PublicKey("ssh-ed25519", "AAAA-host-2")
    facts = {
        "spark-1": sshtrust.SshFacts(a_key, (sshtrust.PublicKey("ssh-ed25519", "AAAA-host-1"),), (a_key,),
                                     ("192.168.100.11 ssh-ed25519 AAAA-old-host-2",)),
        "spark-2": sshtrust.SshFacts(b_key, (b_host,), (), ()),
    }
    steps = sshtrust.plan_trust(INV, INV.head, facts)
    assert [s.summary for s in steps] == ["authorize spark-2's key (ssh-ed25519)",
                                          "known_hosts: spark-2 at 192.168.100.11 (replaced a stale key)",
                                          "known_hosts: spark-2 at 192.168.101.11"]
    assert "ssh-keygen -q -R 192.168.100.11" in steps[1].command
    assert all(not s.privileged for s in steps)
    done = {**facts, "spark-1": sshtrust.SshFacts(a_key, facts["spark-1"].host_keys, (a_key, b_key), (
        "192.168.100.11 ssh-ed25519 AAAA-host-2", "192.168.101.11 ssh-ed25519 AAAA-host-2"))}
    assert sshtrust.plan_trust(INV, INV.head, done) == ()


def test_login_probe_keeps_strict_host_key_checking():
    script = sshtrust.login_probe_script(INV, sshtrust.login_targets(INV.head, list(INV.nodes)))
    assert "-o StrictHostKeyChecking=yes" in script and "-o BatchMode=yes" in script
    assert script.count("StrictHostKeyChecking") == 1  # set once, to yes
    out = "LOGIN\t192.168.100.11\t0\t\nLOGIN\t192.168.101.11\t255\tHost key verification failed.\n"
    assert sshtrust.login_findings(sshtrust.login_targets(INV.head, list(INV.nodes)), out) == [
        "cannot log in to spark-2 at 192.168.101.11 (strict host keys, no password): Host key verification failed."]


def test_ray_membership_names_missing_nodes_and_wrong_interfaces():
    reported = [{"ip": "192.168.100.10", "alive": True}, {"ip": "10.0.0.2", "alive": True}]
    findings = raycluster.membership_findings(INV, list(INV.nodes), reported)
    assert findings["spark-2"] == ["not in the Ray cluster on 192.168.100.11 (head 192.168.100.10:6379 sees "
                                   "10.0.0.2, 192.168.100.10)"]
    assert findings["spark-1"] == ["Ray nodes on addresses outside the inventory's links: 10.0.0.2 (wrong interface?)"]


def test_ray_start_binds_the_link_address_and_restarts_workers_with_the_head():
    head = raycluster.start_argv(INV, INV.head)
    assert head[:3] == ["ray", "start", "--head"] and "--node-ip-address=192.168.100.10" in head
    worker = raycluster.start_argv(INV, INV.node("spark-2"))
    assert "--address=192.168.100.10:6379" in worker and "--include-dashboard=false" not in worker
    running = {n.name: session.SessionFacts("ray", session.SessionRecord(1, "b", raycluster.start_settings(
        INV, n, "digest")), "b", (1,)) for n in INV.nodes}
    alive = {"192.168.100.10", "192.168.100.11"}
    assert raycluster.plan_ray(INV, running, "digest", alive) == raycluster.RayPlan({}, ())
    head_changed = {**running, "spark-1": session.SessionFacts("ray", None, "b", ())}
    plan = raycluster.plan_ray(INV, head_changed, "digest", alive)
    assert plan.start == ("spark-1", "spark-2") and list(plan.stop) == ["spark-2"]
    assert raycluster.plan_ray(INV, running, "another-token", alive).start == ("spark-1", "spark-2")


def test_ray_health_not_pids_decides_a_restart():
    running = {n.name: session.SessionFacts("ray", session.SessionRecord(1, "b", raycluster.start_settings(
        INV, n, "digest")), "b", (1,)) for n in INV.nodes}
    # the head's GCS died: its session still has live pids, but the cluster does not answer
    plan = raycluster.plan_ray(INV, running, "digest", None)
    assert plan.start == ("spark-1", "spark-2") and list(plan.stop) == ["spark-1", "spark-2"]
    # a worker whose raylet is gone from the cluster restarts alone
    plan = raycluster.plan_ray(INV, running, "digest", {"192.168.100.10"})
    assert plan.start == ("spark-2",) and list(plan.stop) == ["spark-2"]
    assert raycluster.alive_addresses(None) is None
    assert raycluster.alive_addresses([{"ip": "a", "alive": True}, {"ip": "b", "alive": False}]) == {"a"}


def test_cluster_checks_are_bounded_on_the_head_and_recorded_for_spark_down():
    script = raycluster.nodes_script(INV, 2, 5)
    assert f"exec timeout -k {raycluster.CHECK_KILL_S} {5 + raycluster.CHECK_CONNECT_S} python3 -c" in script
    assert "ray-check.session" in script and "setsid -w" in script
    assert raycluster.check_bound_s(5) > 5 + raycluster.CHECK_CONNECT_S + raycluster.CHECK_KILL_S


def test_the_clients_script_collects_every_client_when_run(tmp_path):
    """The script runs for real: each client's result comes back under its key (not `cat /*`)."""
    script = roce.clients_script([("spark-2.0", "echo first half"), ("spark-2.1", "echo second half; false")])
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}).stdout
    assert roce.split_runs(out) == {"spark-2.0": (0, "first half"), "spark-2.1": (1, "second half")}
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone


class FakeResult:
    def __init__(self, exited, stdout=""):
        self.exited, self.stdout, self.stderr = exited, stdout, ""


class FakeConnection:
    host, port, node_name = "198.18.9.3", 22, "spark-2"

    def __init__(self, result=None, error=None):
        self.result, self.error = result, error

    def run(self, command, **kwargs):
        if self.error:
            raise self.error
        return self.result


def test_a_lost_session_is_a_connection_failure_even_unchecked():
    lost = FakeConnection(FakeResult(-1, "PROBE\tenp1s0f0np0\t192.168.100.10\t1\t"))
    with pytest.raises(remote.SessionLost) as caught:
        remote.run(lost, "ping ...", check=False)
    assert str(caught.value).startswith("SSH session to spark-2 (198.18.9.3:22) lost during `ping ...`")
    assert "check that the node is up and its sshd runs" in str(caught.value)


@pytest.mark.parametrize("error", [paramiko.SSHException("No existing session"),
                                   paramiko.SSHException("Error reading SSH protocol banner[Errno 104] reset"),
                                   EOFError(), ConnectionResetError(104, "Connection reset by peer")])
def test_every_connection_error_names_the_node_host_port_and_what_to_check(error):
    with pytest.raises(remote.NodeError) as caught:
        remote.run(FakeConnection(error=error), "true")
    message = str(caught.value)
    assert "spark-2 (198.18.9.3:22)" in message and "check that" in message


def test_a_batch_of_steps_stops_at_the_first_failure_and_reports_each():
    script = step.batch_script(["echo one", "echo two; echo oops >&2; exit 3", "echo never"])
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert step.parse_batch(out) == [(0, 0, "one"), (1, 3, "two\noops")]
