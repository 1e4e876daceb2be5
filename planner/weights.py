"""The checksum manifest of a staged model revision: what every copy of the weights is checked against.

`python -m scripts.stage_weights` writes it last, at `<staged prefix>/MANIFEST_NAME`, once every file is in place;
preflight reads it before a deploy, the EC2 boot script and `fab spark.weights` verify each copy against it. Its
absence means the staging is incomplete: a prefix without a manifest is never deployed from.

Pure: parsing and comparing only. The manifest is JSON:

    {"format": 1, "model": "nvidia/...", "revision": "<commit>", "files": [{"path": "a/b.safetensors",
     "size": 123, "sha256": "<64 hex>"}, ...]}

Paths are relative, POSIX, without `.` or `..` parts, so a manifest can never name a file outside the directory it
describes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from planner.errors import PlanInputError

MANIFEST_NAME = "nemotron-weights-manifest.json"
FORMAT = 1
MAX_FILES = 100_000
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PATH_PART = re.compile(r"^[A-Za-z0-9._+@=-][A-Za-z0-9._+@=, -]*$")


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative POSIX path
    size: int  # bytes
    sha256: str  # lower-case hex


@dataclass(frozen=True)
class WeightsManifest:
    model: str  # the model it was staged from, e.g. a Hugging Face repo id or a local directory's name
    revision: str  # the source's commit (Hugging Face) or "local"
    files: tuple[WeightFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def by_path(self) -> dict[str, WeightFile]:
        return {f.path: f for f in self.files}

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "model": self.model, "revision": self.revision,
                           "files": [{"path": f.path, "size": f.size, "sha256": f.sha256}
                                     for f in sorted(self.files, key=lambda f: f.path)]}, indent=1) + "\n"

    def sha256sum_lines(self) -> str:
        """The manifest as `sha256sum --check` reads it (two spaces: text mode, the GNU format)."""
        return "".join(f"{f.sha256}  {f.path}\n" for f in sorted(self.files, key=lambda f: f.path))


def check_relative_path(path: object, field: str = "path") -> str:
    """A manifest path: relative, POSIX, no empty, `.` or `..` part; else PlanInputError naming the field."""
    allowed = "a relative path of letters, digits and ._+@=-, without . or .. parts"
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or len(path) > 1024:
        raise PlanInputError(field, path, allowed)
    for part in path.split("/"):
        if part in ("", ".", "..") or not PATH_PART.match(part):
            raise PlanInputError(field, path, allowed)
    return path


def parse_manifest(text: str | bytes, source: str = MANIFEST_NAME) -> WeightsManifest:
    """A manifest from its JSON; PlanInputError (located at `source`) naming the first bad field."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanInputError("manifest", "(not JSON)", "the JSON a stage_weights run writes", source) from exc
    try:
        return _manifest(data)
    except PlanInputError as exc:
        raise exc.with_source(source) from None


def _manifest(data: object) -> WeightsManifest:
    if not isinstance(data, dict):
        raise PlanInputError("manifest", type(data).__name__, "a JSON object")
    if data.get("format") != FORMAT:
        raise PlanInputError("format", data.get("format"), str(FORMAT))
    model, revision, files = data.get("model"), data.get("revision"), data.get("files")
    for name, value in (("model", model), ("revision", revision)):
        if not isinstance(value, str) or not value or len(value) > 256:
            raise PlanInputError(name, value, "a non-empty string")
    if not isinstance(files, list) or not files or len(files) > MAX_FILES:
        raise PlanInputError("files", files if not isinstance(files, list) else f"{len(files)} entries",
                             f"a list of 1 to {MAX_FILES:,} files")
    seen: set[str] = set()
    entries = []
    for index, entry in enumerate(files):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            raise PlanInputError(where, entry, "an object with path, size and sha256")
        path = check_relative_path(entry.get("path"), f"{where}.path")
        size, digest = entry.get("size"), entry.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise PlanInputError(f"{where}.size", size, "a whole number of bytes, 0 or more")
        if not isinstance(digest, str) or not SHA256.match(digest):
            raise PlanInputError(f"{where}.sha256", digest, "64 lower-case hex digits")
        if path in seen:
            raise PlanInputError(f"{where}.path", path, "each path once")
        seen.add(path)
        entries.append(WeightFile(path, size, digest))
    return WeightsManifest(model, revision, tuple(entries))


def listing_problems(manifest: WeightsManifest, sizes: Mapping[str, int]) -> list[str]:
    """What a copy lacks against its manifest, from a listing (path -> size): missing files and wrong sizes, in
    path order; empty when every file is there at its size. Checksums are the reader's to verify."""
    problems = []
    for f in sorted(manifest.files, key=lambda f: f.path):
        size = sizes.get(f.path)
        if size is None:
            problems.append(f"{f.path}: missing")
        elif size != f.size:
            problems.append(f"{f.path}: {size:,} bytes, the manifest says {f.size:,}")
    return problems
