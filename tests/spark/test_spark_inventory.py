"""The Spark inventory contract: what loads, and one clear message (field, value, allowed) for what does not."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml
from spark_cluster.inventory import DEFAULT_INVENTORY, INVENTORY_DIR, load_inventory, parse_inventory

from planner.errors import PlanInputError
from tests.spark.sparklab import FAB, GOOD, REPO, fab


def test_shipped_inventories_load_with_the_documented_defaults():
    default = load_inventory(DEFAULT_INVENTORY)
    assert default.network_backend == "netplan" and default.mtu == 9000
    assert default.netplan_file == "/etc/netplan/40-cx7.yaml"
    assert [link.address for link in default.head.links] == ["192.168.100.10/24", "192.168.101.10/24"]
    four = load_inventory(INVENTORY_DIR / "spark-4node.yaml")
    assert len(four.nodes) == 4 and four.port == 22


def test_minimal_inventory_gets_defaults():
    inventory = parse_inventory(GOOD)
    assert inventory.network_backend == "netplan" and inventory.port == 22
    assert inventory.known_hosts == "~/.ssh/known_hosts"
    assert inventory.head.name == "spark-1"
    assert inventory.node("spark-2").links[1].ip == "192.168.101.11"


def _with(path: str, value):
    data = copy.deepcopy(GOOD)
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()

BAD = [
    ("user", _DELETE, "user", "required"),
    ("mtu", 100, "mtu", "1280 to 9216"),
    ("mtu", "9000", "mtu", "1280 to 9216"),
    ("network_backend", "networkd", "network_backend", "netplan, nmcli, ip"),
    ("nodes", [], "nodes", "1 to 8 nodes"),
    ("nodes.1.name", "spark-1", "nodes[1].name", "not used by nodes[0]"),
    ("nodes.1.host", "10.0.0.1", "nodes[1].host", "not used by nodes[0]"),
    ("nodes.0.links.0.address", "192.168.100.10", "nodes[0].links[0].address", "CIDR"),
    ("nodes.0.links.0.address", "192.168.100.0/24", "nodes[0].links[0].address", "host address"),
    ("nodes.0.links.0.address", "192.168.100.255/24", "nodes[0].links[0].address", "host address"),
    ("nodes.1.links.0.address", "192.168.200.11/24", "nodes[1].links[0].address", "192.168.100.0/24"),
    ("nodes.1.links.0.address", "192.168.100.10/24", "nodes[1].links[0].address", "not used by spark-1"),
    ("nodes.0.links.0.interface", "an interface name that is far too long", "nodes[0].links[0].interface",
     "Linux interface name"),
    ("nodes.1.links", [{"interface": "enp1s0f0np0", "address": "192.168.100.11/24"}], "nodes[1].links", "2 links"),
    ("network-backend", "ip", "network-backend", "network_backend"),
    ("port", 70000, "port", "1 to 65535"),
    ("ray", {"object_store_memory": 1000}, "ray.object_store_memory", "78643200"),
    ("env_file", "relative/spark.env", "env_file", "absolute path"),
]


@pytest.mark.parametrize(("path", "value", "field", "allowed"), BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_inventory_names_the_field_and_what_is_allowed(path, value, field, allowed):
    with pytest.raises(PlanInputError) as caught:
        parse_inventory(_with(path, value), "inv.yaml")
    assert caught.value.field == field
    assert allowed in str(caught.value)
    assert str(caught.value).startswith("inv.yaml: ")


def test_fab_lists_every_spark_task():
    out = subprocess.run([str(FAB), "--list"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for task in ("link", "ssh", "roce", "nccl", "ray", "down", "vllm", "doctor"):
        assert f"spark.{task}" in out


@pytest.mark.parametrize("task", ["link", "ssh", "ray", "down", "doctor"])
def test_fab_exits_2_with_one_line_on_a_bad_inventory(tmp_path, task):
    bad = _with("network_backend", "systemd-networkd")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    status, report, stderr = fab(task, path, timeout=60)
    assert status == 2 and report is None
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "network_backend" in lines[0] and "netplan, nmcli, ip" in lines[0]


def test_fab_exits_2_on_a_missing_inventory_file(tmp_path):
    status, _, stderr = fab("link", tmp_path / "absent.yaml", timeout=60)
    assert status == 2 and "absent.yaml" in stderr
