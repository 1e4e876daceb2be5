"""Fetching a model revision straight from Hugging Face to a local directory (a DGX Spark head with no S3 copy):
the same contract as `fetch` from S3. Each file comes through the hub adapter (sources.HubSource: one
`hf_hub_download` at a time, the commit the listing answered), is checked against the hub's LFS sha256 where the
hub names one, is moved into place only then, and is skipped on a rerun when it is already there at its size and
sha256. The manifest (the sha256 of every file, computed where the hub named none) is written last."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from planner.weights import MANIFEST_NAME, WeightFile, WeightsManifest
from scripts.stage_weights.fetch import PARTIAL, FetchReport
from scripts.stage_weights.locations import StageError
from scripts.stage_weights.sources import HubSource, SourceFile, file_sha256


def fetch_from_hub(source: HubSource, target: Path,
                   progress: Callable[[str], None] | None = None) -> FetchReport:
    """Every file of the revision into `target`, checked; StageError naming each file whose bytes are not the hub's
    sha256 (after the others were fetched)."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.monotonic()
    files = source.files()
    report = FetchReport(f"hf://{source.model}@{source.revision}", str(target), len(files),
                         sum(f.size for f in files))
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST_NAME).unlink(missing_ok=True)  # incomplete until every file is checked
    entries = []
    for f in files:
        local = target / f.path
        digest = _in_place(local, f)
        if digest is not None:
            report.files_skipped += 1
        else:
            digest = _download(source, f, local, report, say)
            if digest is None:
                continue
        entries.append(WeightFile(f.path, f.size, digest))
    report.seconds = time.monotonic() - started
    if report.mismatched:
        raise StageError(f"sha256 mismatch, not kept: {'; '.join(report.mismatched)}")
    manifest = WeightsManifest(source.model, source.revision, tuple(entries))
    (target / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return report


def _in_place(local: Path, f: SourceFile) -> str | None:
    """The sha256 of a file already fetched whole (its size, and the hub's sha256 where it names one), else None."""
    if not local.is_file() or local.stat().st_size != f.size:
        return None
    digest = file_sha256(local)
    return digest if f.sha256 in (None, digest) else None


def _download(source: HubSource, f: SourceFile, local: Path, report: FetchReport,
              say: Callable[[str], None]) -> str | None:
    partial = local.with_name(local.name + PARTIAL)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with source.opened(f) as downloaded:
        shutil.copyfile(downloaded, partial)
    digest = file_sha256(partial)
    if (f.sha256 is not None and digest != f.sha256) or partial.stat().st_size != f.size:
        partial.unlink(missing_ok=True)
        report.mismatched.append(f"{f.path} (sha256 {digest}, the hub says {f.sha256})")
        say(f"MISMATCH {f.path}: sha256 {digest}, the hub says {f.sha256}")
        return None
    os.replace(partial, local)
    report.bytes_downloaded += f.size
    say(f"fetched {f.path} ({f.size:,} bytes, sha256 checked)" if f.sha256 else
        f"fetched {f.path} ({f.size:,} bytes; the hub names no sha256 for it: recorded as read)")
    return digest
