"""`python -m scripts.stage_weights.bench` end to end at its smallest size (0.1 GB): it starts and stops its own
moto server, stages, measures every way and prints figures; nothing here judges speed. And its bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.weights.staging import REPO


def bench(*argv: str, home) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "scripts.stage_weights.bench", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_bench_measures_each_way_and_cleans_up(tmp_path):
    done = bench("--gb", "0.1", "--files", "2", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["bytes"] == 100_000_000 and report["files"] == 2
    assert set(report["figures"]) == {"stage", "ours", "s3transfer", "boto3", "aws s3 sync"}
    for name in ("stage", "ours", "s3transfer", "boto3"):
        assert report["figures"][name]["mb_per_s"] > 0
    assert report["figures"]["boto3"]["vs_boto3"] == 1.0


def test_the_bench_refuses_bad_sizes_in_one_line(tmp_path):
    for argv, flag in ((["--gb", "0"], "--gb"), (["--gb", "x"], "--gb"), (["--files", "65"], "--files")):
        done = bench(*argv, home=tmp_path)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and flag in done.stderr
