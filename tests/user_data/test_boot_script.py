"""The node script (planner/scripts/nemotron-node.sh as rendered) executed step by step: the model cache across boots
and reboots, the node's address and secret, what the download container sees, the ready marker, the dead-man.
The harness (conftest.py) runs bash with stub tools and a fake IMDSv2 on loopback.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta

import pytest

from planner.expiry import parse_expiry
from planner.weights import WeightFile, WeightsManifest
from tests.user_data.bootlab import Node, booted_at, closed_port

EBS = "Amazon Elastic Block Store"
INSTANCE_STORE = "Amazon EC2 NVMe Instance Storage"
P5_DISKS = {"nvme0n1": EBS, **{f"nvme{i}n1": INSTANCE_STORE for i in range(1, 9)}}
STORE = [f"/dev/nvme{i}n1" for i in range(1, 9)]


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


# The model cache: RAID0 over the instance-store NVMe, found again after a reboot, never wiped.

def test_first_boot_builds_a_raid0_over_exactly_the_instance_store_disks(node):
    node.disks(P5_DISKS)
    run = node("prepare")
    assert run.rc == 0, run.stderr
    assert run.of("mdadm")[-1] == ["--create", "/dev/md/nemotron", "--run", "--level=0", "--raid-devices=8", *STORE]
    assert [args for args in run.of("mdadm") if args[0] == "--examine"] == [["--examine", d] for d in STORE]
    assert run.of("mkfs.xfs") == [["-f", "/dev/md/nemotron"]]
    assert run.of("mount") == [["-o", "noatime", "/dev/md/nemotron", str(node.cache)]]
    assert (node.cache / "nemotron" / "hf").is_dir()


@pytest.mark.parametrize(("array", "name"), [
    ("/dev/md/nemotron", "ip-10-64-3-17:nemotron"),  # came back as it was
    ("/dev/md127", "ip-10-64-3-17:nemotron"),  # assembled early, before the host name was set
    ("/dev/md/nemotron_0", "ip-10-64-9-9:nemotron"),  # another homehost
])
def test_a_reboot_mounts_the_array_it_finds_under_any_name_and_never_recreates_it(node, array, name):
    node.disks(P5_DISKS)
    run = node("prepare", active=[{"dev": array, "name": name}], superblocks=STORE)
    assert run.rc == 0, run.stderr
    assert run.of("mount") == [["-o", "noatime", array, str(node.cache)]]
    assert not [a for a in run.of("mdadm") if a[0] in ("--create", "--assemble")] and not run.of("mkfs.xfs")


@pytest.mark.parametrize("array", ["/dev/md/nemotron", "/dev/md127"])
def test_a_reboot_before_the_array_is_assembled_assembles_it_and_keeps_the_cache(node, array):
    node.disks(P5_DISKS)
    run = node("prepare", assemblable=[{"dev": array, "name": "ip-10-64-3-17:nemotron"}], superblocks=STORE)
    assert run.rc == 0, run.stderr
    assert ["--assemble", "--scan"] in run.of("mdadm")
    assert not [a for a in run.of("mdadm") if a[0] == "--create"] and not run.of("mkfs.xfs")
    assert run.of("mount") == [["-o", "noatime", array, str(node.cache)]]


def test_an_array_of_another_name_is_not_taken_for_the_cache(node):
    node.disks(P5_DISKS)
    run = node("prepare", active=[{"dev": "/dev/md126", "name": "ip-10-64-3-17:nemotron-old"},
                                  {"dev": "/dev/md/scratch", "name": "any:scratch"}])
    assert run.rc == 0, run.stderr
    assert run.of("mount") == [["-o", "noatime", "/dev/md/nemotron", str(node.cache)]]


def test_disks_with_a_superblock_that_does_not_assemble_are_never_wiped(node):
    node.disks(P5_DISKS)
    run = node("prepare", superblocks=STORE[:1])
    assert run.rc == 1
    assert "/dev/nvme1n1 holds a RAID superblock that did not assemble" in run.stderr
    assert not [a for a in run.of("mdadm") if a[0] == "--create"] and not run.of("mkfs.xfs") and not run.of("mount")


def test_a_cache_the_ami_mounted_is_used_as_is(node):
    node.disks(P5_DISKS)
    run = node("prepare", mounted=[str(node.cache)])
    assert run.rc == 0, run.stderr
    assert not run.of("mdadm") and not run.of("mkfs.xfs") and not run.of("mount")


# The node's address and the stack's secret.

def test_the_private_ip_is_read_again_until_imds_answers(node, imds):
    node.disks(P5_DISKS)
    imds.ipv4_failures = 3
    run = node("prepare")
    assert run.rc == 0, run.stderr
    assert "VLLM_HOST_IP=10.64.3.17" in (node.etc / "node.env").read_text()
    assert "NCCL_SOCKET_IFNAME=ens5" in (node.etc / "node.env").read_text()
    assert run.of("sleep").count(["2"]) == 30 + 3  # the wait for an AMI-mounted cache, then the address


def test_an_unreachable_imds_ends_prepare_after_a_bounded_number_of_tries(node):
    node.disks(P5_DISKS)
    node.imds_url = f"http://127.0.0.1:{closed_port()}/latest"
    run = node("prepare")
    assert run.rc == 1 and "no private IP from IMDS after 30 tries" in run.stderr
    assert run.of("sleep").count(["2"]) == 30 + 30  # the mount wait, then the address


def test_a_failed_secret_read_logs_one_line_per_try_and_no_traceback(node):
    node.disks(P5_DISKS)
    denied = {"rc": 254, "stderr": "\nAn error occurred (AccessDeniedException) when calling the GetSecretValue "
                                  "operation: not authorized\n"}
    good = {"stdout": json.dumps({"VLLM_API_KEY": "k3y-secret", "HF_TOKEN": "hf_t0ken"})}
    run = node("prepare", secret=[denied, denied, {"stdout": "not json"}, good])
    assert run.rc == 0, run.stderr
    assert "Traceback" not in run.stderr and "k3y-secret" not in run.stderr + run.stdout
    assert run.stderr.splitlines() == [
        "nemotron-node: secret not readable yet (attempt 1): An error occurred (AccessDeniedException) when "
        "calling the GetSecretValue operation: not authorized",
        "nemotron-node: secret not readable yet (attempt 2): An error occurred (AccessDeniedException) when "
        "calling the GetSecretValue operation: not authorized",
        "nemotron-node: the secret is not a JSON object of variables",
    ]
    assert (node.etc / "vllm.env").read_text() == "VLLM_API_KEY=k3y-secret\nHF_TOKEN=hf_t0ken\n"
    assert (node.etc / "hf.env").read_text() == "HF_TOKEN=hf_t0ken\n"
    for name in ("vllm.env", "hf.env"):
        assert stat.S_IMODE((node.etc / name).stat().st_mode) == 0o600


def test_the_download_container_gets_the_hugging_face_token_and_never_the_api_key(tmp_path, imds):
    node = Node(tmp_path, imds, stack="h100-bf16")  # a stack without a staged copy: the weights come from the hub
    node.disks(P5_DISKS)
    assert node("prepare", secret=[{"stdout": json.dumps({"VLLM_API_KEY": "k3y", "HF_TOKEN": "hf_t"})}]).rc == 0
    run = node("stage")
    assert run.rc == 0, run.stderr
    download = next(c for c in run.calls if c["tool"] == "docker" and c["args"][0] == "run")
    assert download["env_files"] == {str(node.etc / "hf.env"): "HF_TOKEN=hf_t\n"}
    assert "HF_HOME=/models/hf" in download["args"] and "k3y" not in json.dumps(download)
    assert (node.cache / "nemotron" / ".staged").exists()


def test_the_ready_marker_lives_under_run_so_a_reboot_clears_it(node):
    run = node("ready")
    assert run.rc == 0, run.stderr
    assert "READY" in run.stdout
    assert (node.run_dir / "ready").exists() and not (node.state / "ready").exists()


@pytest.mark.parametrize(("result", "says"), [
    ("exit-code", "nemotron-serve failed (exit-code); systemd restarts it\n"),  # OnFailure= runs on every crash
    ("start-limit-hit", "NOT SERVING: nemotron-serve crashed 5 times and is not restarted "
                        "(journalctl -u nemotron-serve)\n"),
])
def test_a_failed_server_is_reported_and_giving_up_is_said_out_loud(node, result, says):
    run = node("serve-failed", serve_result=result)
    assert (run.rc, run.stdout) == (0, says)
    assert run.of("systemctl") == [["show", "-p", "Result", "--value", "nemotron-serve.service"]]


# The dead-man switch against the fake IMDSv2.

def _deadman(node, tag, remembered=None, booted_hours_ago=1.0, reachable=True):
    node.imds.tag = tag
    if remembered is not None:
        (node.state / "expires-at").write_text(remembered + "\n")
    if not reachable:
        node.imds_url = f"http://127.0.0.1:{closed_port()}/latest"
    run = node("deadman", booted_at=booted_at(booted_hours_ago))
    assert run.rc == 0, run.stderr
    kept = (node.state / "expires-at").read_text().strip() if (node.state / "expires-at").exists() else None
    return bool(run.of("shutdown")), kept, run.stderr


NOW = datetime.now(UTC)
PAST, FUTURE = _iso(NOW - timedelta(minutes=5)), _iso(NOW + timedelta(hours=2))
PAST_UTC_OFFSET = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
PAST_EAST = (NOW + timedelta(hours=5, minutes=25)).strftime("%Y-%m-%dT%H:%M:%S+05:30")  # 5 minutes ago
FUTURE_WEST = (NOW - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%S-08:00")  # in 2 hours
PAST_FRACTION = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.25Z")
PAST_NO_SECONDS = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%MZ")
IMPOSSIBLE = "2026-02-30T10:00:00Z"
DEADMAN_CASES = [
    # name, tag, remembered, booted hours ago, IMDS reachable, shuts down, remembered after
    ("future", FUTURE, None, 1, True, False, FUTURE),
    ("past", PAST, None, 1, True, True, PAST),
    ("renewed past the remembered one", FUTURE, PAST, 1, True, False, FUTURE),
    ("missing tag, nothing remembered, young node", None, None, 1, True, False, None),
    ("missing tag, nothing remembered, 167.9 h", None, None, 167.9, True, False, None),
    ("missing tag, nothing remembered, 168.1 h", None, None, 168.1, True, True, None),
    ("missing tag, remembered past", None, PAST, 1, True, True, PAST),
    ("malformed, remembered future", "tomorrow; rm -rf /", FUTURE, 1, True, False, FUTURE),
    ("malformed, nothing remembered, 169 h", "tomorrow", None, 169, True, True, None),
    ("impossible date, young node", IMPOSSIBLE, None, 1, True, False, None),
    ("impossible date, 169 h", IMPOSSIBLE, None, 169, True, True, None),
    ("past, +00:00", PAST_UTC_OFFSET, None, 1, True, True, PAST_UTC_OFFSET),
    ("past, +05:30", PAST_EAST, None, 1, True, True, PAST_EAST),
    ("future, -08:00", FUTURE_WEST, None, 1, True, False, FUTURE_WEST),
    ("past, fraction of a second", PAST_FRACTION, None, 1, True, True, PAST_FRACTION),
    ("past, no seconds", PAST_NO_SECONDS, None, 1, True, True, PAST_NO_SECONDS),
    ("IMDS unreachable, remembered future", None, FUTURE, 1, False, False, FUTURE),
    ("IMDS unreachable, nothing remembered, 169 h", None, None, 169, False, True, None),
    ("IMDS unreachable, an older script remembered an impossible date, 169 h", None, IMPOSSIBLE, 169, False, True,
     IMPOSSIBLE),
]


@pytest.mark.parametrize(("case", "tag", "remembered", "booted", "reachable", "shuts_down", "kept"), DEADMAN_CASES,
                         ids=[c[0] for c in DEADMAN_CASES])
def test_dead_man(node, case, tag, remembered, booted, reachable, shuts_down, kept):
    assert _deadman(node, tag, remembered, booted, reachable)[:2] == (shuts_down, kept)
    if tag is not None and reachable:  # the reaper reads the same tag the same way (planner/expiry.py)
        expiry = parse_expiry(tag)
        assert (expiry is not None) == (kept == tag)
        if expiry is not None:
            assert (expiry <= datetime.now(UTC)) == shuts_down


def test_dead_man_remembers_only_an_expiry_that_parses_and_stays_on_after_an_impossible_date(node):
    down, kept, log = _deadman(node, "2026-02-30T10:00:00Z")
    assert (down, kept) == (False, None)
    assert "ignoring the nemotron-deploy:expires-at tag 2026-02-30T10:00:00Z" in log
    assert "stopping 168 hours after boot" in log  # the fallback, said out loud
    # the next minutes: IMDS gone and the node past the longest TTL: it still stops
    assert _deadman(node, None, booted_hours_ago=169, reachable=False)[:2] == (True, None)


# The weights and vLLM's compile cache: streamed (h100-pilot) or staged and verified (weightsLoader: nvme).

def _settings(node) -> dict[str, str]:
    conf = (node.etc / "node.conf").read_text()
    return {k: v.strip("'") for k, _, v in (line.partition("=") for line in conf.splitlines()) if _ and "#" not in k}


def test_a_streamed_stack_stages_no_weights_but_restores_and_saves_its_compile_cache(node):
    node.disks(P5_DISKS)
    assert node("prepare").rc == 0
    cache_uri = _settings(node)["COMPILE_CACHE_URI"]
    assert cache_uri.startswith("s3://nemotron-model-mirror-us-east-1/nemotron-deploy/compile-cache/")
    run = node("stage")
    assert run.rc == 0, run.stderr
    syncs = [a for a in run.of("aws") if a[:2] == ["s3", "sync"]]
    assert syncs == [["s3", "sync", "--only-show-errors", "--region", "us-east-1", cache_uri,
                      f"{node.cache}/nemotron/vllm-cache"]]  # the cache only: vLLM streams the weights itself
    assert run.of("docker") == [["pull", "--quiet", "vllm/vllm-openai:v0.33.0"]]
    assert not (node.cache / "nemotron" / ".cache-restored").exists()  # nothing saved yet: a first start
    ready = node("ready")
    assert ready.rc == 0, ready.stderr
    assert [a for a in ready.of("aws") if a[:2] == ["s3", "sync"]] == [
        ["s3", "sync", "--only-show-errors", "--region", "us-east-1", f"{node.cache}/nemotron/vllm-cache", cache_uri]]
    assert "compile cache saved to " + cache_uri in ready.stderr


def test_a_restored_compile_cache_is_not_uploaded_again_and_a_failed_upload_never_fails_ready(node):
    node.disks(P5_DISKS)
    assert node("prepare").rc == 0
    cache_uri = _settings(node)["COMPILE_CACHE_URI"]
    run = node("stage", s3={cache_uri + "torch_compile_cache/abc/model.bin": "compiled"})
    assert run.rc == 0, run.stderr
    assert (node.cache / "nemotron" / "vllm-cache" / "torch_compile_cache" / "abc" / "model.bin").exists()
    ready = node("ready")
    assert ready.rc == 0 and not [a for a in ready.of("aws") if a[:2] == ["s3", "sync"]]
    (node.cache / "nemotron" / ".cache-restored").unlink()
    failed = node("ready", s3_sync_rc=1)
    assert failed.rc == 0 and "READY" in failed.stdout and "compile cache not saved" in failed.stderr


def _nvme_node(tmp_path, imds) -> Node:
    """h100-pilot with weightsLoader: nvme, through a copy of its stack file."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    text = (Node.STACKS / "Pulumi.h100-pilot.yaml").read_text() + "  nemotron-deploy:weightsLoader: nvme\n"
    (stacks / "Pulumi.h100-pilot.yaml").write_text(text)
    return Node(tmp_path / "node", imds, stacks_dir=stacks)


def _staged(node, files: dict[str, str], corrupt: str | None = None) -> dict[str, str]:
    """The stand-in S3 holding `files` under the stack's weights URI, with their manifest (one file's bytes
    changed after the manifest was written when `corrupt` names it)."""
    import hashlib

    weights = _settings(node)["WEIGHTS_S3_URI"]
    manifest = WeightsManifest("nvidia/x", "abc", tuple(
        WeightFile(path, len(content), hashlib.sha256(content.encode()).hexdigest())
        for path, content in files.items()))
    objects = {weights + path: ("X" + content[1:] if path == corrupt else content) for path, content in files.items()}
    return objects | {weights + "nemotron-weights-manifest.json": manifest.to_json()}


def test_an_nvme_stack_syncs_the_staged_copy_and_checks_every_file_against_the_manifest(tmp_path, imds):
    node = _nvme_node(tmp_path, imds)
    node.disks(P5_DISKS)
    assert node("prepare").rc == 0
    files = {f"model-{i:05d}-of-00020.safetensors": f"shard {i} " * 50 for i in range(20)} | {"config.json": "{}"}
    run = node("stage", s3=_staged(node, files))
    assert run.rc == 0, run.stderr
    assert "weights verified: 21 files match nemotron-weights-manifest.json" in run.stderr
    assert (node.cache / "nemotron" / ".staged").exists()


def test_a_staged_copy_that_differs_from_its_manifest_stops_the_boot(tmp_path, imds):
    node = _nvme_node(tmp_path, imds)
    node.disks(P5_DISKS)
    assert node("prepare").rc == 0
    files = {f"model-{i}.safetensors": f"shard {i} " * 50 for i in range(5)}
    run = node("stage", s3=_staged(node, files, corrupt="model-3.safetensors"))
    assert run.rc == 1
    assert "model-3.safetensors: FAILED" in run.stdout + run.stderr
    assert "the staged weights differ from nemotron-weights-manifest.json" in run.stderr
    assert not (node.cache / "nemotron" / ".staged").exists()  # the next start stages again


def test_an_nvme_stack_without_a_manifest_stops_the_boot(tmp_path, imds):
    node = _nvme_node(tmp_path, imds)
    node.disks(P5_DISKS)
    assert node("prepare").rc == 0
    run = node("stage", s3={})
    assert run.rc == 1 and "no readable nemotron-weights-manifest.json under s3://" in run.stderr
