"""What a staging copies from: a local directory, or one revision of a Hugging Face model repository.

A source lists its files (relative path, size and, where the source knows it before any byte is read, the sha256)
and hands out each file as a local path, one at a time. The Hugging Face adapter is thin on purpose: the revision's
listing with each file's LFS sha256 from `HfApi().model_info(..., files_metadata=True)`, and one `hf_hub_download`
at a time into a temporary directory that is removed once the file is uploaded, so the staging host needs the disk
of the largest file, not of the model. A file the hub names no sha256 for (a small non-LFS file: config.json, the
tokenizer) is hashed once downloaded. The token, where the repository is gated, is huggingface_hub's own (HF_TOKEN).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlanInputError
from planner.weights import MANIFEST_NAME, check_relative_path
from scripts.stage_weights.locations import StageError

HASH_CHUNK = 8 * 2**20
HUB_SCHEME = "hf://"
HUB_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
SOURCE_ALLOWED = "a directory of weight files, or hf://ORG/NAME (a Hugging Face model repository)"
SKIPPED_DIRS = frozenset({".git", ".cache"})  # git's objects, huggingface_hub's download metadata


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative POSIX path, as the manifest names it
    size: int
    sha256: str | None  # known before reading (a Hugging Face LFS file); None: computed from the bytes


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalSource:
    """A directory: every regular file under it (a manifest already there, .git/ and .cache/ left out)."""

    def __init__(self, root: Path, revision: str | None = None):
        if not root.is_dir():
            raise PlanInputError("SOURCE", str(root), SOURCE_ALLOWED)
        self.root = root
        self.model = root.resolve().name or "local"
        self.revision = revision or "local"

    def files(self) -> list[SourceFile]:
        found = []
        for directory, subdirs, names in os.walk(self.root):
            subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS)
            for name in sorted(names):
                full = Path(directory, name)
                relative = full.relative_to(self.root).as_posix()
                if relative == MANIFEST_NAME or not full.is_file():
                    continue
                check_relative_path(relative, "SOURCE file")
                found.append(SourceFile(relative, full.stat().st_size, None))
        if not found:
            raise PlanInputError("SOURCE", str(self.root), "a directory holding at least one file")
        return found

    @contextmanager
    def opened(self, f: SourceFile) -> Iterator[Path]:
        yield self.root / f.path


class HubSource:
    """One revision of a Hugging Face model repository. `api` is an `HfApi` (tests hand in a fake), `download`
    `hf_hub_download`; the revision is pinned to the commit the listing answered, so every file comes from it."""

    def __init__(self, repo_id: str, revision: str | None = None, api: Any = None, download: Any = None):
        if api is None or download is None:
            from huggingface_hub import HfApi, hf_hub_download

            api, download = api or HfApi(), download or hf_hub_download
        self.model, self._download = repo_id, download
        try:
            info = api.model_info(repo_id, revision=revision, files_metadata=True)
        except Exception as err:  # noqa: BLE001 - the hub's errors (not found, gated, offline) have no common base
            raise StageError(f"hf:model_info {repo_id}@{revision or 'main'}: {type(err).__name__}: "
                             f"{' '.join(str(err).split())[:300]}") from None
        self.revision = info.sha or revision or "main"
        self._siblings = list(info.siblings or [])

    def files(self) -> list[SourceFile]:
        found = []
        for sibling in self._siblings:
            check_relative_path(sibling.rfilename, "hub file")
            lfs = sibling.lfs
            size = lfs.size if lfs is not None else sibling.size
            if size is None:
                raise StageError(f"hf:model_info {self.model}: no size for {sibling.rfilename}")
            found.append(SourceFile(sibling.rfilename, size, lfs.sha256 if lfs is not None else None))
        if not found:
            raise StageError(f"hf:model_info {self.model}@{self.revision}: the revision holds no file")
        return sorted(found, key=lambda f: f.path)

    @contextmanager
    def opened(self, f: SourceFile) -> Iterator[Path]:
        workdir = tempfile.mkdtemp(prefix="stage-weights-")
        try:
            try:
                local = self._download(self.model, f.path, revision=self.revision, local_dir=workdir)
            except Exception as err:  # noqa: BLE001 - as above
                raise StageError(f"hf:hf_hub_download {self.model}/{f.path}: {type(err).__name__}: "
                                 f"{' '.join(str(err).split())[:300]}") from None
            yield Path(local)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def open_source(text: str, revision: str | None) -> LocalSource | HubSource:
    """The SOURCE argument: `hf://ORG/NAME` or a local directory; PlanInputError naming SOURCE otherwise."""
    if text.startswith(HUB_SCHEME):
        repo_id = text[len(HUB_SCHEME):].strip("/")
        if not HUB_REPO.match(repo_id):
            raise PlanInputError("SOURCE", text, SOURCE_ALLOWED)
        return HubSource(repo_id, revision)
    if "://" in text:
        raise PlanInputError("SOURCE", text, SOURCE_ALLOWED)
    return LocalSource(Path(text), revision)
