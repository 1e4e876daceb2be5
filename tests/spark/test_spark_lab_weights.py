"""spark.weights on a 4-node lab: the real `fab spark.weights --json` copies a small model (3 random shards and a
config, ~64 MiB, with its manifest) from the head's own /root to the other nodes' own /root over the head's link
addresses (rsync over ssh with the node-to-node trust of spark.ssh), and checks every node with sha256sum. The files
are written and read here through each node's private /root as the lab keeps it on this host."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import yaml
from spark_cluster import lab

from planner.weights import MANIFEST_NAME, WeightFile, WeightsManifest
from tests.spark.sparklab import by_node, fab, skip_or_fail

pytestmark = pytest.mark.lab

MODEL_DIR = "models/lab-model"  # under each node's /root
SHARDS = {"model-00001-of-00003.safetensors": 24 * 2**20, "model-00002-of-00003.safetensors": 24 * 2**20,
          "experts/model-00003-of-00003.safetensors": 16 * 2**20 - 1, "config.json": 1234}
WORKERS = ("node2", "node3", "node4")
ALL = ("node1", *WORKERS)


def model_dir(cluster, node: str) -> Path:
    return cluster.layout.node_dir(cluster.node(node)) / "root" / MODEL_DIR


def write_model(folder: Path, shards: dict[str, int] = SHARDS) -> WeightsManifest:
    """Random shards and the manifest written last, as stage_weights does."""
    files = []
    for path, size in shards.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        target.write_bytes(data)
        files.append(WeightFile(path, size, hashlib.sha256(data).hexdigest()))
    manifest = WeightsManifest("lab/tiny-model", "0123abcd", tuple(files))
    (folder / MANIFEST_NAME).write_text(manifest.to_json())
    return manifest


@pytest.fixture(scope="module")
def four(make_lab, tmp_path_factory):
    if shutil.which("rsync") is None:  # the lab nodes run this machine's binaries
        skip_or_fail("rsync not installed: run scripts/install_lab_deps.sh")
    built = make_lab("ptweight", 4, index=207)
    for task in ("link", "ssh"):
        status, report, stderr = fab(task, built.inventory)
        assert status == 0, (task, report, stderr)
    data = yaml.safe_load(built.inventory.read_text())
    data["weights"] = {"dir": f"~/{MODEL_DIR}", "copy_parallel": 2, "hash_jobs": 3}
    built.weights_inventory = tmp_path_factory.mktemp("weights") / "inventory.yaml"
    built.weights_inventory.write_text(yaml.safe_dump(data))
    # source s3://: a stand-in fetch on the head (the real one is `python -m scripts.stage_weights fetch`) copies a
    # staged model from the head's own ~/staging, and says what it was asked for
    data["weights"] = {"dir": "~/models/fetched", "source": "s3://lab-bucket/tiny",
                       "fetch_command": "echo {source} >> ~/fetch.calls && cp -a ~/staging/. {dir}/"}
    built.fetch_inventory = built.weights_inventory.parent / "fetch.yaml"
    built.fetch_inventory.write_text(yaml.safe_dump(data))
    built.manifest = write_model(model_dir(built, "node1"))
    return built


def same_as_head(cluster, node: str) -> bool:
    head, other = model_dir(cluster, "node1"), model_dir(cluster, node)
    return all((head / p).read_bytes() == (other / p).read_bytes() for p in [*SHARDS, MANIFEST_NAME])


def copied(row: dict) -> str:
    return next(m for m in row["messages"] if m.startswith("copied "))


def test_weights_copied_from_the_head_over_the_link_and_verified_everywhere(four):
    total = sum(SHARDS.values())
    # a dry run lists every file for every other node and changes nothing
    status, report, stderr = fab("weights", four.weights_inventory, "--dry-run")
    assert status == 0, (report, stderr)
    rows = by_node(report)
    assert rows["node2"]["changes"][0].startswith(f"copy 4 file(s), {total:,} bytes from node1 at 198.19.0.1: ")
    assert rows["node3"]["changes"][0].startswith(f"copy 4 file(s), {total:,} bytes from node1 at 198.19.1.1: ")
    assert "198.19.0.1:models/lab-model/" in rows["node4"]["commands"][0]
    assert not any(model_dir(four, n).exists() for n in WORKERS)

    status, report, stderr = fab("weights", four.weights_inventory)
    assert status == 0, (report, stderr)
    rows = by_node(report)
    holding = f"~/{MODEL_DIR}: 4 files, {total:,} bytes (lab/tiny-model @ 0123abcd)"
    for name in ALL:
        assert holding in rows[name]["messages"]
        assert "verified 4 files against the manifest (sha256): ok" in rows[name]["messages"]
    assert rows["node1"]["status"] == "ok" and rows["node1"]["changes"] == []
    for name in WORKERS:
        assert rows[name]["status"] == "changed", rows[name]
        address = "198.19.1.1" if name == "node3" else "198.19.0.1"  # the workers spread over the head's links
        assert copied(rows[name]) == (f"copied 4 file(s), {total:,} bytes this run from node1 at {address} "
                                      f"({total:,} bytes of literal data)")
        assert rows[name]["changes"][-1] == "copy the manifest from node1 (last, after every file verified)"
        assert same_as_head(four, name)


def test_a_rerun_copies_nothing_and_still_verifies(four):
    status, report, stderr = fab("weights", four.weights_inventory)
    assert status == 0, (report, stderr)
    for name in WORKERS:
        row = by_node(report)[name]
        assert row["status"] == "ok" and row["changes"] == []
        assert copied(row) == "copied 0 files, 0 bytes this run"
        assert "verified 4 files against the manifest (sha256): ok" in row["messages"]


def test_a_corrupt_and_a_deleted_file_are_copied_again_and_nothing_else(four):
    shard = model_dir(four, "node3") / "model-00002-of-00003.safetensors"
    with open(shard, "r+b") as f:  # one byte flipped, same size: only a checksum finds it
        f.seek(5 * 2**20)
        byte = f.read(1)
        f.seek(5 * 2**20)
        f.write(bytes([byte[0] ^ 0xFF]))
    (model_dir(four, "node2") / "experts" / "model-00003-of-00003.safetensors").unlink()

    status, report, _ = fab("weights", four.weights_inventory, "--verify-only")
    assert status == 1
    rows = by_node(report)
    assert rows["node3"]["messages"] == ["differs: would copy 1 file(s) from node1: "
                                         "model-00002-of-00003.safetensors (checksum mismatch)"]
    assert rows["node2"]["messages"] == ["differs: would copy 1 file(s) from node1: "
                                         "experts/model-00003-of-00003.safetensors (missing)"]
    assert rows["node4"]["status"] == "ok" and rows["node1"]["status"] == "ok"

    status, report, stderr = fab("weights", four.weights_inventory)
    assert status == 0, (report, stderr)
    rows = by_node(report)
    assert rows["node3"]["changes"] == [f"copy 1 file(s), {24 * 2**20:,} bytes from node1 at 198.19.1.1: "
                                        "model-00002-of-00003.safetensors",
                                        "copy the manifest from node1 (last, after every file verified)"]
    assert copied(rows["node3"]).startswith(f"copied 1 file(s), {24 * 2**20:,} bytes this run from node1")
    assert copied(rows["node2"]).startswith(f"copied 1 file(s), {16 * 2**20 - 1:,} bytes this run from node1")
    assert copied(rows["node4"]) == "copied 0 files, 0 bytes this run"
    for name in WORKERS:
        assert "verified 4 files against the manifest (sha256): ok" in rows[name]["messages"]
        assert same_as_head(four, name)


def test_an_unreachable_node_fails_and_the_others_go_on(four):
    node4 = four.node("node4")
    shutil.rmtree(model_dir(four, "node2"))
    lab.stop_sshd(four.layout, node4)
    try:
        status, report, _ = fab("weights", four.weights_inventory)
    finally:
        lab.start_sshd(four.layout, node4)
        lab.wait_for_port(node4.mgmt_address, 22)
    assert status == 1
    rows = by_node(report)
    assert rows["node4"]["status"] == "FAILED"
    assert rows["node4"]["messages"][0].startswith("weights: cannot connect to node4 (198.18.207.7:22): "
                                                   "Connection refused")
    assert rows["node2"]["status"] == "changed" and same_as_head(four, "node2")
    assert rows["node3"]["status"] == "ok"


def test_a_node_without_the_link_trust_is_told_to_run_spark_ssh(four):
    node3 = model_dir(four, "node3").parents[1]  # /root of node3
    known = node3 / ".ssh" / "known_hosts"
    saved = known.read_text()
    known.write_text("")
    (model_dir(four, "node3") / "config.json").unlink()
    try:
        status, report, _ = fab("weights", four.weights_inventory)
    finally:
        known.write_text(saved)
    assert status == 1
    message = by_node(report)["node3"]["messages"][-1]
    assert message.startswith("copy from node1 at 198.19.1.1 failed (rsync exit ")
    assert "Host key verification failed" in message and "run `fab spark.ssh` first" in message
    assert by_node(report)["node2"]["status"] == "ok"
    # the node's manifest was dropped before the copy: it does not claim a complete copy
    assert not (model_dir(four, "node3") / MANIFEST_NAME).exists()
    status, report, _ = fab("weights", four.weights_inventory)
    assert status == 0 and same_as_head(four, "node3")


def test_source_s3_is_fetched_once_on_the_head_and_again_where_its_copy_fails(four):
    head_root = model_dir(four, "node1").parents[1]
    write_model(head_root / "staging", {"a.safetensors": 2**20, "b.json": 100})
    status, report, _ = fab("weights", four.fetch_inventory, "--dry-run")
    assert status == 0
    rows = by_node(report)
    assert rows["node1"]["changes"] == ["fetch s3://lab-bucket/tiny to ~/models/fetched (no manifest on the head)"]
    assert rows["node2"]["changes"] == ["copy every file of the manifest the fetch writes from node1 at 198.19.0.1, "
                                        "then the manifest"]
    assert not (head_root / "fetch.calls").exists()

    status, report, stderr = fab("weights", four.fetch_inventory)
    assert status == 0, (report, stderr)
    rows = by_node(report)
    assert rows["node1"]["changes"] == ["fetch s3://lab-bucket/tiny to ~/models/fetched (no manifest on the head)"]
    assert (head_root / "fetch.calls").read_text() == "s3://lab-bucket/tiny\n"
    for name in WORKERS:
        assert copied(rows[name]).startswith(f"copied 2 file(s), {2**20 + 100:,} bytes this run")
        assert "verified 2 files against the manifest (sha256): ok" in rows[name]["messages"]

    # the head's copy corrupted: the corrupt file goes and the fetch runs again; the other nodes had good copies
    with open(head_root / "models/fetched/a.safetensors", "r+b") as f:
        f.write(b"corrupt")
    status, report, stderr = fab("weights", four.fetch_inventory)
    assert status == 0, (report, stderr)
    rows = by_node(report)
    assert rows["node1"]["changes"] == ["fetch s3://lab-bucket/tiny to ~/models/fetched (1 file(s) failed their "
                                        "checksums)"]
    assert all(copied(rows[name]) == "copied 0 files, 0 bytes this run" for name in WORKERS)
    assert (head_root / "models/fetched/a.safetensors").read_bytes() == (head_root / "staging/a.safetensors"
                                                                         ).read_bytes()
