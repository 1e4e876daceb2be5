"""Run the rendered boot script for real: bash, real curl and GNU date, a fake IMDSv2 on 127.0.0.1, and stub tools.

Not in namespaces (`unshare` needs root or user namespaces, which `make test` cannot count on): the script takes
every path it writes from variables (NEMOTRON_ETC, NEMOTRON_STATE, NEMOTRON_RUN, NEMOTRON_SYS, NEMOTRON_IMDS) and
node.conf (CACHE_MOUNT, MODEL_CACHE), which point into the test's temp dir, and every run checks that the server
paths (HOST_PATHS) did not change. Disks and arrays exist only in the stubs' scenario. Time is real except `sleep`
(a stub that returns at once, so bounded waits are counted, not waited) and `uptime -s` (the boot time).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from planner.plan import plan_stack
from planner.stack_config import load_stack
from planner.targets.ec2 import render_user_data

REPO = Path(__file__).resolve().parents[2]
FAKE_TOOLS = Path(__file__).with_name("fake_tools.py")
STUBS = ("aws", "docker", "mdadm", "mkfs.xfs", "mount", "mountpoint", "systemctl", "shutdown", "sleep", "uptime", "ip")
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:h100-pilot-serving-secret-Ab12Cd"
PLAN_NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
TOKEN = "fake-imds-token"
# Where the script writes on a server: a run in a test must leave them as they were.
HOST_PATHS = tuple(Path(p) for p in ("/etc/nemotron", "/var/lib/nemotron", "/run/nemotron", "/opt/dlami/nvme",
                                     "/dev/md/nemotron"))


@dataclass
class Imds:
    """What the fake metadata service answers; None for the tag means no such tag (404)."""

    tag: str | None = None
    local_ipv4: str = "10.64.3.17"
    ipv4_failures: int = 0  # local-ipv4 requests answered 500 before the first success
    healthy: bool = True
    requests: list[str] = field(default_factory=list)


def _handler(imds: Imds):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            imds.requests.append(f"PUT {self.path}")
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            self._answer(200, TOKEN) if self.path == "/latest/api/token" and ttl else self._answer(400)

        def do_GET(self):
            imds.requests.append(f"GET {self.path}")
            if self.path == "/health":
                return self._answer(200 if imds.healthy else 503)
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self._answer(401)
            if self.path.startswith("/latest/meta-data/tags/instance/"):
                return self._answer(200, imds.tag) if imds.tag is not None else self._answer(404)
            if self.path == "/latest/meta-data/local-ipv4":
                if imds.ipv4_failures > 0:
                    imds.ipv4_failures -= 1
                    return self._answer(500)
                return self._answer(200, imds.local_ipv4)
            return self._answer(404)

    return Handler


@pytest.fixture
def imds():
    state = Imds()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    """A loopback port nobody listens on: an unreachable metadata service."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    calls: list[dict]

    def of(self, tool: str) -> list[list[str]]:
        return [c["args"] for c in self.calls if c["tool"] == tool]


class Node:
    """One server's file system in a temp dir, the rendered nemotron-node script, and its scenario."""

    STACKS = REPO / "stacks"

    def __init__(self, root: Path, imds: Imds, stack: str = "h100-pilot", stacks_dir: Path | None = None):
        files = {f["path"]: f["content"] for f in yaml.safe_load(
            render_node(stack, stacks_dir=stacks_dir or self.STACKS))["write_files"]}
        self.root, self.imds = root, imds
        self.etc, self.state, self.run_dir, self.sys = (root / d for d in ("etc", "state", "run", "sys"))
        self.cache, self.fake, self.bin = root / "nvme", root / "fake", root / "bin"
        for directory in (self.etc, self.state, self.sys, self.fake, self.bin):
            directory.mkdir(parents=True)
        (self.etc / "node.conf").write_text(
            files["/etc/nemotron/node.conf"] + f"\nCACHE_MOUNT={self.cache}\nMODEL_CACHE={self.cache}/nemotron\n"
            f"PORT={imds.url.rsplit(':', 1)[1]}\n")
        self.script = root / "nemotron-node"
        self.script.write_text(files["/usr/local/sbin/nemotron-node"])
        for tool in STUBS:
            (self.bin / tool).write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_TOOLS} {tool} "$@"\n')
            (self.bin / tool).chmod(stat.S_IRWXU)
        # sleep, the most frequent call, recorded without starting Python
        (self.bin / "sleep").write_text('#!/bin/sh\nprintf \'{"tool": "sleep", "args": ["%s"]}\\n\' "$1" '
                                        '>> "$FAKE_DIR/calls.jsonl"\n')
        self.scenario = {"mounted": [], "active": [], "assemblable": [], "superblocks": [], "ipv4": imds.local_ipv4,
                         "secret": [{"stdout": json.dumps({"VLLM_API_KEY": "k3y-secret"})}],
                         "booted_at": booted_at(1)}
        self.imds_url = imds.url + "/latest"

    def disks(self, models: dict[str, str]) -> None:
        """/sys/block/<name>/device/model for each NVMe device."""
        for name, model in models.items():
            (self.sys / "block" / name / "device").mkdir(parents=True)
            (self.sys / "block" / name / "device" / "model").write_text(model + "\n")

    def __call__(self, step: str, **scenario) -> Run:
        (self.fake / "scenario.json").write_text(json.dumps(self.scenario | scenario))
        calls = self.fake / "calls.jsonl"
        calls.unlink(missing_ok=True)
        env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "TZ": "UTC", "FAKE_DIR": str(self.fake),
               "NEMOTRON_ETC": str(self.etc), "NEMOTRON_STATE": str(self.state), "NEMOTRON_RUN": str(self.run_dir),
               "NEMOTRON_SYS": str(self.sys), "NEMOTRON_IMDS": self.imds_url}
        before = {path: path.exists() for path in HOST_PATHS}
        done = subprocess.run([*sandbox(), "bash", str(self.script), step], env=env, capture_output=True, text=True,
                              timeout=60)
        assert {path: path.exists() for path in HOST_PATHS} == before, "the script wrote outside its test dirs"
        recorded = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
        return Run(done.returncode, done.stdout, done.stderr, recorded)


# Where a boot script run astray would write on a real server: read-only inside the sandbox, so a path the test
# forgot to redirect fails the run instead of touching this machine.
READ_ONLY_HOST_DIRS = ("/etc", "/var/lib", "/run", "/opt", "/usr", "/dev/md")
def sandbox() -> list[str]:
    """A command prefix that runs the rest in its own mount and pid namespaces with the host's system directories
    read-only (root only: elsewhere the scripts run in their temp dirs, checked afterwards, without it)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return []
    dirs = " ".join(shlex.quote(d) for d in READ_ONLY_HOST_DIRS)
    mount = shlex.quote(shutil.which("mount", path="/usr/bin:/bin:/usr/sbin:/sbin") or "/bin/mount")  # not the stub
    script = (f'for d in {dirs}; do [ -d "$d" ] || continue; '
              f'{mount} --bind "$d" "$d" && {mount} -o remount,bind,ro "$d" || exit 97; done; exec "$@"')
    return ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", script, "sandbox"]


def booted_at(hours_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).strftime("%Y-%m-%d %H:%M:%S")


def render_node(stack: str, node: int = 0, stacks_dir: Path = REPO / "stacks") -> str:
    plan = plan_stack(load_stack(stacks_dir, stack), PLAN_NOW)
    return render_user_data(plan, plan.ec2, node, SECRET_ARN)


@pytest.fixture
def node(tmp_path, imds) -> Node:
    return Node(tmp_path, imds)
