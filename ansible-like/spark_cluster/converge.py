"""The one skeleton every `fab spark.<task>` runs, on every node at once, into one TaskReport:

    connect -> for each stage: gather facts -> plan steps -> verify-only: each planned step fails its node
                                                          | else apply them (a dry run only lists them)
                                                          -> where a step ran: gather again (wait, re-check)
            -> dry run: add what else the plan shows, stop | else: verify

A workflow declares its units (gather, plan, apply, verify functions per concern) as a Task of Stages and calls
converge(); a unit that completes the report early (a node the task needs failed) raises Done. run_task() is the
bare frame (connect, one Run, close) for the tasks that plan nothing (spark.down's stop, the vLLM API check).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from spark_cluster.inventory import Inventory, Node
from spark_cluster.remote import Cluster, NodeError, connect, describe_exception, run, run_steps
from spark_cluster.report import NodeReport, TaskReport
from spark_cluster.step import Step, as_user

Facts = dict[str, Any]  # by node name
Plans = dict[str, tuple[Step, ...]]  # by node name
NodeFn = Callable[[Any, Node], Any]  # (connection, node) -> a node's value


def progress(message: str) -> None:
    """A progress line for a person at a terminal (stderr, so --json output stays clean; silent in pipelines)."""
    if sys.stderr.isatty():
        print(f"... {message}", file=sys.stderr, flush=True)


def new_reports(inventory: Inventory, dry_run: bool = False) -> dict[str, NodeReport]:
    return {n.name: NodeReport(n.name, n.host, dry_run=dry_run) for n in inventory.nodes}


def collect(cluster: Cluster, reports: dict[str, NodeReport], fn: NodeFn,
            names: Iterable[str] | None = None, label: str = "") -> dict[str, Any]:
    """Fan `fn` out over the named nodes (default: those not failed yet); a node whose call raised is marked
    failed and left out of the result."""
    wanted = set(names) if names is not None else {n for n in reports if reports[n].ok}
    names = [n for n in reports if n in wanted]  # inventory order
    what = label.rstrip(": ") or getattr(fn, "__name__", "")
    progress(f"{what if what and not what.startswith('<') else 'facts'} on {', '.join(names)}")
    results = cluster.each(fn, names)
    values = {}
    for name, value in results.items():
        if isinstance(value, BaseException):
            reports[name].fail(f"{label}{describe_exception(value, cluster.connections[name])}")
        else:
            values[name] = value
    return values


def apply_steps(cluster: Cluster, reports: dict[str, NodeReport], plans: Plans, dry_run: bool) -> None:
    """Run each node's steps (or, in a dry run, only list them), all nodes at once."""
    user = cluster.inventory.user
    if dry_run:
        for name, steps in plans.items():
            reports[name].changes += [s.summary for s in steps]
            reports[name].commands += [as_user(s.command, user, s.privileged) for s in steps]
        return
    busy = [name for name, steps in plans.items() if steps and reports[name].ok]

    def act(cxn: Any, node: Node) -> list[str]:
        return run_steps(cxn, user, plans[node.name])

    for name, summaries in collect(cluster, reports, act, busy).items():
        reports[name].changes += summaries


def connect_or_fail(inventory: Inventory, task: str, parallel: bool = True,
                    dry_run: bool = False) -> tuple[Cluster | None, TaskReport, dict[str, NodeReport]]:
    """The cluster connections, the task's report and its rows by node name. Without connections (no known_hosts)
    every row has already failed for that one reason."""
    rows = new_reports(inventory, dry_run)
    report = TaskReport(task, list(rows.values()))
    try:
        return connect(inventory, parallel), report, rows
    except NodeError as exc:
        for row in rows.values():
            row.fail(str(exc))
        return None, report, rows


class Done(Exception):  # noqa: N818 - not an error: the report is complete
    """Raised by a unit when the report is complete: the rest of the task does not run."""


@dataclass
class Run:
    """One run of a task: the inventory, the connections, the report rows by node name and the mode."""

    inventory: Inventory
    cluster: Cluster
    reports: dict[str, NodeReport]
    dry_run: bool = False
    verify_only: bool = False

    @property
    def head(self) -> str:
        return self.inventory.head.name

    def ok(self, name: str) -> bool:
        return self.reports[name].ok

    def all_ok(self) -> bool:
        return all(r.ok for r in self.reports.values())

    def collect(self, fn: NodeFn, names: Iterable[str] | None = None, label: str = "") -> dict[str, Any]:
        return collect(self.cluster, self.reports, fn, names, label)

    def apply(self, plans: Plans) -> None:
        if plans:
            apply_steps(self.cluster, self.reports, plans, self.dry_run)

    def run(self, name: str, command: str, **kwargs: Any) -> Any:
        """One command on one node, outside the fan-out (its failure raises)."""
        return run(self.cluster.connections[name], command, **kwargs)

    def note(self, name: str, message: str) -> None:
        self.reports[name].messages.append(message)

    def fail(self, name: str, message: str) -> None:
        self.reports[name].fail(message)

    def fail_all(self, findings: dict[str, list[str]]) -> None:
        for name, messages in findings.items():
            for message in messages:
                self.reports[name].fail(message)

    def fail_steps(self, plans: Plans, template: str) -> None:
        """Each planned step fails its node: `template` with the step's summary for {}."""
        self.fail_all({name: [template.format(s.summary) for s in steps] for name, steps in plans.items()})

    def record_peer_checks(self, results: dict[str, list[str]], notes: dict[str, str]) -> None:
        """Record a check every node ran against its peers: its findings fail the node; otherwise the node gets its
        note: what it checked and passed, and which peers or paths were left out and why."""
        for name, findings in results.items():
            for finding in findings:
                self.reports[name].fail(finding)
            if not findings and notes.get(name):
                self.reports[name].messages.append(notes[name])


@dataclass(frozen=True)
class Stage:
    """One concern a task converges: its facts, the steps that close the gap, and what verify-only says of them."""

    plan: Callable[[Run, Facts], Plans]  # steps per node from the facts (it may fail nodes, or raise Done)
    gather: Callable[[Run], Facts] | None = None  # None: the facts the stage before left
    drift: str | None = "differs: would {}"  # verify-only: each planned step fails its node so; None: not planned
    differs: Callable[[Run, Facts], None] | None = None  # verify-only: what else differs, after the steps
    apply: Callable[[Run, Plans], None] | None = None  # None: run.apply (every node's steps, all at once)
    after_change: Callable[[Run, Facts, Plans], Facts] | None = None  # a step ran: gather again (wait, re-check)


@dataclass(frozen=True)
class Task:
    """A `fab spark.<task>` as a declaration: its stages, then what it verifies (not in a dry run)."""

    name: str
    stages: tuple[Stage, ...] = ()
    verify: Callable[[Run, Facts], None] | None = None  # after the stages, on the last stage's facts
    planned: Callable[[Run, Facts], None] | None = None  # a dry run: what else the plan shows
    begin: Callable[[Run], None] | None = None  # first, once connected


def each(fn: NodeFn, label: str = "") -> Callable[[Run], Facts]:
    """A stage's gather: `fn` on every node not failed yet."""
    return lambda r: r.collect(fn, label=label)


def regather(fn: NodeFn) -> Callable[[Run, Facts, Plans], Facts]:
    """A stage's after_change: `fn` again on the nodes that gave facts and have not failed since."""
    return lambda r, facts, plans: r.collect(fn, [n for n in facts if r.ok(n)])


def apply_to_ok(run: Run, plans: Plans) -> None:
    """A stage's apply that leaves out the nodes its plan failed."""
    run.apply({name: steps for name, steps in plans.items() if run.ok(name)})


def converge_stage(run: Run, stage: Stage, facts: Facts) -> Facts:
    """gather -> plan -> verify-only: drift | apply -> after a change: gather again. The facts, for what follows."""
    if stage.gather is not None:
        facts = stage.gather(run)
    if run.verify_only and stage.drift is None:
        return facts
    plans = stage.plan(run, facts)
    if run.verify_only:
        run.fail_steps(plans, stage.drift or "")
        if stage.differs is not None:
            stage.differs(run, facts)
        return facts
    (stage.apply or Run.apply)(run, plans)
    if stage.after_change is not None and not run.dry_run and any(plans.values()):
        facts = stage.after_change(run, facts, plans)
    return facts


def run_task(name: str, inventory: Inventory, body: Callable[[Run], None], dry_run: bool = False,
             verify_only: bool = False, parallel: bool = True) -> TaskReport:
    """Connect (every row fails when that fails), run `body` (Done ends it early), close; the report."""
    cluster, report, reports = connect_or_fail(inventory, name, parallel, dry_run)
    if cluster is None:
        return report
    try:
        body(Run(inventory, cluster, reports, dry_run, verify_only))
    except Done:
        pass
    finally:
        cluster.close()
    return report


def converge(task: Task, inventory: Inventory, dry_run: bool = False, verify_only: bool = False,
             parallel: bool = True) -> TaskReport:
    """Run a declared task: its stages in order, then (a dry run) `planned` and stop, or `verify`. In a run that is
    both a dry run and verify-only, verify-only wins: nothing is planned and the checks run (unless `planned`
    raises Done)."""
    def body(run: Run) -> None:
        if task.begin is not None:
            task.begin(run)
        facts: Facts = {}
        for stage in task.stages:
            facts = converge_stage(run, stage, facts)
        if run.dry_run and task.planned is not None:
            task.planned(run, facts)
        if run.dry_run and not run.verify_only:
            return
        if task.verify is not None:
            task.verify(run, facts)

    return run_task(task.name, inventory, body, dry_run, verify_only, parallel)
