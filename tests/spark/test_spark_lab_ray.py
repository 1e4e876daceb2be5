"""spark.ray / spark.down (and spark.doctor, spark.vllm's plan) on the lab: a real Ray cluster of 2 and of 4 nodes,
each raylet in its own network namespace on its link address; stopped by the pids of the recorded sessions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.spark.sparklab import FAB, REPO, by_node, fab

pytestmark = pytest.mark.lab

RAY = Path(sys.prefix) / "bin" / "ray"
API_KEY = "lab-api-key-7f3e"  # a test value; it must never show up in a plan or report
# A stand-in for `vllm serve` (the lab has no GPU): it records what it was started with and answers every path,
# checking the bearer key itself only under /v1 as vLLM does; like vLLM it imports the `--middleware` function from
# its PYTHONPATH and runs each request through it (a one-line starlette stand-in), so the launch, the API check and
# the key on every other path run for real.
FAKE_VLLM = f"""#!{sys.executable}
import asyncio, http.server, importlib, json, os, sys, types
key = os.environ.get("VLLM_API_KEY", "")
with open(os.path.expanduser("~/.config/nemotron-deploy/vllm-api-key")) as f:
    on_disk = f.read().strip()
responses = types.ModuleType("starlette.responses")
responses.JSONResponse = lambda content, status_code: status_code
sys.modules.update({{"starlette": types.ModuleType("starlette"), "starlette.responses": responses}})
module, _, function = sys.argv[sys.argv.index("--middleware") + 1].rpartition(".")
middleware = getattr(importlib.import_module(module), function)
names = ("RAY_ADDRESS", "VLLM_HOST_IP", "NCCL_SOCKET_IFNAME", "VLLM_USE_FLASHINFER_MOE_FP4", "RAY_AUTH_MODE")
with open("/root/fake-vllm.json", "w") as f:
    json.dump({{"argv": sys.argv[1:], "key_matches_file": bool(key) and key == on_disk,
               "env": {{n: os.environ.get(n) for n in names}}, "middleware": sys.modules[module].__file__}}, f)
port = int(sys.argv[sys.argv.index("--port") + 1])
class Api(http.server.BaseHTTPRequestHandler):
    def answer(self):
        v1_key_ok = not self.path.startswith("/v1") or self.headers.get("Authorization") == "Bearer " + key
        request = types.SimpleNamespace(method=self.command, url=types.SimpleNamespace(path=self.path),
                                        headers={{k.lower(): v for k, v in self.headers.items()}})
        async def app(request):
            return 200 if v1_key_ok else 401
        self.send_response(asyncio.run(middleware(request, app)))
        self.end_headers()
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Api).serve_forever()
"""


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


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_gcs(cluster) -> None:
    """SIGKILL the head's GCS server, found among the pids of the head's namespace."""
    gcs = [p for p in cluster.pids("node1") if "/gcs_server " in cmdline(p)]
    assert len(gcs) == 1, gcs
    os.kill(gcs[0], signal.SIGKILL)


def ray_checks(cluster) -> list[int]:
    """Cluster checks (`python -c ... ray.init(...)`) running on the head."""
    return [p for p in cluster.pids("node1") if "ray.init(" in cmdline(p)]


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


def end_cluster(cluster, vllm_on_head=False):
    status, report, _ = fab("down", cluster.inventory, "--grace-s", "3", timeout=120)
    assert status == 0, report
    assert all(any(c.startswith("stop ray: SIGTERM to") for c in r["changes"]) for r in report["nodes"])
    assert any(c.startswith("stop vllm: SIGTERM") for c in by_node(report)["node1"]["changes"]) == vllm_on_head
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
    # spark.doctor: what the lab can check passes; what needs RDMA hardware does not apply here, and says so
    assert fab("ssh", two.inventory)[0] == 0
    status, report, _ = fab("doctor", two.inventory, timeout=300)
    assert status == 0, report
    lines = by_node(report)["node2"]["messages"]
    assert [line.split(":")[0] for line in lines] == ["link", "ssh", "roce", "nccl", "ray"]
    assert lines[0].startswith("link: ok") and lines[1].startswith("ssh: ok") and lines[4].startswith("ray: ok")
    assert lines[2].startswith("roce: not applicable here: no RDMA tools on this host")
    # vLLM refuses a cluster the planner rejects, before touching a host
    status, report, stderr = fab("vllm", two.inventory, "--dry-run")
    assert status == 2 and report is None and "nodes: 2 is not valid" in stderr
    # the head's GCS dies; Ray's other processes keep the recorded session alive, but the cluster does not answer
    kill_gcs(two)
    status, report, _ = fab("ray", two.inventory, "--verify-only", "--wait-s", "5", timeout=120)
    assert status == 1
    assert "the Ray cluster at 198.19.0.1:6379 does not answer" in " ".join(by_node(report)["node1"]["messages"])
    assert ray_checks(two) == []  # the check ended on the head too, bounded there
    # a rerun restarts what is unhealthy: the head (its recorded pids stopped first), and the workers with it
    status, report, _ = fab("ray", two.inventory, "--wait-s", "90", "--grace-s", "3", timeout=300)
    assert status == 0, report
    rows = by_node(report)
    for name, what in (("node1", "head on 198.19.0.1"), ("node2", "worker on 198.19.0.2")):
        assert rows[name]["changes"][0].startswith("stop ray: SIGTERM to")
        assert f"start Ray {what}" in rows[name]["changes"]
    assert "Ray head 198.19.0.1:6379: 2 node(s) alive" in rows["node1"]["messages"]
    status, report, _ = fab("ray", two.inventory)  # converged
    assert status == 0 and all(r["changes"] == [] for r in report["nodes"])
    # a check hanging on a dead head is stopped by spark.down with the rest
    kill_gcs(two)
    check = subprocess.Popen([str(FAB), "spark.ray", "--inventory", str(two.inventory), "--verify-only", "--json"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # bounded: 15 s
            if ray_checks(two) or check.poll() is not None:
                break
            time.sleep(0.05)
        assert ray_checks(two), "no Ray check ran on the head"
        status, report, _ = fab("down", two.inventory, "--grace-s", "3", timeout=120)
        assert status == 0, report
        assert any(c.startswith("stop ray-check: SIGTERM to") for c in by_node(report)["node1"]["changes"])
        assert only_sshd_left(two)
    finally:
        check.wait(timeout=60)


def test_ray_cluster_of_four_and_vllm_on_it(make_lab, tmp_path):
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
                 "--kv-cache-dtype fp8", "--moe-backend flashinfer_cutlass"):  # GB10: CUTLASS FP4 MoE kernels
        assert flag in argv
    launch = head["commands"][0]
    assert "export RAY_ADDRESS=198.19.0.1:6379" in launch and "VLLM_USE_FLASHINFER_MOE_FP4" not in launch
    assert "VLLM_API_KEY is unset or empty" in launch  # the guard after the key is read
    assert 'VLLM_API_KEY="$(cat "$HOME"/.config/nemotron-deploy/vllm-api-key)"' in launch
    assert API_KEY not in json.dumps(report) and "--api-key" not in json.dumps(report)
    assert all(by_node(report)[n]["changes"] == [] for n in ("node2", "node3", "node4"))
    # a key file others can read is refused
    four.ssh("node1", "chmod 644 ~/.config/nemotron-deploy/vllm-api-key")
    status, report, _ = fab("vllm", four.inventory, "--dry-run")
    assert status == 1 and "has mode 644" in " ".join(by_node(report)["node1"]["messages"])
    # a key file of white space only would start vLLM with no key: refused before anything starts
    four.ssh("node1", "cp ~/.config/nemotron-deploy/vllm-api-key /root/key.bak && "
                      "printf '\\n' > ~/.config/nemotron-deploy/vllm-api-key")
    status, report, _ = fab("vllm", four.inventory, "--dry-run")
    assert status == 1 and "holds no key" in " ".join(by_node(report)["node1"]["messages"])
    four.ssh("node1", "mv /root/key.bak ~/.config/nemotron-deploy/vllm-api-key")
    four.ssh("node1", "chmod 600 ~/.config/nemotron-deploy/vllm-api-key")
    # a vLLM that cannot start is reported, with the end of its log
    status, report, _ = fab("vllm", four.with_inventory(tmp_path, vllm={"bin": "/root/no-such-vllm"}), timeout=180)
    messages = " ".join(by_node(report)["node1"]["messages"])
    assert status == 1 and "vLLM exited right after the start" in messages and "no-such-vllm: not found" in messages
    # the real launch, with a stand-in vLLM: the key reaches it from the file, never through argv
    four.ssh("node1", f"cat > /root/fake-vllm <<'EOF'\n{FAKE_VLLM}EOF\nchmod 755 /root/fake-vllm")
    fake = four.with_inventory(tmp_path, vllm={"bin": "/root/fake-vllm"})
    status, report, _ = fab("vllm", fake, "--wait-s", "30", timeout=180)
    assert status == 0, report
    assert "API ready; requests without the key are refused" in by_node(report)["node1"]["messages"]
    seen = json.loads(four.ssh("node1", "cat /root/fake-vllm.json").stdout)
    assert seen["key_matches_file"] and API_KEY not in " ".join(seen["argv"])
    assert seen["argv"][seen["argv"].index("--tensor-parallel-size") + 1] == "4"
    assert seen["env"] == {"RAY_ADDRESS": "198.19.0.1:6379", "VLLM_HOST_IP": "198.19.0.1",
                           "NCCL_SOCKET_IFNAME": "enp1s0f0np0", "VLLM_USE_FLASHINFER_MOE_FP4": None,
                           "RAY_AUTH_MODE": "token"}
    assert API_KEY not in four.ssh("node1", "ps -eo args").stdout and API_KEY not in json.dumps(report)
    # the planner's middleware, written by the task (mode 644) and loaded through PYTHONPATH, puts the key on every
    # path: vLLM's own check covers /v1 only (vllm#58144)
    modules = "/root/.local/state/nemotron-deploy/python"
    assert seen["argv"][-2:] == ["--middleware", "nemotron_auth.require_api_key"]
    assert seen["middleware"] == f"{modules}/nemotron_auth.py"
    assert four.ssh("node1", f"stat -c %a {modules}/nemotron_auth.py").stdout.strip() == "644"
    curl = "curl -s -o /dev/null -w '%{http_code} ' --max-time 5"
    key = '-H "Authorization: Bearer $(cat ~/.config/nemotron-deploy/vllm-api-key)"'
    codes = four.ssh("node1", f"{curl} -X POST 127.0.0.1:8000/invocations; {curl} 127.0.0.1:8000/metrics; "
                              f"{curl} {key} -X POST 127.0.0.1:8000/invocations; {curl} 127.0.0.1:8000/health").stdout
    assert codes.split() == ["401", "401", "200", "200"]
    status, report, _ = fab("vllm", fake)
    assert status == 0 and "vLLM already runs with this command" in by_node(report)["node1"]["messages"]
    end_cluster(four, vllm_on_head=True)
    # without Ray, vLLM is not started
    status, report, _ = fab("vllm", four.inventory, "--dry-run")
    assert status == 1 and "run spark.ray first" in " ".join(by_node(report)["node3"]["messages"])
