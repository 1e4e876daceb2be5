"""spark.weights without a lab: the inventory's `weights:` block, the commands the task sends (the copy rides the
head's link address with strict host keys and no secret), and the parsers of what the nodes print. The node scripts
(facts, sha256sum --check in parallel, the inputs they read) also run here for real, on a temporary directory."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import shlex
import subprocess

import pytest
import yaml
from spark_cluster import weights
from spark_cluster.inventory import WeightsSettings, parse_inventory

from planner.errors import PlanInputError
from planner.weights import MANIFEST_NAME, WeightFile, WeightsManifest
from tests.spark.sparklab import GOOD, fab

FOUR = {**GOOD, "nodes": [
    {"name": f"spark-{i}", "host": f"10.0.0.{i}",
     "links": [{"interface": "enp1s0f0np0", "address": f"192.168.100.{9 + i}/24"},
               {"interface": "enP2p1s0f0np0", "address": f"192.168.101.{9 + i}/24"}]} for i in range(1, 5)]}


def inventory(weights_block=None, **top):
    data = copy.deepcopy(FOUR)
    data.update(top)
    if weights_block is not None:
        data["weights"] = weights_block
    return parse_inventory(data, "inv.yaml")


# ---- the inventory block -------------------------------------------------------------------------------------------

def test_weights_block_is_optional_and_defaults_to_the_vllm_model_under_models():
    settings = inventory().weights
    assert settings == WeightsSettings(dir="~/models/nemotron-3-ultra")
    assert settings.source == "local" and settings.copy_parallel == 3 and settings.hash_jobs == 4
    hub = inventory(vllm={"model": "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4"}).weights
    assert hub.dir == "~/models/nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4"
    assert inventory(vllm={"model": "/data/models/ultra/"}).weights.dir == "/data/models/ultra"


def test_weights_block_as_written():
    settings = inventory({"dir": "/data/models/ultra/", "source": "s3://my-bucket/nemotron/ultra-nvfp4",
                          "fetch_command": "cd ~/nemotron-deploy && .venv/bin/python -m scripts.stage_weights fetch "
                                           "{source} --to {dir}",
                          "copy_parallel": 1, "hash_jobs": 16, "timeout_s": 3600}).weights
    assert settings.dir == "/data/models/ultra"
    assert settings.source == "s3://my-bucket/nemotron/ultra-nvfp4"
    assert (settings.copy_parallel, settings.hash_jobs, settings.timeout_s) == (1, 16, 3600)


BAD = [
    ({"dir": "models/ultra"}, "weights.dir", "~/PATH or /PATH"),
    ({"dir": "~/models/../etc"}, "weights.dir", "without . or .. parts"),
    ({"dir": "~/my models"}, "weights.dir", "~/PATH or /PATH"),
    ({"dir": "~"}, "weights.dir", "~/PATH or /PATH"),
    ({"dir": ""}, "weights.dir", "non-empty string"),
    ({"source": "https://example.com/model"}, "weights.source", "local (the head already has the model"),
    ({"source": "hf://onlyname"}, "weights.source", "hf://ORG/NAME (Hugging Face)"),
    ({"source": "s3://Bad_Bucket/x"}, "weights.source", "s3://BUCKET/PREFIX"),
    ({"fetch_command": "aws s3 sync {source} /data"}, "weights.fetch_command", "{dir}"),
    ({"fetch_command": "fetch {source} {dir} {token}"}, "weights.fetch_command", "no other {...}"),
    ({"fetch_command": "fetch {dir"}, "weights.fetch_command", "{dir}"),
    ({"copy_parallel": 0}, "weights.copy_parallel", "1 to 8"),
    ({"copy_parallel": "2"}, "weights.copy_parallel", "1 to 8"),
    ({"copy_parallel": True}, "weights.copy_parallel", "1 to 8"),
    ({"hash_jobs": 65}, "weights.hash_jobs", "1 to 64"),
    ({"timeout_s": 1}, "weights.timeout_s", "10 to 604800"),
    ("~/models", "weights", "a mapping with keys dir, source, fetch_command, copy_parallel, hash_jobs, timeout_s"),
]


@pytest.mark.parametrize(("block", "field", "allowed"), BAD, ids=[f"{b[1]}={b[0]!r}" for b in BAD])
def test_bad_weights_block_names_the_field_and_what_is_allowed(block, field, allowed):
    with pytest.raises(PlanInputError) as caught:
        inventory(block)
    assert caught.value.field == field
    assert allowed in str(caught.value)
    assert str(caught.value).startswith("inv.yaml: ")


def test_an_unknown_weights_key_is_named_with_the_closest_and_its_value_hidden():
    with pytest.raises(PlanInputError) as caught:
        inventory({"parallel": 2, "dir": "~/m"})
    assert str(caught.value) == ("inv.yaml: weights.parallel: unknown key; did you mean copy_parallel? allowed: dir, "
                                 "source, fetch_command, copy_parallel, hash_jobs, timeout_s")


def test_a_model_name_that_makes_no_directory_asks_for_weights_dir():
    with pytest.raises(PlanInputError) as caught:
        inventory(vllm={"model": "my model"})
    assert caught.value.field == "weights.dir" and "(from vllm.model)" in str(caught.value)


def test_fab_weights_exits_2_with_one_line_on_a_bad_block(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**FOUR, "weights": {"source": "ftp://x"}}))
    status, report, stderr = fab("weights", path, timeout=60)
    assert status == 2 and report is None
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "weights.source: 'ftp://x' is not valid" in lines[0]


# ---- the commands --------------------------------------------------------------------------------------------------

def test_the_copy_pulls_from_the_heads_link_address_with_strict_host_keys():
    inv = inventory({"dir": "~/models/ultra"})
    # the three other nodes spread over the head's two link halves; never its management host
    assert [weights.source_address(inv, inv.node(f"spark-{i}")) for i in (2, 3, 4)] == [
        "192.168.100.10", "192.168.101.10", "192.168.100.10"]
    argv = weights.rsync_argv(inv, "192.168.101.10")
    assert argv[0] == "rsync" and argv[-1] == "nvidia@192.168.101.10:models/ultra/"
    ssh = argv[argv.index("-e") + 1]
    assert ssh == "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -p 22"
    assert {"--files-from=-", "--inplace", "--partial", "--ignore-times", "--stats"} <= set(argv)
    assert not any("10.0.0.1" in a or "StrictHostKeyChecking=no" in a or "password" in a.lower() for a in argv)
    command = weights.pull_command(inv, "192.168.101.10", drop_manifest=True, source="SRC")
    assert command.startswith(f'mkdir -p "$HOME"/models/ultra && rm -f "$HOME"/models/ultra/{MANIFEST_NAME} && '
                              "SRC | timeout -k 10 21600 rsync -e ")
    assert command.endswith(' nvidia@192.168.101.10:models/ultra/ "$HOME"/models/ultra/')
    assert "rm -f" not in weights.pull_command(inv, "192.168.101.10", drop_manifest=False)
    absolute = inventory({"dir": "/data/ultra"}, port=2222)
    assert weights.rsync_argv(absolute, "192.168.100.10")[-1] == "nvidia@192.168.100.10:/data/ultra/"
    assert "-p 2222" in weights.rsync_argv(absolute, "192.168.100.10")[2]


def test_the_fetch_command_quotes_what_it_fills_in():
    settings = inventory({"source": "s3://bucket/prefix", "dir": "~/models/ultra",
                          "fetch_command": "stage fetch {source} --to {dir}"}).weights
    command = weights.fetch_command(settings)
    inner = "stage fetch s3://bucket/prefix --to \"$HOME\"/models/ultra"
    assert command == (f'mkdir -p "$HOME"/models/ultra && rm -f "$HOME"/models/ultra/{MANIFEST_NAME} && '
                       f"timeout -k 10 21600 sh -c {shlex.quote(inner)}")


def test_a_long_input_travels_in_pieces_that_decode_to_it():
    text = "".join(f"{i} {hashlib.sha256(str(i).encode()).hexdigest()}  shard-{i:05}.safetensors\n"
                   for i in range(5000))
    chunks = weights.input_chunks(text)
    assert len(chunks) > 1 and all(len(c) <= weights.INPUT_CHUNK for c in chunks)
    assert gzip.decompress(base64.b64decode("".join(chunks))).decode() == text
    one = weights.input_chunks("a b\n")
    assert subprocess.run(["sh", "-c", weights.inline_input(one[0])], capture_output=True, text=True,
                          check=True).stdout == "a b\n"


# ---- the node scripts, run here on a temporary model directory ---------------------------------------------------

def model(tmp_path, sizes: dict[str, int]) -> WeightsManifest:
    files = []
    for path, size in sizes.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = bytes((i * 7 + len(path)) % 256 for i in range(size))
        target.write_bytes(data)
        files.append(WeightFile(path, size, hashlib.sha256(data).hexdigest()))
    return WeightsManifest("org/model", "abc123", tuple(files))


def run_verify(settings: WeightsSettings, manifest: WeightsManifest, files: list[WeightFile]) -> dict[str, str]:
    jobs = weights.hash_jobs(files, settings.hash_jobs)
    source = weights.inline_input(weights.input_chunks(weights.verify_input(manifest, jobs))[0])
    out = subprocess.run(["sh", "-c", weights.verify_command(settings, len(jobs), source)], capture_output=True,
                         text=True, timeout=60).stdout
    return weights.parse_verify(out, jobs)


def test_facts_and_parallel_sha256sum_check_on_a_real_directory(tmp_path):
    manifest = model(tmp_path, {"a.safetensors": 3000, "sub/b.safetensors": 2000, "c d.json": 10, "e.bin": 0})
    (tmp_path / MANIFEST_NAME).write_text(manifest.to_json())
    settings = WeightsSettings(dir=str(tmp_path), hash_jobs=3)
    facts = weights.parse_facts(subprocess.run(["sh", "-c", weights.facts_command(settings)], capture_output=True,
                                               text=True, check=True).stdout)
    assert {"sha256sum", "timeout", "gzip"} <= facts.tools
    assert facts.manifest == manifest.to_json().encode()
    assert facts.sizes == {"a.safetensors": 3000, "sub/b.safetensors": 2000, "c d.json": 10, "e.bin": 0,
                           MANIFEST_NAME: len(manifest.to_json())}
    assert run_verify(settings, manifest, list(manifest.files)) == {}

    with open(tmp_path / "sub/b.safetensors", "r+b") as f:
        f.write(b"\xff")
    (tmp_path / "c d.json").unlink()
    assert run_verify(settings, manifest, list(manifest.files)) == {
        "sub/b.safetensors": weights.CHECKSUM_MISMATCH, "c d.json": weights.UNREADABLE}
    facts = weights.parse_facts(subprocess.run(["sh", "-c", weights.facts_command(settings)], capture_output=True,
                                               text=True, check=True).stdout)
    assert weights.size_problems(manifest, facts.sizes) == {"c d.json": "missing"}
    assert [f.path for f in weights.sized_files(manifest, facts.sizes)] == ["a.safetensors", "sub/b.safetensors",
                                                                             "e.bin"]


def test_facts_of_a_node_without_the_directory():
    facts = weights.parse_facts(subprocess.run(["sh", "-c", weights.facts_command(
        WeightsSettings(dir="/nonexistent/nemotron-weights-test"))], capture_output=True, text=True).stdout)
    assert facts.manifest is None and facts.sizes == {}


# ---- parsers and report lines ----------------------------------------------------------------------------------

FILES = [WeightFile(f"s{i}", size, "0" * 64) for i, size in enumerate((50, 40, 30, 20, 10))]


def test_hash_jobs_balance_the_bytes():
    jobs = weights.hash_jobs(FILES, 2)
    assert [[f.path for f in job] for job in jobs] == [["s0", "s3", "s4"], ["s1", "s2"]]
    assert len(weights.hash_jobs(FILES, 16)) == 5 and weights.hash_jobs([], 4) == []


def test_parse_verify_reads_sha256sum_quiet_check_output():
    jobs = [FILES[:2], FILES[2:4], FILES[4:]]
    out = ("### job 0 rc=0\n"
           "### job 1 rc=1\ns2: FAILED\ns3: FAILED open or read\n"
           "sha256sum: s3: No such file or directory\nsha256sum: WARNING: 1 computed checksum did NOT match\n")
    assert weights.parse_verify(out, jobs) == {"s2": "checksum mismatch", "s3": "missing or unreadable",
                                               "s4": "not checked (no result from sha256sum)"}
    crashed = "### job 0 rc=127\nsh: 1: sha256sum: not found\n"
    assert weights.parse_verify(crashed, [FILES[:1]]) == {"s0": "not checked (sh: 1: sha256sum: not found)"}


RSYNC_STATS = """
Number of files: 3 (reg: 2, dir: 1)
Number of created files: 3 (reg: 2, dir: 1)
Number of deleted files: 0
Number of regular files transferred: 2
Total file size: 100,003 bytes
Total transferred file size: 100,003 bytes
Literal data: 5,016 bytes
Matched data: 94,987 bytes
File list size: 0
Total bytes sent: 100,181
Total bytes received: 57

sent 100,181 bytes  received 57 bytes  200,476.00 bytes/sec
total size is 100,003  speedup is 1.00
"""


def test_rsync_stats_and_failures():
    stats = weights.parse_rsync_stats(RSYNC_STATS)
    assert stats == weights.RsyncStats(files=2, bytes=100_003, literal=5_016)
    assert weights.copied_line(stats, "spark-1", "192.168.100.10") == (
        "copied 2 file(s), 100,003 bytes this run from spark-1 at 192.168.100.10 (5,016 bytes of literal data)")
    assert weights.copied_line(None) == "copied 0 files, 0 bytes this run"
    assert weights.parse_rsync_stats("rsync: connection unexpectedly closed (0 bytes received so far)") is None
    refused = ("Host key verification failed.\r\nrsync: connection unexpectedly closed (0 bytes received so far) "
               "[Receiver]\nrsync error: unexplained error (code 255) at io.c(232) [Receiver=3.2.7]\n")
    line = weights.rsync_failure("spark-1", "192.168.100.10", 255, refused)
    assert line.startswith("copy from spark-1 at 192.168.100.10 failed (rsync exit 255): Host key verification "
                           "failed.; this node logs in to spark-1's link address")
    assert "run `fab spark.ssh` first" in line
    assert weights.rsync_failure("spark-1", "a", 124, "").endswith("ran past weights.timeout_s")


def test_report_lines_name_the_files():
    manifest = WeightsManifest("org/model", "abc123", tuple(FILES))
    settings = WeightsSettings(dir="~/models/m")
    assert weights.holding_line(settings, manifest) == "~/models/m: 5 files, 150 bytes (org/model @ abc123)"
    assert weights.verified_line(5) == "verified 5 files against the manifest (sha256): ok"
    many = {f"f{i:02}": "missing" for i in range(12)}
    assert weights.name_files(many).endswith("f09 (missing) and 2 more")
    assert weights.copy_summary(FILES[:2], "spark-1", "192.168.100.10") == (
        "copy 2 file(s), 90 bytes from spark-1 at 192.168.100.10: s0, s1")
    assert weights.missing_tools(weights.WeightsFacts(frozenset({"sha256sum", "timeout", "gzip"}), None, {}),
                                 copies=True) == ["rsync"]
    assert weights.missing_tools(weights.WeightsFacts(frozenset({"sha256sum", "timeout", "gzip"}), None, {}),
                                 copies=False) == []


def test_a_hub_repository_is_a_source_the_head_fetches_with_stage_weights():
    settings = inventory({"source": "hf://nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4", "dir": "~/models/ultra"})
    command = weights.fetch_command(settings.weights)
    assert "python3 -m scripts.stage_weights fetch hf://nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4 --to" in command
