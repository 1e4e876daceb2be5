"""spark.weights, pure: the scripts a node runs and parsers of what they print (no SSH here).

The model is fetched once, to the head (or is already there: `source: local`), checked against its manifest
(planner/weights.py, written last by `python -m scripts.stage_weights fetch`), then every other node pulls what it
lacks from the head over the head's link address (QSFP) with rsync over ssh: strict host keys, no password, the
node-to-node trust `fab spark.ssh` sets up. Every node checks its copy with `sha256sum --check` against the manifest's
lines, in `hash_jobs` processes at once; the manifest is copied last, once every file of the node has verified.

- facts_command / parse_facts: which tools a node has, its manifest (base64) and the sizes of the files in the dir;
- verify_command / verify_input / parse_verify: `sha256sum --quiet --check` over jobs balanced by size;
- rsync_argv / pull_command / parse_rsync_stats: the copy from the head, and what it moved.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from planner.weights import MANIFEST_NAME, WeightFile, WeightsManifest
from spark_cluster.inventory import Inventory, Node, WeightsSettings
from spark_cluster.step import shell_path

MARK = "### "
TOOLS = ("rsync", "sha256sum", "timeout", "gzip")
KILL_AFTER_S = 10  # `timeout -k`: SIGKILL this long after the SIGTERM at the bound
RSYNC_IO_TIMEOUT_S = 60  # rsync gives up when no data moves for this long (a peer gone mid-copy)
SSH_OPTIONS = "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10"
SHOWN_FILES = 10  # files a report line names before "and N more"
# A list a node reads (files to copy, checksums to check) travels inside commands, gzip + base64, in pieces well under
# the kernel's 128 KiB limit on one argument (Fabric's stdin feeds a byte per 10 ms: too slow for a long list).
INPUT_CHUNK = 64 * 1024


def input_chunks(text: str) -> list[str]:
    """`text` gzipped and base64-encoded, in pieces of at most INPUT_CHUNK characters (one piece at least)."""
    blob = base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    return [blob[i:i + INPUT_CHUNK] for i in range(0, len(blob), INPUT_CHUNK)] or [""]


def inline_input(chunk: str) -> str:
    """A pipeline that prints the text of a one-piece input."""
    return f"printf %s {chunk} | base64 -d | gunzip"


def staged_input(folder: str) -> str:
    """A pipeline that prints the text of an input whose pieces were appended to FOLDER/input (stage_command)."""
    return f"base64 -d < {shlex.quote(folder)}/input | gunzip"


def stage_command(folder: str, chunk: str) -> str:
    return f"printf %s {chunk} >> {shlex.quote(folder)}/input"


# ---- facts ---------------------------------------------------------------------------------------------------------

def manifest_path(settings: WeightsSettings) -> str:
    return f"{settings.dir}/{MANIFEST_NAME}"


def facts_command(settings: WeightsSettings) -> str:
    """The node's tools, its manifest (`present BASE64` or `absent`) and `SIZE<TAB>PATH` of every file in the dir."""
    folder, manifest = shell_path(settings.dir), shell_path(manifest_path(settings))
    tools = " ".join(TOOLS)
    return (f"echo '{MARK}tools'; for t in {tools}; do command -v $t >/dev/null 2>&1 && echo $t; done; "
            f"echo '{MARK}manifest'; if [ -f {manifest} ]; then printf 'present '; base64 -w0 < {manifest}; echo; "
            f"else echo absent; fi; "
            f"echo '{MARK}listing'; if [ -d {folder} ]; then cd {folder} && find . -type f -printf '%s\\t%P\\n'; fi; "
            f"echo '{MARK}end'")


@dataclass(frozen=True)
class WeightsFacts:
    tools: frozenset[str]
    manifest: bytes | None  # the manifest file's bytes, None when absent
    sizes: dict[str, int]  # relative path -> bytes, every regular file under the dir


def parse_facts(text: str) -> WeightsFacts:
    section = None
    tools: set[str] = set()
    manifest: bytes | None = None
    sizes: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith(MARK) and line[len(MARK):].strip() in ("tools", "manifest", "listing", "end"):
            section = line[len(MARK):].strip()
            continue
        if section == "tools" and line.strip():
            tools.add(line.strip())
        elif section == "manifest" and line.startswith("present"):
            try:
                manifest = base64.b64decode(line[len("present"):].strip(), validate=True)
            except (binascii.Error, ValueError):
                manifest = b""  # present but unreadable: parse_manifest says what is wrong
        elif section == "listing":
            size, tab, path = line.partition("\t")
            if tab and size.isdigit():
                sizes[path] = int(size)
    return WeightsFacts(frozenset(tools), manifest, sizes)


def missing_tools(facts: WeightsFacts, copies: bool) -> list[str]:
    """What a node lacks: sha256sum and timeout everywhere, rsync where a copy runs (both ends)."""
    wanted = TOOLS if copies else tuple(t for t in TOOLS if t != "rsync")
    return [tool for tool in wanted if tool not in facts.tools]


def size_problems(manifest: WeightsManifest, sizes: dict[str, int]) -> dict[str, str]:
    """path -> why, for the manifest's files that are missing or of another size than it says."""
    problems = {}
    for f in manifest.files:
        size = sizes.get(f.path)
        if size is None:
            problems[f.path] = "missing"
        elif size != f.size:
            problems[f.path] = f"{size:,} bytes, the manifest says {f.size:,}"
    return problems


def sized_files(manifest: WeightsManifest, sizes: dict[str, int]) -> list[WeightFile]:
    """The manifest's files present at their size: the ones worth hashing."""
    return [f for f in manifest.files if sizes.get(f.path) == f.size]


# ---- verification: sha256sum --check, in parallel ------------------------------------------------------------------

def hash_jobs(files: Iterable[WeightFile], jobs: int) -> list[list[WeightFile]]:
    """Split files over at most `jobs` sha256sum processes, the largest first onto the least loaded (by bytes)."""
    ordered = sorted(files, key=lambda f: (-f.size, f.path))
    bins: list[list[WeightFile]] = [[] for _ in range(max(1, min(jobs, len(ordered))))]
    loads = [0] * len(bins)
    for f in ordered:
        i = loads.index(min(loads))
        bins[i].append(f)
        loads[i] += f.size + 1
    return [b for b in bins if b]


def verify_input(manifest: WeightsManifest, jobs: list[list[WeightFile]]) -> str:
    """What verify_command reads on stdin: each manifest line (sha256sum's format) after its job's number."""
    lines = []
    for index, files in enumerate(jobs):
        subset = WeightsManifest(manifest.model, manifest.revision, tuple(files)).sha256sum_lines()
        lines += [f"{index} {line}" for line in subset.splitlines()]
    return "".join(f"{line}\n" for line in lines)


def verify_command(settings: WeightsSettings, jobs: int, source: str) -> str:
    """`source` (a pipeline printing verify_input) feeds, in the model dir, one `sha256sum --quiet --check` per job
    at once (each on its own list in a private temporary directory, removed after); prints `### job N rc=R` and that
    job's failures. Bounded by weights.timeout_s."""
    folder = shell_path(settings.dir)
    script = "\n".join([
        'tmp=$(mktemp -d) || exit 1',
        'trap \'rm -rf "$tmp"\' EXIT',
        'cat > "$tmp/all"',
        'awk -v d="$tmp" \'{ j = $1; sub(/^[0-9]+ /, ""); print > (d "/job" j) }\' "$tmp/all"',
        f'cd {folder} || exit 3',
        f'for j in $(seq 0 {jobs - 1}); do',
        '  ( sha256sum --quiet --check "$tmp/job$j" > "$tmp/out$j" 2>&1; echo $? > "$tmp/rc$j" ) &',
        'done',
        'wait',
        f'for j in $(seq 0 {jobs - 1}); do',
        f'  printf \'{MARK}job %s rc=%s\\n\' "$j" "$(cat "$tmp/rc$j" 2>/dev/null || echo none)"; cat "$tmp/out$j"',
        'done',
    ])
    return f"{source} | timeout -k {KILL_AFTER_S} {settings.timeout_s} sh -c {shlex.quote(script)}"


_JOB = re.compile(rf"^{MARK}job (\d+) rc=(\S+)$")
_FAILED = re.compile(r"^(.*): FAILED( open or read)?$")
CHECKSUM_MISMATCH = "checksum mismatch"
UNREADABLE = "missing or unreadable"


def parse_verify(text: str, jobs: list[list[WeightFile]]) -> dict[str, str]:
    """path -> why it failed (empty: every file verified). sha256sum --quiet prints only the failures; a job that
    gave no result, or failed without naming a file, fails all of its files with its last line."""
    results: dict[int, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        match = _JOB.match(line)
        if match:
            current = int(match.group(1))
            results[current] = (match.group(2), [])
        elif current is not None:
            results[current][1].append(line)
    failed: dict[str, str] = {}
    for index, files in enumerate(jobs):
        paths = {f.path for f in files}
        if index not in results:
            failed.update({p: "not checked (no result from sha256sum)" for p in sorted(paths)})
            continue
        rc, output = results[index]
        named = {}
        for line in output:
            match = _FAILED.match(line.strip())
            if match and match.group(1) in paths:
                named[match.group(1)] = UNREADABLE if match.group(2) else CHECKSUM_MISMATCH
        if rc != "0" and not named:
            last = next((x.strip() for x in reversed(output) if x.strip()), f"exit {rc}")
            named = {p: f"not checked ({last[:200]})" for p in sorted(paths)}
        failed.update(named)
    return failed


# ---- the copy: rsync over ssh from the head's link address ---------------------------------------------------------

def source_address(inventory: Inventory, node: Node) -> str:
    """The head's link address a node copies from: the other nodes spread over the head's links in turn."""
    head = inventory.head
    others = [n.name for n in inventory.nodes if n.name != head.name]
    return head.links[others.index(node.name) % len(head.links)].ip


def remote_dir(folder: str) -> str:
    """The dir as rsync names it on the far side: relative to the login's home for `~/...` (no shell expands there)."""
    return folder[2:] if folder.startswith("~/") else folder


def rsync_argv(inventory: Inventory, address: str) -> list[str]:
    """rsync from the head at its link `address` (the file list on its stdin); the destination is added by
    pull_command. ssh refuses unknown or changed host keys and never asks for a password; no secret in argv."""
    settings = inventory.weights
    return ["rsync", "-e", f"{SSH_OPTIONS} -p {inventory.port}", "--files-from=-", "--inplace", "--partial",
            "--ignore-times", "--no-whole-file", "--times", f"--timeout={RSYNC_IO_TIMEOUT_S}", "--stats",
            f"{inventory.user}@{address}:{remote_dir(settings.dir)}/"]


def pull_command(inventory: Inventory, address: str, drop_manifest: bool, source: str = "cat") -> str:
    """Make the dir, drop the node's manifest first when files are about to change (a dir mid-copy never claims to be
    complete), then rsync the files `source` lists (a pipeline printing file_list) from the head into it; bounded
    by weights.timeout_s."""
    settings = inventory.weights
    folder = shell_path(settings.dir)
    drop = f"rm -f {shell_path(manifest_path(settings))} && " if drop_manifest else ""
    return (f"mkdir -p {folder} && {drop}{source} | timeout -k {KILL_AFTER_S} {settings.timeout_s} "
            f"{shlex.join(rsync_argv(inventory, address))} {folder}/")


def file_list(paths: Iterable[str]) -> str:
    """rsync's --files-from=- input: one relative path a line (manifest paths hold no newline)."""
    return "".join(f"{p}\n" for p in paths)


@dataclass(frozen=True)
class RsyncStats:
    files: int  # regular files transferred
    bytes: int  # their total size
    literal: int  # bytes sent as data (the rest matched what the node already had)


def _number(text: str) -> int:
    digits = re.sub(r"[^0-9]", "", text)
    return int(digits) if digits else 0


def parse_rsync_stats(text: str) -> RsyncStats | None:
    """From `rsync --stats`; None where the statistics are not there (rsync failed first)."""
    found = {}
    for key, pattern in (("files", r"^Number of regular files transferred: ([\d,.]+)"),
                         ("bytes", r"^Total transferred file size: ([\d,.]+)"),
                         ("literal", r"^Literal data: ([\d,.]+)")):
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            return None
        found[key] = _number(match.group(1))
    return RsyncStats(**found)


def rsync_failure(head: str, address: str, rc: int, output: str) -> str:
    """One line for a copy that failed, with the remedy when the node cannot log in to the head's link address."""
    lines = [x.strip() for x in output.splitlines() if x.strip()]
    # rsync's own closing lines ("rsync error: ... (code 255) at io.c") say less than ssh's reason before them
    telling = [x for x in lines if not x.startswith(("rsync error:", "rsync: connection unexpectedly closed",
                                                      "rsync: [receiver]", "rsync: [sender]"))]
    last = ((telling or lines or ["(no output)"])[-1])[:300]
    line = f"copy from {head} at {address} failed (rsync exit {rc}): {last}"
    if rc == 124 or rc == 137:
        return f"{line}: ran past weights.timeout_s"
    if rc == 255 or any(s in output for s in ("Host key verification failed", "Permission denied", "Connection")):
        line += (f"; this node logs in to {head}'s link address with strict host keys and no password: run "
                 "`fab spark.ssh` first (and `fab spark.link` for the link addresses)")
    return line


def fetch_command(settings: WeightsSettings) -> str:
    """On the head: drop its manifest (the fetch writes it last), then weights.fetch_command, bounded."""
    command = settings.fetch_command.format(source=shlex.quote(settings.source), dir=shell_path(settings.dir))
    folder = shell_path(settings.dir)
    return (f"mkdir -p {folder} && rm -f {shell_path(manifest_path(settings))} && "
            f"timeout -k {KILL_AFTER_S} {settings.timeout_s} sh -c {shlex.quote(command)}")


def remove_files_command(settings: WeightsSettings, paths: Iterable[str]) -> str:
    """Remove listed files of the dir (corrupt copies on the head, before fetching them again)."""
    quoted = " ".join(shlex.quote(p) for p in sorted(paths))
    return f"cd {shell_path(settings.dir)} && rm -f -- {quoted}"


# ---- report lines --------------------------------------------------------------------------------------------------

def holding_line(settings: WeightsSettings, manifest: WeightsManifest) -> str:
    return (f"{settings.dir}: {len(manifest.files)} files, {manifest.total_bytes:,} bytes "
            f"({manifest.model} @ {manifest.revision})")


def copied_line(stats: RsyncStats | None, head: str = "", address: str = "") -> str:
    if stats is None or not stats.files:
        return "copied 0 files, 0 bytes this run"
    return (f"copied {stats.files} file(s), {stats.bytes:,} bytes this run from {head} at {address} "
            f"({stats.literal:,} bytes of literal data)")


def verified_line(count: int) -> str:
    return f"verified {count} files against the manifest (sha256): ok"


def name_files(problems: dict[str, str]) -> str:
    """`a (why), b (why)` for the first files, then how many more."""
    paths = sorted(problems)
    named = ", ".join(f"{p} ({problems[p]})" for p in paths[:SHOWN_FILES])
    return named + (f" and {len(paths) - SHOWN_FILES} more" if len(paths) > SHOWN_FILES else "")


def copy_summary(files: list[WeightFile], head: str, address: str) -> str:
    total = sum(f.size for f in files)
    return f"copy {len(files)} file(s), {total:,} bytes from {head} at {address}: " + ", ".join(
        f.path for f in files[:SHOWN_FILES]) + (f" and {len(files) - SHOWN_FILES} more" if len(files) > SHOWN_FILES
                                                else "")
