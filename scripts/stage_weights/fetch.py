"""Fetching a staged copy to a local directory: the download path of every node (the Spark head, an EC2 server's
NVMe RAID). Only what the manifest names is fetched, and every file is checked against it.

The transfers are s3transfer's (boto3's TransferManager): ranged GETs of `chunk_size` bytes, `concurrency` at a
time across all the files, each file written to `<name>.partial` and renamed to its name only once its sha256 is the
manifest's. A file already there at its size and sha256 is skipped, so a rerun after a kill fetches only what is
missing (a file cut short is fetched again whole, its leftovers removed). The manifest is written into the directory
last; a directory without it is incomplete, like a prefix.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig, create_transfer_manager

from planner.weights import MANIFEST_NAME
from scripts.aws import CALL_FAILURES
from scripts.stage_weights.locations import StagedPrefix, StageError, aws_failure
from scripts.stage_weights.sources import file_sha256
from scripts.stage_weights.staged import NO_MANIFEST, read_manifest

MIB = 2**20
DEFAULT_CONCURRENCY = 32  # ranged GETs in flight, over all files
DEFAULT_CHUNK_MIB = 32  # bytes per ranged GET
PARTIAL = ".partial"


def transfer_config(concurrency: int, chunk_size: int) -> TransferConfig:
    """s3transfer's classic manager (no CRT: awscrt is not a dependency), many ranged GETs of large chunks."""
    return TransferConfig(multipart_threshold=chunk_size, multipart_chunksize=chunk_size, max_concurrency=concurrency,
                          preferred_transfer_client="classic")


@dataclass
class FetchReport:
    source: str
    to: str
    files: int = 0
    total_bytes: int = 0
    bytes_downloaded: int = 0
    files_skipped: int = 0
    mismatched: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"source": self.source, "to": self.to, "files": self.files, "total_bytes": self.total_bytes,
                "bytes_downloaded": self.bytes_downloaded, "files_skipped": self.files_skipped,
                "mismatched": self.mismatched, "seconds": round(self.seconds, 3),
                "mb_per_s": round(self.bytes_downloaded / 1e6 / self.seconds, 1) if self.seconds > 0 else None}


def fetch(s3: Any, dest: StagedPrefix, target: Path, *, concurrency: int = DEFAULT_CONCURRENCY,
          chunk_size: int = DEFAULT_CHUNK_MIB * MIB, progress: Callable[[str], None] | None = None) -> FetchReport:
    """Fetch the copy at `dest` into `target`; StageError when it has no manifest, an AWS call is refused, or a
    file's sha256 is not the manifest's (after the other files were fetched: one line naming every such file)."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.monotonic()
    manifest = read_manifest(s3, dest)
    if manifest is None:
        raise StageError(f"{NO_MANIFEST} at {dest.manifest_uri}: the copy is incomplete, nothing fetched")
    report = FetchReport(dest.uri(), str(target), len(manifest.files), manifest.total_bytes)
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST_NAME).unlink(missing_ok=True)  # the directory is incomplete until every file is checked
    wanted = []
    for f in sorted(manifest.files, key=lambda f: f.path):
        local = target / f.path
        if local.is_file() and local.stat().st_size == f.size and file_sha256(local) == f.sha256:
            report.files_skipped += 1
        else:
            wanted.append(f)
    if report.files_skipped:
        say(f"skipped {report.files_skipped} file(s) already in {target} with their sha256")
    named = {target / f.path for f in manifest.files}
    with create_transfer_manager(s3, transfer_config(concurrency, chunk_size)) as manager:
        futures = []
        for f in wanted:
            partial = target / (f.path + PARTIAL)
            partial.parent.mkdir(parents=True, exist_ok=True)
            for stale in partial.parent.glob(partial.name + "*"):  # a killed fetch's, and s3transfer's inside it
                if stale not in named:
                    stale.unlink()
            futures.append((f, partial, manager.download(dest.bucket, dest.key(f.path), str(partial))))
        for f, partial, future in futures:
            try:
                future.result()
            except CALL_FAILURES as err:
                raise aws_failure(err, dest.uri(f.path)) from None
            digest = file_sha256(partial)
            if digest != f.sha256:
                partial.unlink(missing_ok=True)
                report.mismatched.append(f"{f.path} (sha256 {digest}, the manifest says {f.sha256})")
                say(f"MISMATCH {f.path}: sha256 {digest}, the manifest says {f.sha256}")
                continue
            os.replace(partial, target / f.path)
            report.bytes_downloaded += f.size
            say(f"fetched {f.path} ({f.size:,} bytes, sha256 checked)")
    report.seconds = time.monotonic() - started
    if report.mismatched:
        raise StageError(f"sha256 mismatch, not kept: {'; '.join(report.mismatched)}")
    (target / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return report
