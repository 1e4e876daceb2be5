"""Helpers for the Spark tests: imports from ansible-like/, the lab, and running `fab` as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "ansible-like"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from spark_cluster import lab  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
FAB = Path(sys.prefix) / "bin" / "fab"


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the Spark lab needs root (network namespaces, veths, mounts)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: run scripts/install_lab_deps.sh"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is not available on this machine"
    return None


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
