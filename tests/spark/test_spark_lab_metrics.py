"""spark.metrics on the lab: the real `fab spark.metrics --json` against 2 nodes, with a stand-in nvidia-smi on each
and a stand-in vLLM /metrics endpoint (a tiny HTTP server that wants the API key) on the head's loopback, inside the
head's namespace, started and stopped by this test by its pid. Without them, the rows say what is missing."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from spark_cluster import lab, metrics

from tests.spark.sparklab import by_node, data, fab

pytestmark = pytest.mark.lab

API_KEY = "metrics-lab-key-0123456789abcdef"
SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, key, body = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
class Metrics(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/metrics" and self.headers.get("Authorization") == "Bearer " + key
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(body if ok else b"Unauthorized")
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", port), Metrics).serve_forever()
"""


@pytest.fixture(scope="module")
def two(make_lab):
    return make_lab("ptmetric", 2, index=206)


def install_nvidia_smi(cluster) -> None:
    for node in cluster.nodes:
        tools = cluster.layout.node_dir(node) / "root" / lab.TOOLS_DIR.removeprefix("/root/")
        tools.mkdir(parents=True, exist_ok=True)
        stub = tools / "nvidia-smi"
        stub.write_text(f"#!/bin/sh\necho \"$*\" > \"$(dirname \"$0\")/nvidia-smi.calls\"\n"
                        f"printf '%s\\n' '{data('nvidia-smi.query.txt').strip()}'\n")
        stub.chmod(0o755)


def start_endpoint(cluster, tmp_path) -> subprocess.Popen:
    """The stand-in endpoint on the head's loopback (its namespace); ready within 10s or the test fails."""
    head = cluster.node("node1")
    body = tmp_path / "metrics.txt"
    body.write_text(data("vllm-metrics.txt"))
    proc = subprocess.Popen(["ip", "netns", "exec", head.namespace, sys.executable, "-c", SERVER, "8000", API_KEY,
                             str(body)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        code = lab.netns_run(head, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                             "http://127.0.0.1:8000/metrics").stdout
        if code == "401":
            return proc
        time.sleep(0.2)
    stop(proc)
    pytest.fail("the stand-in metrics endpoint did not start within 10s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # by its pid (ip netns exec execs the server: the pid is the server's)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def test_metrics_snapshot_per_node_and_missing_sources(two, tmp_path):
    # nothing installed yet: every row says what is missing, and the task still passes
    status, report, stderr = fab("metrics", two.inventory)
    assert status == 0, (report, stderr)
    rows = by_node(report)
    assert rows["node1"]["messages"][0] == "gpu: nvidia-smi not found"
    assert rows["node1"]["messages"][-1] == ("vllm: no readable API key file ~/.config/nemotron-deploy/vllm-api-key "
                                             "on the head")
    assert not any(m.startswith("vllm") for m in rows["node2"]["messages"])

    two.ssh("node1", f"mkdir -p ~/.config/nemotron-deploy && umask 077 && "
                     f"echo {API_KEY} > ~/.config/nemotron-deploy/vllm-api-key")
    status, report, _ = fab("metrics", two.inventory)
    assert by_node(report)["node1"]["messages"][-1] == "vllm: no vLLM metrics endpoint answers on 127.0.0.1:8000"

    install_nvidia_smi(two)
    server = start_endpoint(two, tmp_path)
    try:
        status, report, stderr = fab("metrics", two.inventory)
    finally:
        stop(server)
    assert status == 0, (report, stderr)
    assert API_KEY not in stderr and API_KEY not in str(report)
    rows = by_node(report)
    for name in ("node1", "node2"):
        messages = rows[name]["messages"]
        assert messages[0] == "gpu0: memory 15234/122570 MiB, utilisation 37%"
        for interface, _ in two.node(name).links:  # the lab's links are down (spark.link not run): no traffic
            seen = two.ip(name, "ip", "-s", "-j", "link", "show", interface).stdout
            assert metrics.describe_link(interface, seen) in messages
    assert rows["node1"]["messages"][-1] == ("vllm: running 3, waiting 1, kv cache 12.5%, generation tokens 48213, "
                                             "mean TTFT 0.246 s over 40 requests")
