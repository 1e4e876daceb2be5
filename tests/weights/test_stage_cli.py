"""The real command line (`python -m scripts.stage_weights` in a subprocess) against a real moto server on
127.0.0.1, with a few MiB of shards and 5 MiB parts: staged, verified, fetched, rerun, killed and resumed,
corrupted, deleted, refused, and fed bad input."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time

import pytest

from planner.weights import MANIFEST_NAME, parse_manifest
from tests.weights.staging import MIB, REPO, cli, cli_argv, cli_json, sha256_of, write_shard

PART = ["--part-size-mib", "5"]


@pytest.fixture
def shards(tmp_path):
    """Two shards across 5 MiB part boundaries, a small config and an empty file, in a nested layout."""
    source = tmp_path / "model"
    sums = {"model-00001.safetensors": write_shard(source / "model-00001.safetensors", 12 * MIB + 7, 1),
            "model-00002.safetensors": write_shard(source / "model-00002.safetensors", 6 * MIB, 2),
            "tokenizer/config.json": write_shard(source / "tokenizer" / "config.json", 300, 3),
            "empty.txt": write_shard(source / "empty.txt", 0, 4)}
    return source, sums


def test_stage_verify_fetch_and_rerun(aws_env, s3, bucket, shards, tmp_path):
    source, sums = shards
    uri = f"s3://{bucket}/nemotron/r1"
    staged = cli_json(aws_env, str(source), "--to", uri, *PART, "--revision", "abc123")
    assert staged["bytes_uploaded"] == staged["total_bytes"] == 18 * MIB + 307
    assert staged["parts_uploaded"] == 3 + 2 + 1 and staged["parts_reused"] == 0 and staged["manifest_written"]
    manifest = parse_manifest(s3.get_object(Bucket=bucket, Key=f"nemotron/r1/{MANIFEST_NAME}")["Body"].read())
    assert {f.path: f.sha256 for f in manifest.files} == sums
    assert (manifest.model, manifest.revision) == ("model", "abc123")
    head = s3.head_object(Bucket=bucket, Key="nemotron/r1/model-00001.safetensors")
    assert head["Metadata"]["sha256"] == sums["model-00001.safetensors"] and head["ETag"].endswith('-3"')

    again = cli_json(aws_env, str(source), "--to", uri, *PART, "--revision", "abc123")
    assert again["bytes_uploaded"] == 0 and again["files_skipped"] == 4 and not again["manifest_written"]

    verified = cli(aws_env, "verify", uri)
    assert verified.returncode == 0 and verified.stdout.startswith("complete:"), verified.stdout + verified.stderr

    target = tmp_path / "fetched"
    fetched = cli_json(aws_env, "fetch", uri, "--to", str(target), "--chunk-size-mib", "5")
    assert fetched["bytes_downloaded"] == fetched["total_bytes"] and fetched["mismatched"] == []
    assert {path: sha256_of(target / path) for path in sums} == sums
    assert parse_manifest((target / MANIFEST_NAME).read_text()) == manifest
    assert not list(target.rglob("*.partial*"))
    refetched = cli_json(aws_env, "fetch", uri, "--to", str(target))
    assert refetched["bytes_downloaded"] == 0 and refetched["files_skipped"] == 4


def test_a_killed_staging_resumes_with_the_parts_already_uploaded(aws_env, s3, bucket, tmp_path):
    source = tmp_path / "model"
    total = 120 * MIB
    digest = write_shard(source / "big.safetensors", total, 7)
    key = "killed/big.safetensors"
    run = subprocess.Popen(cli_argv(str(source), "--to", f"s3://{bucket}/killed", *PART, "--concurrency", "1"),
                           cwd=REPO, env=aws_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
            if uploads:
                seen = len(s3.list_parts(Bucket=bucket, Key=key, UploadId=uploads[0]["UploadId"]).get("Parts", []))
                if seen >= 3:
                    break
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
    finally:
        run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL and seen >= 3, "the staging ended before it could be killed"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="killed/")  # no object, no manifest

    resumed = cli_json(aws_env, str(source), "--to", f"s3://{bucket}/killed", *PART)
    assert resumed["files_resumed"] == 1 and resumed["parts_reused"] >= seen
    assert resumed["bytes_uploaded"] + resumed["parts_reused"] * 5 * MIB == total  # the last part is never cut
    assert resumed["bytes_uploaded"] < total
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) == []
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    assert sha256_of_stream(body) == digest
    assert cli(aws_env, "verify", f"s3://{bucket}/killed").returncode == 0


def sha256_of_stream(body) -> str:
    digest = hashlib.sha256()
    for chunk in body.iter_chunks(8 * MIB):
        digest.update(chunk)
    return digest.hexdigest()


def test_a_corrupted_object_fails_the_fetch_and_a_rerun_repairs_it(aws_env, s3, bucket, shards, tmp_path):
    source, sums = shards
    uri = f"s3://{bucket}/corrupt"
    cli_json(aws_env, str(source), "--to", uri, *PART)
    key = "corrupt/model-00002.safetensors"
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(b ^ 0xFF for b in original[:4096]) + original[4096:])
    assert cli(aws_env, "verify", uri).returncode == 0  # the listing cannot see it: sizes are equal

    target = tmp_path / "fetched"
    failed = cli(aws_env, "fetch", uri, "--to", str(target))
    assert failed.returncode == 1, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m scripts.stage_weights: sha256 mismatch") and "model-00002.safetensors" in last
    assert "model-00001.safetensors" not in last and "Traceback" not in failed.stderr
    assert not (target / "model-00002.safetensors").exists() and not (target / MANIFEST_NAME).exists()
    assert sha256_of(target / "model-00001.safetensors") == sums["model-00001.safetensors"]
    (target / "model-00002.safetensors.partial.3fa9c1").write_bytes(b"a killed fetch's leftover")

    repaired = cli_json(aws_env, str(source), "--to", uri, *PART)  # the object lost its sha256 metadata
    assert [f["path"] for f in repaired["per_file"] if f["action"] != "skipped"] == ["model-00002.safetensors"]
    assert repaired["bytes_uploaded"] == 6 * MIB
    assert cli_json(aws_env, "fetch", uri, "--to", str(target))["bytes_downloaded"] == 6 * MIB
    assert not list(target.rglob("*.partial*"))


def test_verify_reports_a_deleted_object_and_a_missing_manifest(aws_env, s3, bucket, shards):
    source, _ = shards
    uri = f"s3://{bucket}/gone"
    cli_json(aws_env, str(source), "--to", uri, *PART)
    s3.delete_object(Bucket=bucket, Key="gone/tokenizer/config.json")
    missing = cli(aws_env, "verify", uri, "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout) == {"uri": uri, "complete": False,
                                          "problems": ["incomplete: tokenizer/config.json: missing"]}

    s3.delete_object(Bucket=bucket, Key=f"gone/{MANIFEST_NAME}")
    unmanifested = cli(aws_env, "verify", uri)
    assert unmanifested.returncode == 1
    assert unmanifested.stdout == f"incomplete: no manifest (s3://{bucket}/gone/{MANIFEST_NAME} is not there)\n"
    fetch = cli(aws_env, "fetch", uri, "--to", "/nonexistent-never-made")
    assert fetch.returncode == 1 and "incomplete: no manifest" in fetch.stderr


def test_an_aws_refusal_is_one_line_naming_the_call(aws_env, shards, tmp_path):
    source, _ = shards
    for argv in ([str(source), "--to", "s3://no-such-bucket-here/x"], ["verify", "s3://no-such-bucket-here/x"],
                 ["fetch", "s3://no-such-bucket-here/x", "--to", str(tmp_path / "out")]):
        done = cli(aws_env, *argv)
        lines = (done.stderr + done.stdout).strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr + done.stdout
        assert f"s3:GetObject on s3://no-such-bucket-here/x/{MANIFEST_NAME}: NoSuchBucket: " in lines[0]
    assert not (tmp_path / "out").exists()

    anonymous = {k: v for k, v in aws_env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    done = cli(anonymous, "verify", "s3://no-such-bucket-here/x")
    assert done.returncode == 1 and done.stderr.startswith(
        "python -m scripts.stage_weights: no AWS credentials: checked environment variables"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("argv", "flag"), [
    (["{missing}", "--to", "s3://bkt-x/p"], "SOURCE"),
    (["hf://not a repo", "--to", "s3://bkt-x/p"], "SOURCE"),
    (["ftp://host/x", "--to", "s3://bkt-x/p"], "SOURCE"),
    (["{source}", "--to", "gs://bkt-x/p"], "--to"),
    (["{source}", "--to", "s3://Bad_Bucket/p"], "--to"),
    (["{source}", "--to", "s3://bkt-x/a/../b"], "--to"),
    (["{source}", "--to", "s3://bkt-x/p", "--part-size-mib", "4"], "--part-size-mib"),
    (["{source}", "--to", "s3://bkt-x/p", "--part-size-mib", "5121"], "--part-size-mib"),
    (["{source}", "--to", "s3://bkt-x/p", "--concurrency", "0"], "--concurrency"),
    (["{source}", "--to", "s3://bkt-x/p", "--concurrency", "many"], "--concurrency"),
    (["{source}"], "--to"),
    (["verify", "s3:/bkt-x"], "URI"),
    (["fetch", "s3://bkt-x/p", "--to", "{source}/empty.txt"], "--to"),
    (["fetch", "s3://bkt-x/p", "--to", "{tmp}/d", "--chunk-size-mib", "0"], "--chunk-size-mib"),
])
def test_bad_input_is_one_line_naming_the_flag(aws_env, shards, tmp_path, argv, flag):
    source, _ = shards
    argv = [a.format(missing=tmp_path / "nope", source=source, tmp=tmp_path) for a in argv]
    done = cli(aws_env, *argv)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert flag in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()
