"""`python -m scripts.stage_weights.bench [--gb N] [--files N] [--json]`: how fast the fetch path is beside plain
boto3, on this machine, against a local moto server (started here on 127.0.0.1, stopped at the end).

It writes N GB of shards, stages them, then downloads the same objects four ways into fresh folders and prints
MB/s for each and its ratio to plain boto3:
  ours         `fetch` (s3transfer, 32 ranged GETs of 32 MiB in flight over all files, every sha256 checked)
  s3transfer   the same TransferConfig without the checksums or the manifest (what the checking costs)
  boto3        `client.download_file` per file with boto3's default TransferConfig (10 GETs of 8 MiB)
  aws s3 sync  when the `aws` command is installed (it says so when it is not)

It prints figures and asserts nothing about speed. What a local moto server measures is mostly moto: moto 5.2.5
answers every ranged GET by reading the whole object under that object's lock, so fewer, larger ranges win there
by far more than they would on S3 (docs/weights.md). Requires moto (requirements-dev.txt; `make bench`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from planner.cli import OneLineParser, number, run_main, whole
from planner.errors import PlanInputError
from scripts.stage_weights.fetch import DEFAULT_CHUNK_MIB, DEFAULT_CONCURRENCY, MIB, fetch, transfer_config
from scripts.stage_weights.locations import StagedPrefix
from scripts.stage_weights.sources import LocalSource
from scripts.stage_weights.stage import stage

PROG = "python -m scripts.stage_weights.bench"
BUCKET = "weights-bench"
SERVER_START_S = 30


def write_shard(path: Path, size: int, seed: int) -> str:
    """`size` bytes quickly: 1 MiB of os.urandom repeated, each block stamped with the seed and its own counter, so
    no two blocks (nor two shards) are alike and no part's MD5 repeats. Returns the sha256 of what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = bytearray(os.urandom(MIB))
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for block, offset in enumerate(range(0, size, MIB)):
            base[:16] = seed.to_bytes(8, "big") + block.to_bytes(8, "big")
            data = bytes(base[:min(MIB, size - offset)])
            digest.update(data)
            fh.write(data)
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    """moto's server in a process of its own (so it does not share this process's interpreter lock)."""
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)  # noqa: S310 - loopback
            return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"moto did not answer on 127.0.0.1:{port} within {SERVER_START_S} s")


def local_only_env(port: int) -> None:
    """This process talks to the local server only, with fake credentials and no AWS files."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",  # noqa: S106 - moto
                      AWS_CONFIG_FILE="/nonexistent/aws-config", AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-creds",
                      AWS_EC2_METADATA_DISABLED="true")


def timed(run: Callable[[], object]) -> float:
    started = time.monotonic()
    run()
    return time.monotonic() - started


def measure(s3, dest: StagedPrefix, keys: list[str], work: Path) -> dict[str, float | None]:
    """Seconds for each way, each into a fresh folder that is removed after."""
    def into(name: str) -> Path:
        folder = work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        return folder

    def plain(config: TransferConfig | None, folder: Path) -> None:
        for key in keys:
            s3.download_file(BUCKET, dest.key(key), str(folder / key.replace("/", "_")), Config=config)

    seconds: dict[str, float | None] = {}
    folder = into("ours")
    seconds["ours"] = timed(lambda: fetch(s3, dest, folder, progress=lambda _: None))
    shutil.rmtree(folder)
    folder = into("s3transfer")
    seconds["s3transfer"] = timed(lambda: plain(transfer_config(DEFAULT_CONCURRENCY, DEFAULT_CHUNK_MIB * MIB),
                                                folder))
    shutil.rmtree(folder)
    folder = into("boto3")
    seconds["boto3"] = timed(lambda: plain(TransferConfig(), folder))
    shutil.rmtree(folder)
    aws = shutil.which("aws")
    seconds["aws s3 sync"] = None
    if aws:
        folder = into("awscli")
        command = [aws, "s3", "sync", "--only-show-errors", dest.uri(), str(folder)]
        started = time.monotonic()
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode == 0:
            seconds["aws s3 sync"] = time.monotonic() - started
        else:
            print(f"aws s3 sync failed ({done.returncode}): {' '.join(done.stderr.split())[:200]}", file=sys.stderr)
        shutil.rmtree(folder)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__)
    parser.add_argument("--gb", type=number, default=2.0, help="gigabytes of shards (10^9 bytes), 0.1 to 50")
    parser.add_argument("--files", type=whole, default=3, help="shards, 1 to 64")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if not 0.1 <= args.gb <= 50:
            raise PlanInputError("--gb", args.gb, "a number from 0.1 to 50")
        if not 1 <= args.files <= 64:
            raise PlanInputError("--files", args.files, "a whole number from 1 to 64")
    except PlanInputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    port = free_port()
    server = start_moto(port)
    work = Path(tempfile.mkdtemp(prefix="stage-weights-bench-"))
    try:
        local_only_env(port)
        s3 = boto3.client("s3", config=Config(max_pool_connections=DEFAULT_CONCURRENCY + 4))
        s3.create_bucket(Bucket=BUCKET)
        total = int(args.gb * 1e9)
        sizes = [total // args.files + (1 if i < total % args.files else 0) for i in range(args.files)]
        source = work / "source"
        for i, size in enumerate(sizes, 1):
            write_shard(source / f"model-{i:05d}-of-{args.files:05d}.safetensors", size, i)
        dest = StagedPrefix(BUCKET, "bench")
        stage_s = timed(lambda: stage(LocalSource(source), str(source), dest, s3, part_size=64 * MIB,
                                      concurrency=8, progress=lambda _: None))
        keys = sorted(p.name for p in source.iterdir())
        shutil.rmtree(source)
        seconds = {"stage": stage_s, **measure(s3, dest, keys, work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.terminate()
        server.wait(timeout=30)
    report(seconds, total, args.files, args.json)
    return 0


def report(seconds: dict[str, float | None], total: int, files: int, as_json: bool) -> None:
    rates = {name: (total / 1e6 / s if s else None) for name, s in seconds.items()}
    base = rates["boto3"]
    figures = {name: {"seconds": None if s is None else round(s, 2),
                      "mb_per_s": None if rates[name] is None else round(rates[name], 1),
                      "vs_boto3": None if not (rates[name] and base) else round(rates[name] / base, 2)}
               for name, s in seconds.items()}
    if as_json:
        print(json.dumps({"bytes": total, "files": files, "cpus": os.cpu_count(), "figures": figures}, indent=1))
        return
    print(f"{total / 1e9:.2f} GB in {files} files, moto on 127.0.0.1, {os.cpu_count()} CPUs")
    for name, figure in figures.items():
        if figure["seconds"] is None:
            why = "the aws command is not installed" if shutil.which("aws") is None else "it failed"
            print(f"  {name:12} not measured ({why})")
            continue
        ratio = f"  x{figure['vs_boto3']:.2f} boto3" if name != "stage" and figure["vs_boto3"] else ""
        print(f"  {name:12} {figure['seconds']:8.1f} s  {figure['mb_per_s']:8.1f} MB/s{ratio}")


if __name__ == "__main__":
    sys.exit(run_main(main))
