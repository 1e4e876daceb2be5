"""spark.ray / spark.down (and spark.doctor, spark.vllm's plan) on the lab: a real Ray cluster of 2 and of 4 nodes,
each raylet in its own network namespace on its link address; stopped by the pids of the recorded sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sparklab import by_node, fab

pytestmark = pytest.mark.lab

RAY = Path(sys.prefix) / "bin" / "ray"
API_KEY = "lab-api-key-7f3e"  # a test value; it must never show up in a plan or report


def ray_active_nodes(cluster, head="node1") -> subprocess.CompletedProcess:
    """`ray status` from the head's namespace with the head's token: what Ray itself says."""
    token = cluster.layout.node_dir(cluster.node(head)) / "root" / ".ray" / "auth_token"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    return subprocess.run(["ip", "netns", "exec", cluster.node(head).namespace, str(RAY), "status",
                           "--address", "198.19.0.1:6379"], capture_output=True, text=True, timeout=60, env=env)


def active_count(status_output: str) -> int:
    section = status_output.split("Active:", 1)[1].split("Pending:", 1)[0]
    return sum(1 for line in section.splitlines() if "node_" in line)


def only_sshd_left(cluster) -> bool:
    from spark_cluster.lab import sshd_pid

    return all(cluster.pids(n.name) == [sshd_pid(cluster.layout, n)] for n in cluster.nodes)


def form_and_end_cluster(cluster, size):
    assert fab("link", cluster.inventory)[0] == 0
    status, report, _ = fab("ray", cluster.inventory, "--wait-s", "90", timeout=300)
    assert status == 0, report
    rows = by_node(report)
    assert f"Ray head 198.19.0.1:6379: {size} node(s) alive" in rows["node1"]["messages"]
    for node in cluster.nodes:
        assert f"in the Ray cluster on {node.links[0][1].split('/')[0]}" in rows[node.name]["messages"]
        assert "install the Ray auth token (~/.ray/auth_token, mode 600)" in rows[node.name]["changes"]
        env = cluster.ssh(node.name, "cat /etc/nemotron-deploy/spark.env").stdout
        assert f"VLLM_HOST_IP={node.links[0][1].split('/')[0]}" in env and "NCCL_SOCKET_IFNAME=enp1s0f0np0" in env
    # Ray's own view (the autoscaler status refreshes every few seconds: a bounded wait)
    deadline = time.monotonic() + 30
    while True:
        status_out = ray_active_nodes(cluster)
        assert status_out.returncode == 0, status_out.stderr
        if active_count(status_out.stdout) == size or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert active_count(status_out.stdout) == size
    assert not only_sshd_left(cluster)
    return report


def end_cluster(cluster):
    status, report, _ = fab("down", cluster.inventory, "--grace-s", "3", timeout=120)
    assert status == 0, report
    assert all(any(c.startswith("stop ray: SIGTERM to") for c in r["changes"]) for r in report["nodes"])
    assert only_sshd_left(cluster)  # every Ray process is gone, by pid; sshd (not ours to stop) still runs
    assert all(not (cluster.layout.node_dir(n) / "root/.local/state/nemotron-deploy/ray.session").exists()
               for n in cluster.nodes)
    status, report, _ = fab("down", cluster.inventory)
    assert status == 0 and all(r["changes"] == [] for r in report["nodes"])


def test_ray_cluster_of_two(make_lab):
    two = make_lab("ptray2", 2, index=203)
    form_and_end_cluster(two, 2)
    # a second run changes nothing
    status, report, _ = fab("ray", two.inventory)
    assert status == 0 and all(r["changes"] == [] for r in report["nodes"])
    # Ray refuses a client without the cluster's token
    anonymous = subprocess.run(["ip", "netns", "exec", two.node("node1").namespace, str(RAY), "status", "--address",
                                "198.19.0.1:6379"], capture_output=True, text=True, timeout=60,
                               env={k: v for k, v in os.environ.items() if not k.startswith("RAY_")})
    assert anonymous.returncode != 0 and "InvalidAuthToken" in anonymous.stderr
    # spark.doctor: what the lab can check passes, what needs RDMA hardware fails and says so
    assert fab("ssh", two.inventory)[0] == 0
    status, report, _ = fab("doctor", two.inventory, timeout=300)
    assert status == 1
    lines = by_node(report)["node2"]["messages"]
    assert [line.split(":")[0] for line in lines] == ["link", "ssh", "roce", "nccl", "ray"]
    assert lines[0].startswith("link: ok") and lines[1].startswith("ssh: ok") and lines[4].startswith("ray: ok")
    assert lines[2] == ("roce: FAILED: ibdev2netdev not found: RoCE checks need a DGX Spark (or another host with "
                        "ConnectX RDMA)")
    # vLLM refuses a cluster the planner rejects, before touching a host
    status, report, stderr = fab("vllm", two.inventory, "--dry-run")
    assert status == 2 and report is None and "nodes: 2 is not valid" in stderr
    end_cluster(two)


def test_ray_cluster_of_four_and_the_vllm_plan(make_lab):
    four = make_lab("ptray4", 4, index=204)
    form_and_end_cluster(four, 4)
    four.ssh("node1", f"mkdir -p ~/.config/nemotron-deploy && umask 077 && "
                      f"echo {API_KEY} > ~/.config/nemotron-deploy/vllm-api-key")
    status, report, stderr = fab("vllm", four.inventory, "--dry-run")
    assert status == 0, (report, stderr)
    head = by_node(report)["node1"]
    assert head["changes"] == ["start vLLM (TP 4 x PP 1) on port 8000"]
    assert "planner: TP 4 x PP 1 + EP on 4 node(s) x 1 GPU(s)" in head["messages"]
    argv = next(c for c in head["commands"] if c.startswith("argv: "))
    for flag in ("--tensor-parallel-size 4", "--enable-expert-parallel", "--distributed-executor-backend ray",
                 "--kv-cache-dtype fp8"):
        assert flag in argv
    launch = head["commands"][0]
    assert "export RAY_ADDRESS=198.19.0.1:6379" in launch and "VLLM_USE_FLASHINFER_MOE_FP4=1" in launch
    assert 'VLLM_API_KEY="$(cat "$HOME"/.config/nemotron-deploy/vllm-api-key)"' in launch
    assert API_KEY not in json.dumps(report) and "--api-key" not in json.dumps(report)
    assert all(by_node(report)[n]["changes"] == [] for n in ("node2", "node3", "node4"))
    # a key file others can read is refused
    four.ssh("node1", "chmod 644 ~/.config/nemotron-deploy/vllm-api-key")
    status, report, _ = fab("vllm", four.inventory, "--dry-run")
    assert status == 1 and "has mode 644" in " ".join(by_node(report)["node1"]["messages"])
    end_cluster(four)
    # without Ray, vLLM is not started
    status, report, _ = fab("vllm", four.inventory, "--dry-run")
    assert status == 1 and "run spark.ray first" in " ".join(by_node(report)["node3"]["messages"])
