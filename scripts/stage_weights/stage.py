"""Staging: every file of a source into S3 (skipped when already there, resumed when a run was cut short), then the
manifest, last. A prefix without a manifest is incomplete by definition, so a staging that is going to change a
copy that had one removes it before the first byte changes, and writes the new one only once every file is in
place."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from planner.weights import WeightFile, WeightsManifest
from scripts.stage_weights.locations import StagedPrefix, StageError
from scripts.stage_weights.sources import HubSource, LocalSource, SourceFile, file_sha256
from scripts.stage_weights.staged import read_manifest, remove_manifest, write_manifest
from scripts.stage_weights.upload import FileOutcome, object_in_place, upload_file


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class StageReport:
    """What a staging did: per file, and in total (the figures `--json` prints)."""

    source: str
    to: str
    model: str
    revision: str
    files: list[FileOutcome]
    manifest_written: bool
    seconds: float

    def to_json(self) -> dict:
        return {"source": self.source, "to": self.to, "model": self.model, "revision": self.revision,
                "files": len(self.files), "total_bytes": sum(f.size for f in self.files),
                "bytes_uploaded": sum(f.bytes_uploaded for f in self.files),
                "parts_uploaded": sum(f.parts_uploaded for f in self.files),
                "parts_reused": sum(f.parts_reused for f in self.files),
                "files_skipped": sum(f.action == "skipped" for f in self.files),
                "files_resumed": sum(f.action == "resumed" for f in self.files),
                "manifest_written": self.manifest_written, "seconds": round(self.seconds, 3),
                "per_file": [asdict(f) for f in self.files]}


def stage(source: LocalSource | HubSource, source_text: str, dest: StagedPrefix, s3: Any, *, part_size: int,
          concurrency: int, progress: Callable[[str], None] = say) -> StageReport:
    started = time.monotonic()
    files = source.files()
    previous = read_manifest(s3, dest)
    changed = False

    def before_change() -> None:
        nonlocal changed
        if not changed and previous is not None:
            remove_manifest(s3, dest)
        changed = True

    outcomes = []
    for f in files:
        file_started = time.monotonic()
        outcome = stage_one(s3, dest, source, f, part_size=part_size, concurrency=concurrency,
                            before_change=before_change)
        outcomes.append(outcome)
        progress(describe(outcome, time.monotonic() - file_started))
    manifest = WeightsManifest(source.model, source.revision,
                               tuple(WeightFile(o.path, o.size, o.sha256) for o in outcomes))
    written = changed or previous is None or previous.to_json() != manifest.to_json()
    if written:
        write_manifest(s3, dest, manifest)
    progress(f"{'wrote' if written else 'kept'} the manifest {dest.manifest_uri}: {len(outcomes)} files, "
             f"{manifest.total_bytes:,} bytes")
    return StageReport(source_text, dest.uri(), source.model, source.revision, outcomes, written,
                       time.monotonic() - started)


def stage_one(s3: Any, dest: StagedPrefix, source: LocalSource | HubSource, f: SourceFile, *, part_size: int,
              concurrency: int, before_change: Callable[[], None]) -> FileOutcome:
    """One file: skipped when its object already holds it (checked before any download when the source knows the
    sha256), else hashed, checked against what the source says, and uploaded."""
    if f.sha256 and object_in_place(s3, dest, f.path, f.size, f.sha256):
        return FileOutcome(f.path, f.size, f.sha256, "skipped")
    with source.opened(f) as local:
        size = local.stat().st_size
        if size != f.size:
            raise StageError(f"{f.path}: {size:,} bytes read, the source lists {f.size:,}")
        sha256 = file_sha256(local)
        if f.sha256 and sha256 != f.sha256:
            raise StageError(f"{f.path}: the copy read has sha256 {sha256}, the source says {f.sha256}")
        if f.sha256 is None and object_in_place(s3, dest, f.path, size, sha256):
            return FileOutcome(f.path, size, sha256, "skipped")
        before_change()
        return upload_file(s3, dest, f.path, local, sha256, part_size=part_size, concurrency=concurrency)


def describe(outcome: FileOutcome, seconds: float) -> str:
    if outcome.action == "skipped":
        return f"skipped {outcome.path} ({outcome.size:,} bytes, already staged with its sha256)"
    rate = outcome.bytes_uploaded / 1e6 / seconds if seconds > 0 else 0.0
    reused = f", {outcome.parts_reused} reused" if outcome.parts_reused else ""
    return (f"{outcome.action} {outcome.path}: {outcome.bytes_uploaded:,} of {outcome.size:,} bytes sent in "
            f"{outcome.parts_uploaded} parts{reused}, {rate:,.0f} MB/s")
