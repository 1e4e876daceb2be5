"""spark.vllm (and the doctor's vLLM check) as declarations for converge(): gather, plan, apply, verify units."""

from __future__ import annotations

import shlex
from typing import Any

from spark_cluster import raycluster, remote, session, vllm_serve
from spark_cluster.bounded import attempts
from spark_cluster.converge import Done, Facts, Plans, Run, Stage, Task, converge, run_task
from spark_cluster.inventory import Inventory, Node
from spark_cluster.report import TaskReport
from spark_cluster.units import STOP_POLL_S, gather_sessions, stop_sessions

API_POLL_S = 5.0


class VllmUnits:
    """The units of one spark.vllm run for the planner's command."""

    def __init__(self, fit: Any, command: Any, wait_s: int, grace_s: float):
        self.fit, self.command, self.wait_s, self.grace_s = fit, command, wait_s, grace_s
        self.running: Any = None  # the head's vLLM session as gathered

    def begin(self, run: Run) -> None:
        run.note(run.head, f"planner: {self.fit.layout.describe()}")

    def gather(self, run: Run) -> Facts:
        """The sessions of every node (Ray must run on each) and the API key file on the head (mode 600)."""
        inventory, head = run.inventory, run.head
        sessions = run.collect(gather_sessions(inventory, (raycluster.SESSION, vllm_serve.SESSION)))
        for name, facts in sessions.items():
            if not facts[raycluster.SESSION].running:
                run.fail(name, "Ray is not running here: run spark.ray first")

        def key_fact(cxn: Any, node: Node) -> vllm_serve.KeyFileFacts:
            return vllm_serve.parse_key_fact(remote.run(cxn, vllm_serve.key_fact_command(inventory)).stdout)

        key = run.collect(key_fact, [head])
        run.fail_all({head: vllm_serve.key_file_problems(inventory, key[head]) if head in key else []})
        return sessions

    def plan(self, run: Run, sessions: Facts) -> Plans:
        """The launch on the head, unless vLLM already runs with this command (every node must be ok)."""
        step = vllm_serve.launch_step(run.inventory, self.command)
        if not run.all_ok():
            raise Done
        self.running = sessions[run.head][vllm_serve.SESSION]
        wanted = vllm_serve.settings_for(run.inventory, self.command)
        if self.running.running and self.running.record is not None and self.running.record.settings == wanted:
            run.note(run.head, "vLLM already runs with this command")
            return {}
        return {run.head: (step,)}

    def apply(self, run: Run, plans: Plans) -> None:
        """A running vLLM with other settings stops first (SIGTERM, grace, SIGKILL); then the launch."""
        if plans and self.running.running:
            if run.dry_run:
                run.reports[run.head].changes.append("restart: stop the running vLLM first")
            else:
                stop_sessions(run, [run.head], (vllm_serve.SESSION,), self.grace_s)
        run.apply(plans)

    def planned(self, run: Run, facts: Facts) -> None:
        run.reports[run.head].commands.append("argv: " + shlex.join(vllm_serve.argv_for(run.inventory, self.command)))

    def verify(self, run: Run, facts: Facts) -> None:
        """vLLM still runs a moment after the start; with wait_s, the API answers with the key."""
        inventory, head = run.inventory, run.head
        log = session.log_path(inventory.state_dir, vllm_serve.SESSION)
        if not run.ok(head):
            return
        if not vllm_alive(run):
            tail = run.run(head, session.log_tail_command(inventory.state_dir, vllm_serve.SESSION), check=False)
            run.fail(head, f"vLLM exited right after the start: {remote.last_line(tail.stdout)} (see {log})")
        elif self.wait_s <= 0:
            run.note(head, f"started; loading takes minutes: follow {log}, then spark.doctor")
        else:
            wait_for_api(run, self.wait_s, log)


def wait_for_api(run: Run, wait_s: int, log: str) -> None:
    """Poll the API (bounded) until it answers with the key or refuses wrongly."""
    head = run.head
    ready, findings = False, []
    for _ in attempts(wait_s, API_POLL_S):
        out = run.run(head, vllm_serve.api_check_command(run.inventory), check=False).stdout
        ready, findings = vllm_serve.api_findings(out)
        if ready or findings:
            break
    run.fail_all({head: findings})
    if not ready:
        run.fail(head, f"the API did not answer with the key within {wait_s}s (see {log})")
    elif not findings:
        run.note(head, "API ready; requests without the key are refused")


def vllm_alive(run: Run, settle_s: float = 3.0) -> bool:
    """Whether the vLLM session still runs a moment after its start (a missing binary or a bad flag ends it)."""
    gather = gather_sessions(run.inventory, (vllm_serve.SESSION,))
    head = run.head
    for _ in attempts(settle_s, STOP_POLL_S):
        facts = run.collect(gather, [head])
        if head not in facts or not facts[head][vllm_serve.SESSION].running:
            return False
    return True


def vllm_workflow(inventory: Inventory, dry_run: bool = False, wait_s: int = 0, grace_s: float = 10.0,
                  parallel: bool = True) -> TaskReport:
    """spark.vllm: the planner's vLLM command for this cluster size, started on the head over the running Ray
    cluster, API key from a mode-600 file. Raises PlanInputError (exit 2) for sizes the planner rejects."""
    fit, command = vllm_serve.serving_command(inventory)
    vllm = VllmUnits(fit, command, wait_s, grace_s)
    task = Task("spark.vllm", (Stage(gather=vllm.gather, plan=vllm.plan, apply=vllm.apply),),
                verify=vllm.verify, planned=vllm.planned, begin=vllm.begin)
    return converge(task, inventory, dry_run, parallel=parallel)


def vllm_check(inventory: Inventory, parallel: bool = True) -> TaskReport:
    """The running vLLM answers with the key and refuses requests without it."""
    def check(run: Run) -> None:
        head = run.head
        out = run.collect(lambda cxn, node: remote.run(cxn, vllm_serve.api_check_command(inventory),
                                                       check=False).stdout, [head])
        if head in out:
            ready, findings = vllm_serve.api_findings(out[head])
            run.fail_all({head: findings})
            if not ready:
                run.fail(head, "the API does not answer with the key (still loading? see the vllm log)")

    return run_task("spark.vllm", inventory, check, parallel=parallel)
