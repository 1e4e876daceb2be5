"""Helpers for the Spark tests: a valid inventory, the lab, and running `fab` as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest
import yaml
from spark_cluster import lab

REPO = Path(__file__).resolve().parents[2]

# A minimal valid inventory: two nodes, two links each (the shape of the shipped ones, on other addresses)
GOOD = {
    "user": "nvidia", "mtu": 9000,
    "nodes": [
        {"name": "spark-1", "host": "10.0.0.1",
         "links": [{"interface": "enp1s0f0np0", "address": "192.168.100.10/24"},
                   {"interface": "enP2p1s0f0np0", "address": "192.168.101.10/24"}]},
        {"name": "spark-2", "host": "10.0.0.2",
         "links": [{"interface": "enp1s0f0np0", "address": "192.168.100.11/24"},
                   {"interface": "enP2p1s0f0np0", "address": "192.168.101.11/24"}]},
    ],
}

DATA = Path(__file__).resolve().parent / "data"
FAB = Path(sys.prefix) / "bin" / "fab"


REQUIRE_LAB = "NEMOTRON_REQUIRE_LAB"  # CI sets it to 1 (.ci/run): a lab that cannot run fails instead of skipping


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the Spark lab needs root (network namespaces, veths, mounts)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: run scripts/install_lab_deps.sh"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is not available on this machine"
    if not Path(lab.SSHD).exists():
        return f"{lab.SSHD} (openssh-server) is not installed: run scripts/install_lab_deps.sh"
    missing = [tool for tool in ("ssh", "ssh-keygen") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} (openssh-client) not installed: run scripts/install_lab_deps.sh"
    return None


def lab_required() -> bool:
    """Whether this run must not skip the lab: NEMOTRON_REQUIRE_LAB set to anything but empty or 0 (CI sets 1)."""
    return os.environ.get(REQUIRE_LAB, "").strip() not in ("", "0")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test the lab (or a tool it needs) cannot run here, saying why; where the lab is required
    (NEMOTRON_REQUIRE_LAB=1, as in CI) fail instead, naming the same reason, so a green run means it ran."""
    if lab_required():
        pytest.fail(f"{REQUIRE_LAB}=1 and the Spark lab cannot run here: {reason}", pytrace=False)
    pytest.skip(reason)


def require_lab() -> None:
    """Skip (or, where the lab is required, fail) unless the lab can run here."""
    reason = lab_unavailable()
    if reason:
        skip_or_fail(reason)


@pytest.fixture(scope="module")
def make_lab():
    """Build labs for a test module (tear down leftovers of a crashed run of the same name first); all are
    torn down at the end of the module, by pid, and none may be left behind. Skips (or fails: require_lab) where
    the lab cannot run."""
    require_lab()
    made = []

    def build(name: str, count: int, index: int, **kwargs) -> Lab:
        lab.down(name)
        layout = lab.up(count, name, index, **kwargs)
        made.append(name)
        return Lab(layout)

    yield build
    for name in made:
        lab.down(name)
        assert not [ns for ns in lab.namespaces() if ns.startswith(f"{name}-")], f"lab {name} left namespaces"


def data(name: str) -> str:
    return (DATA / name).read_text()


def fab(task: str, inventory: Path | str, *flags: str, timeout: float = 240) -> tuple[int, dict | None, str]:
    """Run `fab spark.<task> --inventory FILE --json ...` as a user would; (exit status, report, stderr)."""
    result = subprocess.run([str(FAB), f"spark.{task}", "--inventory", str(inventory), "--json", *flags],
                            cwd=REPO, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result.returncode, report, result.stderr


def by_node(report: dict) -> dict[str, dict]:
    return {n["node"]: n for n in report["nodes"]}


class Lab:
    """A running lab and helpers to look at it from outside the toolkit."""

    def __init__(self, layout: lab.LabLayout):
        self.layout = layout
        self.inventory = layout.inventory_file
        self.nodes = layout.nodes

    def node(self, name: str) -> lab.LabNode:
        return self.layout.node(name)

    def ip(self, node: str, *argv: str) -> subprocess.CompletedProcess:
        return lab.netns_run(self.node(node), *argv)

    def ssh(self, node: str, command: str) -> subprocess.CompletedProcess:
        return lab.node_ssh(self.layout, self.node(node), command)

    def link_state(self, node: str) -> dict[str, dict]:
        out = self.ip(node, "ip", "-j", "addr", "show").stdout
        return {i["ifname"]: {"mtu": i["mtu"], "up": "UP" in i["flags"],
                              "ipv4": [f"{a['local']}/{a['prefixlen']}" for a in i.get("addr_info", [])
                                       if a["family"] == "inet"]} for i in json.loads(out)}

    def pids(self, node: str) -> list[int]:
        return lab.netns_pids(self.node(node).namespace)

    def with_inventory(self, tmp_path: Path, **changes) -> Path:
        """A copy of the lab's inventory with top-level fields changed."""
        data = yaml.safe_load(self.inventory.read_text())
        data.update(changes)
        path = tmp_path / "inventory.yaml"
        path.write_text(yaml.safe_dump(data))
        return path


# Stand-ins for the tools the lab has no hardware for. Each prints the recorded output of the real tool that the
# parser tests keep (tests/spark/data), written per node with that node's addresses, and logs how it was called; they
# go into the node's own lab.TOOLS_DIR, first on the PATH of its SSH sessions, so the rendered scripts run for real.
TOOL_STUBS = {
    "ibdev2netdev": 'cat "$(dirname "$0")/ibdev2netdev.out"\n',
    "show_gids": 'cat "$(dirname "$0")/show_gids.out"\n',
    # a server (no address argument) serves one test and exits; a client prints the recorded result
    "ib_write_bw": ('echo "$*" >> "$(dirname "$0")/ib_write_bw.calls"\n'
                    'for a in "$@"; do last=$a; done\n'
                    'case $last in *.*.*.*) cat "$(dirname "$0")/ib_write_bw.out";; esac\n'),
    # mpirun runs the all_gather_perf it is given (on the head only: the ranks' output is the recorded one)
    "mpirun": ('{ echo "$*"; env | grep -E "^(NCCL|UCX|GLOO)_" | sort; } > "$(dirname "$0")/mpirun.calls"\n'
               'for a in "$@"; do case $a in */all_gather_perf) exec "$a";; esac; done\n'
               'echo "mpirun stand-in: no all_gather_perf in argv" >&2; exit 1\n'),
}
ALL_GATHER_STUB = 'cat /root/lab-tools/all_gather_perf.out\n'


def install_tool_stubs(cluster: Lab, ib_write_bw: str = "ib_write_bw.healthy.txt",
                       all_gather: str = "all_gather_perf.healthy.txt") -> None:
    """Put the stand-ins on every lab node (its own /root), with per-node copies of the recorded outputs."""
    for node in cluster.nodes:
        root = cluster.layout.node_dir(node) / "root"
        tools = root / lab.TOOLS_DIR.removeprefix("/root/")
        tools.mkdir(parents=True, exist_ok=True)
        gids = data("show_gids.healthy.txt")
        for recorded, (_, address) in zip(("192.168.100.10", "192.168.101.10"), node.links, strict=True):
            gids = gids.replace(recorded, address.split("/")[0])
        outputs = {"ibdev2netdev.out": data("ibdev2netdev.healthy.txt"), "show_gids.out": gids,
                   "ib_write_bw.out": data(ib_write_bw), "all_gather_perf.out": data(all_gather)}
        for name, text in outputs.items():
            (tools / name).write_text(text)
        for name, body in TOOL_STUBS.items():
            (tools / name).write_text("#!/bin/sh\n" + body)
            (tools / name).chmod(0o755)
        tests = root / "nccl-tests" / "build"
        tests.mkdir(parents=True, exist_ok=True)
        (tests / "all_gather_perf").write_text("#!/bin/sh\n" + ALL_GATHER_STUB)
        (tests / "all_gather_perf").chmod(0o755)


def remove_tool_stubs(cluster: Lab) -> None:
    for node in cluster.nodes:
        root = cluster.layout.node_dir(node) / "root"
        shutil.rmtree(root / lab.TOOLS_DIR.removeprefix("/root/"), ignore_errors=True)
        shutil.rmtree(root / "nccl-tests", ignore_errors=True)


def tool_calls(cluster: Lab, node: str, tool: str) -> str:
    path = cluster.layout.node_dir(cluster.node(node)) / "root" / lab.TOOLS_DIR.removeprefix("/root/") / f"{tool}.calls"
    return path.read_text() if path.exists() else ""
