"""spark.weights on run_task(): the model fetched once to the head, copied to the other nodes over the head's link
addresses, checked on every node against its manifest.

    facts on every node (tools, manifest, file sizes)
    -> source s3://: the head fetches when its copy is incomplete (weights.fetch_command)
    -> the head's manifest -> sha256sum --check on every node at once, only the files present at their size
    -> the head fails: nothing is copied | verify-only: what a node lacks fails it
    -> each other node (copy_parallel at once) drops its manifest, pulls what is missing, of another size or failed
       its checksum from the head over the link, checks the copied files, then copies the manifest last

A node that cannot be reached fails its row; the others go on. A rerun copies nothing where every file verifies.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from planner.errors import PlanInputError
from planner.weights import MANIFEST_NAME, WeightFile, WeightsManifest, parse_manifest
from spark_cluster import remote, weights
from spark_cluster.converge import Run, progress, run_task
from spark_cluster.inventory import Inventory, Node
from spark_cluster.remote import NodeError
from spark_cluster.report import TaskReport

FACTS_TIMEOUT_S = 120
SLACK_S = 30  # a long step's SSH wait outlasts its own `timeout` on the node by this much


def gather(inventory: Inventory) -> Any:
    def weights_facts(cxn: Any, node: Node) -> weights.WeightsFacts:
        out = remote.run(cxn, weights.facts_command(inventory.weights), timeout_s=FACTS_TIMEOUT_S).stdout
        return weights.parse_facts(out)
    return weights_facts


def run_with_input(cxn: Any, text: str, build: Callable[[str], str], timeout_s: int) -> Any:
    """Run `build(pipeline)` where `pipeline` prints `text` on the node: inline when it fits one command, else
    staged in pieces in a private temporary directory first (removed after)."""
    chunks = weights.input_chunks(text)
    if len(chunks) == 1:
        return remote.run(cxn, build(weights.inline_input(chunks[0])), timeout_s=timeout_s, check=False)
    folder = remote.run(cxn, "mktemp -d").stdout.strip()
    try:
        for chunk in chunks:
            remote.run(cxn, weights.stage_command(folder, chunk))
        return remote.run(cxn, build(weights.staged_input(folder)), timeout_s=timeout_s, check=False)
    finally:
        remote.run(cxn, f"rm -rf {shlex.quote(folder)}", check=False)


def hash_files(cxn: Any, inventory: Inventory, manifest: WeightsManifest, files: list[WeightFile]) -> dict[str, str]:
    """sha256sum --check of `files` on the node behind `cxn`, in weights.hash_jobs processes; path -> why it failed."""
    if not files:
        return {}
    settings = inventory.weights
    jobs = weights.hash_jobs(files, settings.hash_jobs)
    result = run_with_input(cxn, weights.verify_input(manifest, jobs),
                            lambda source: weights.verify_command(settings, len(jobs), source),
                            settings.timeout_s + SLACK_S)
    if result.exited == 124 or result.exited == 137:
        raise NodeError(f"sha256sum ran past weights.timeout_s ({settings.timeout_s}s) in {settings.dir}")
    return weights.parse_verify(result.stdout, jobs)


@dataclass
class Copied:
    stats: weights.RsyncStats | None
    failed: dict[str, str]  # path -> why, after the copy
    manifest_copied: bool


def abandon(run: Run, reason: str) -> None:
    """Every other node still ok fails for `reason` (the head it copies from failed)."""
    for name in run.reports:
        if name != run.head and run.ok(name):
            run.fail(name, reason)


def fetch(run: Run, facts: dict[str, weights.WeightsFacts], why: str) -> bool:
    """The head fetches weights.source (verify-only: that fails it; a dry run lists it). Whether a copy may follow."""
    inventory, head = run.inventory, run.head
    settings = inventory.weights
    summary = f"fetch {settings.source} to {settings.dir} ({why})"
    if run.verify_only:
        run.fail(head, f"differs: would {summary}")
        abandon(run, f"not checked: the head {head} has no complete copy yet")
        return False
    if run.dry_run:
        run.reports[head].changes.append(summary)
        run.reports[head].commands.append(weights.fetch_command(settings))
        for name in run.reports:
            if name != head and run.ok(name):
                address = weights.source_address(inventory, inventory.node(name))
                run.reports[name].changes.append(f"copy every file of the manifest the fetch writes from {head} at "
                                                 f"{address}, then the manifest")
        return False
    progress(f"weights: {summary} on {head}")
    result = run.run(head, weights.fetch_command(settings), timeout_s=settings.timeout_s + SLACK_S, check=False)
    if result.exited != 0:
        run.fail(head, f"{summary} failed (exit {result.exited}): "
                       f"{remote.last_line(result.stderr or result.stdout)}")
        abandon(run, f"not copied: the fetch on the head {head} failed")
        return False
    run.reports[head].changes.append(summary)
    facts.update(run.collect(gather(inventory), [head], label="weights: "))
    if not run.ok(head):
        abandon(run, f"not copied: the head {head} failed after the fetch (see its row)")
    return run.ok(head)


def head_manifest(run: Run, facts: weights.WeightsFacts) -> WeightsManifest | None:
    settings = run.inventory.weights
    where = f"{run.head}:{weights.manifest_path(settings)}"
    if facts.manifest is None:
        run.fail(run.head, f"no manifest {weights.manifest_path(settings)} on the head: put the model there with its "
                           f"manifest ({MANIFEST_NAME}, written last by `python -m scripts.stage_weights fetch`), or "
                           "set weights.source to an s3:// prefix or an hf:// repository")
        abandon(run, f"not copied: the head {run.head} has no manifest")
        return None
    try:
        return parse_manifest(facts.manifest, where)
    except PlanInputError as exc:
        run.fail(run.head, f"the head's manifest is not valid: {exc}")
        abandon(run, f"not copied: the head {run.head}'s manifest is not valid")
        return None


def weights_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False,
                     parallel: bool = True) -> TaskReport:
    """spark.weights: fetch once to the head, copy to the others over the link, verify every node."""
    settings = inventory.weights
    head = inventory.head.name

    def body(run: Run) -> None:
        copies = len(inventory.nodes) > 1
        facts: dict[str, weights.WeightsFacts] = run.collect(gather(inventory), label="weights: ")
        for name, node_facts in facts.items():
            missing = weights.missing_tools(node_facts, copies)
            if missing:
                run.fail(name, f"{', '.join(missing)} not found on the node (install them: apt install rsync "
                               "coreutils gzip)")
        if not run.ok(head):
            abandon(run, f"not copied: the head {head} failed (see its row); every copy comes from it")
            return

        if settings.source != "local":
            hf = facts[head]
            manifest = parse_ok(hf)
            problems = weights.size_problems(manifest, hf.sizes) if manifest else {}
            if manifest is None or problems:
                why = ("no manifest on the head" if hf.manifest is None else "the head's manifest is not valid"
                       if manifest is None else f"{len(problems)} file(s) missing or of another size on the head")
                if not fetch(run, facts, why):
                    return
        manifest = head_manifest(run, facts[head])
        if manifest is None:
            return
        run.note(head, weights.holding_line(settings, manifest))

        # size problems are known without hashing; everything present at its size is hashed, on every node at once
        sizes = {name: weights.size_problems(manifest, f.sizes) for name, f in facts.items()}
        if run.dry_run and not run.verify_only:
            dry_plan(run, manifest, facts, sizes)
            return

        def check(cxn: Any, node: Node) -> dict[str, str]:
            return hash_files(cxn, inventory, manifest, weights.sized_files(manifest, facts[node.name].sizes))

        hashed = run.collect(check, [n for n in facts if run.ok(n)], label="sha256sum --check: ")
        if head in hashed and (sizes[head] or hashed[head]) and settings.source != "local" and not run.verify_only:
            # the head's copy is a cache of the source: corrupt files go, and the fetch runs once more
            bad = {**sizes[head], **hashed[head]}
            if hashed[head]:
                run.run(head, weights.remove_files_command(settings, hashed[head]), check=False)
            before = facts[head].manifest
            if not fetch(run, facts, f"{len(bad)} file(s) failed their checksums"):
                return
            if facts[head].manifest != before:
                run.fail(head, "the manifest changed while fetching again (a new revision staged?): rerun")
                abandon(run, f"not copied: the head {head}'s manifest changed during the run")
                return
            sizes[head] = weights.size_problems(manifest, facts[head].sizes)
            hashed.update(run.collect(check, [head], label="sha256sum --check: "))
        if not run.ok(head):
            abandon(run, f"not copied: the head {head} failed (see its row); every copy comes from it")
            return
        head_bad = {**sizes[head], **hashed[head]}
        if head_bad:
            run.fail(head, f"the head's copy does not match its manifest: {weights.name_files(head_bad)}")
            abandon(run, f"not copied: the head {head}'s copy does not match its manifest")
            return
        run.note(head, weights.verified_line(len(manifest.files)))

        workers = [n for n in hashed if n != head and run.ok(n)]
        needs = {name: [f for f in manifest.files if f.path in sizes[name] or f.path in hashed[name]]
                 for name in workers}
        stale = {name: facts[name].manifest != facts[head].manifest for name in workers}
        if run.verify_only:
            for name in workers:
                bad = {**sizes[name], **hashed[name]}
                if bad:
                    run.fail(name, f"differs: would copy {len(bad)} file(s) from {head}: {weights.name_files(bad)}")
                elif stale[name]:
                    run.fail(name, f"differs: would copy the manifest from {head}")
                else:
                    run.note(name, weights.holding_line(settings, manifest))
                    run.note(name, weights.verified_line(len(manifest.files)))
            return

        copy_some(run, manifest, workers, needs, stale)

    return run_task("spark.weights", inventory, body, dry_run, verify_only, parallel)


def parse_ok(facts: weights.WeightsFacts) -> WeightsManifest | None:
    """The node's manifest when it is there and valid, else None."""
    if facts.manifest is None:
        return None
    try:
        return parse_manifest(facts.manifest)
    except PlanInputError:
        return None


def dry_plan(run: Run, manifest: WeightsManifest, facts: dict[str, weights.WeightsFacts],
             sizes: dict[str, dict[str, str]]) -> None:
    """A dry run: what each node would get, from the file sizes (no hashing: that is the real run's first step)."""
    inventory, head = run.inventory, run.head
    if sizes[head]:
        run.fail(head, f"the head's copy does not match its manifest: {weights.name_files(sizes[head])}")
        abandon(run, f"not copied: the head {head}'s copy does not match its manifest")
        return
    for name, node_facts in facts.items():
        if name == head or not run.ok(name):
            continue
        address = weights.source_address(inventory, inventory.node(name))
        files = [f for f in manifest.files if f.path in sizes[name]]
        row = run.reports[name]
        if files:
            row.changes.append(weights.copy_summary(files, head, address))
            row.commands.append(weights.pull_command(inventory, address, drop_manifest=True))
        if files or node_facts.manifest != facts[head].manifest:
            row.changes.append(f"copy the manifest from {head} at {address} (last, once every file verified)")
        run.note(name, "dry run: from file sizes only; a file of the right size that fails its checksum is copied "
                       "on the real run too")


def copy_some(run: Run, manifest: WeightsManifest, workers: list[str], needs: dict[str, list[WeightFile]],
              stale: dict[str, bool]) -> None:
    """Each node that lacks something pulls it from the head (at most copy_parallel at once), checks the copied
    files, then copies the manifest; the others are reported verified with nothing copied."""
    inventory, head = run.inventory, run.head
    settings = inventory.weights
    slots = threading.BoundedSemaphore(settings.copy_parallel)

    def pull(cxn: Any, address: str, paths: list[str], drop_manifest: bool) -> weights.RsyncStats | None:
        with slots:
            result = run_with_input(cxn, weights.file_list(paths),
                                    lambda source: weights.pull_command(inventory, address, drop_manifest, source),
                                    settings.timeout_s + SLACK_S)
        if result.exited != 0:
            raise NodeError(weights.rsync_failure(head, address, result.exited, result.stderr or result.stdout))
        return weights.parse_rsync_stats(result.stdout)

    def copy(cxn: Any, node: Node) -> Copied:
        address = weights.source_address(inventory, node)
        files = needs[node.name]
        stats = pull(cxn, address, [f.path for f in files], True) if files else None
        failed = hash_files(cxn, inventory, manifest, files)
        if failed:
            return Copied(stats, failed, False)
        pull(cxn, address, [MANIFEST_NAME], False)
        return Copied(stats, {}, True)

    busy = [n for n in workers if needs[n] or stale[n]]
    results = run.collect(copy, busy) if busy else {}
    for name in workers:
        if not run.ok(name):
            continue
        address = weights.source_address(inventory, inventory.node(name))
        done = results.get(name)
        row = run.reports[name]
        run.note(name, weights.holding_line(settings, manifest))
        stats = done.stats if done else None
        if stats is not None and stats.files:
            row.changes.append(weights.copy_summary(needs[name], head, address))
        run.note(name, weights.copied_line(stats, head, address))
        if done is not None and done.failed:
            run.fail(name, f"checksums still fail after the copy (manifest not copied): "
                           f"{weights.name_files(done.failed)}")
            continue
        if done is not None and done.manifest_copied:
            row.changes.append(f"copy the manifest from {head} (last, after every file verified)")
        run.note(name, weights.verified_line(len(manifest.files)))
