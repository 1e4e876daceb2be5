"""Gigabytes through the real command line and a real moto server on 127.0.0.1: three shards of 2.2 GB in all,
staged with the default 64 MiB parts, verified, fetched in 128 MiB ranged GETs, and every fetched sha256
equal to the source's.

Slow on purpose (about a minute on 2 cores: writing, hashing and sending 2.2 GB three times over loopback), marked
`multi_gb`; `-m "not multi_gb"` leaves it out. Disk: at most about 5.5 GB at once (the source, moto's copy and the
parts of the file in flight); the source is removed before the fetch."""

from __future__ import annotations

import shutil

import pytest

from planner.weights import MANIFEST_NAME, parse_manifest
from tests.weights.staging import MIB, cli, cli_json, sha256_of, write_shard

SHARDS = {"model-00001-of-00003.safetensors": 1100 * MIB + 3,
          "model-00002-of-00003.safetensors": 700 * MIB,
          "model-00003-of-00003.safetensors": 300 * MIB + 1}


@pytest.mark.multi_gb
def test_gigabytes_are_staged_verified_and_fetched_intact(aws_env, bucket, tmp_path):
    source = tmp_path / "model"
    sums = {name: write_shard(source / name, size, seed) for seed, (name, size) in enumerate(SHARDS.items())}
    total = sum(SHARDS.values())
    assert total > 2.2e9
    uri = f"s3://{bucket}/nemotron/multi-gb"

    staged = cli_json(aws_env, str(source), "--to", uri)
    assert staged["bytes_uploaded"] == total and staged["parts_uploaded"] == 18 + 11 + 5
    assert cli(aws_env, "verify", uri).returncode == 0
    shutil.rmtree(source)

    target = tmp_path / "fetched"
    # moto answers every ranged GET by reading the whole object under the object's lock (moto 5.2.5), so 128 MiB
    # ranges keep this test at a minute; the default ranges are fetched by the other tests
    fetched = cli_json(aws_env, "fetch", uri, "--to", str(target), "--chunk-size-mib", "128")
    assert fetched["bytes_downloaded"] == total
    assert {name: sha256_of(target / name) for name in SHARDS} == sums
    manifest = parse_manifest((target / MANIFEST_NAME).read_text())
    assert {f.path: f.sha256 for f in manifest.files} == sums
