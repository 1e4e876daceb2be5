"""spark.ray and spark.down as declarations for converge(): their gather, plan, apply and verify units."""

from __future__ import annotations

from typing import Any

from spark_cluster import raycluster, remote, session, vllm_serve
from spark_cluster.converge import Done, Facts, Plans, Run, Stage, Task, converge, run_task
from spark_cluster.inventory import Inventory, Node
from spark_cluster.report import TaskReport
from spark_cluster.units import env_gatherer, env_plans, gather_sessions, stop_sessions


def token_digest_fact(cxn: Any, node: Node) -> str | None:
    return raycluster.parse_token_digest(remote.run(cxn, raycluster.AUTH_FILE_DIGEST).stdout)


class RayUnits:
    """The units of one spark.ray run; what the plan decided is kept for the apply."""

    def __init__(self, wait_s: int, grace_s: float):
        self.wait_s, self.grace_s = wait_s, grace_s
        self.envs: Plans = {}
        self.digests: dict[str, str | None] = {}
        self.token: str | None = None  # a new token (no head token yet), or the head's once it is read
        self.wanted = ""  # the token digest every node must have
        self.token_nodes: list[str] = []
        self.alive: set[str] | None = None
        self.ray_plan = raycluster.RayPlan({}, ())  # which nodes stop and start

    def gather(self, run: Run) -> Facts:
        """The env file (its steps planned at once), the auth-token digest and the Ray session of every node."""
        self.envs = env_plans(run, run.collect(env_gatherer(run.inventory)), require_rdma=False)
        self.digests = run.collect(token_digest_fact)
        sessions = run.collect(gather_sessions(run.inventory, (raycluster.SESSION,)))
        return {n: f[raycluster.SESSION] for n, f in sessions.items()}

    def plan(self, run: Run, facts: Facts) -> Plans:
        """Ray needs every node; the token, the cluster's health and which nodes stop and start. The env steps."""
        if len(facts) < len(run.inventory.nodes) or not run.ok(run.head):
            for name in facts:
                run.fail(name, "Ray needs every node: not started while a node is unreachable")
            raise Done
        if self.digests.get(run.head):
            self.wanted = self.digests[run.head] or ""
        else:
            self.token = raycluster.new_token()
            self.wanted = raycluster.token_digest(self.token)
        self.token_nodes = raycluster.token_targets(self.digests, self.wanted)
        self.alive = ray_health(run, facts)
        self.ray_plan = raycluster.plan_ray(run.inventory, facts, self.wanted, self.alive)
        return self.envs

    def differs(self, run: Run, facts: Facts) -> None:
        """Verify-only, after the env steps: the token, and Ray not running as planned."""
        for name in self.token_nodes:
            run.fail(name, "the Ray auth token differs from the head's (run spark.ray)")
        for name in self.ray_plan.start:
            run.fail(name, "Ray is not running with the inventory's settings or not alive in the cluster "
                     "(run spark.ray: it restarts what is unhealthy)")
        if self.alive is None and any(f.running for f in facts.values()):
            raise Done  # the cluster does not answer: no membership to check

    def apply(self, run: Run, envs: Plans) -> None:
        """The env files and tokens, then stop what restarts, then the head, then the workers."""
        if self.token_nodes and self.token is None and not run.dry_run:
            self.token = run.run(run.head, raycluster.AUTH_FILE_READ).stdout.strip()
        envs = dict(envs)
        for name in self.token_nodes:
            envs[name] = envs.get(name, ()) + (raycluster.token_step(self.token or ""),)
        run.apply(envs)
        self.stop(run)
        self.start(run)

    def stop(self, run: Run) -> None:
        if not self.ray_plan.stop:
            return
        if run.dry_run:
            for name in self.ray_plan.stop:
                run.reports[name].changes.append("restart: stop the running Ray first")
        else:
            stop_sessions(run, self.ray_plan.stop, (raycluster.SESSION,), self.grace_s)

    def start(self, run: Run) -> None:
        inventory, head, start = run.inventory, run.head, self.ray_plan.start
        run.apply({head: (raycluster.start_step(inventory, inventory.head, self.wanted),)} if head in start else {})
        if not run.ok(head):
            for name in start:
                if name != head:
                    run.fail(name, "not started: the Ray head did not start")
            raise Done
        run.apply({n: (raycluster.start_step(inventory, inventory.node(n), self.wanted),)
                   for n in start if n != head and run.ok(n)})

    def verify(self, run: Run, facts: Facts) -> None:
        verify_ray(run, self.wait_s)


def ray_health(run: Run, facts: dict[str, session.SessionFacts]) -> set[str] | None:
    """The link addresses the head's Ray cluster reports alive, asked once, bounded on the head; None when it does
    not answer (a dead GCS, a head that is not running). Not asked when no node runs Ray: all of it starts."""
    if not any(f.running for f in facts.values()):
        return None
    inventory = run.inventory
    connect_s = raycluster.HEALTH_CONNECT_S

    def list_nodes(cxn: Any, node: Node) -> list[dict] | None:
        out = remote.run(cxn, raycluster.nodes_script(inventory, 0, 0, connect_s),
                         timeout_s=raycluster.check_bound_s(0, connect_s), check=False)
        return raycluster.parse_nodes(out.stdout)

    listed = run.collect(list_nodes, [run.head], label="Ray health: ")
    alive = raycluster.alive_addresses(listed.get(run.head))
    if alive is None and run.ok(run.head):
        run.note(run.head, f"the Ray cluster at {raycluster.head_address(inventory)} does not answer (its GCS is down "
                 "or the head is not running): Ray is unhealthy")
    return alive


def verify_ray(run: Run, wait_s: int) -> None:
    """The head sees every node alive on its link address (waiting, bounded, for the nodes that started)."""
    inventory, head = run.inventory, run.head
    expected = sum(1 for r in run.reports.values() if r.ok)  # do not wait for a node that already failed to start

    def list_nodes(cxn: Any, node: Node) -> list[dict] | None:
        out = remote.run(cxn, raycluster.nodes_script(inventory, expected, wait_s),
                         timeout_s=raycluster.check_bound_s(wait_s))
        return raycluster.parse_nodes(out.stdout)

    listed = run.collect(list_nodes, [head], label="Ray cluster check: ")
    if head not in listed:
        return
    reported = listed[head] or []
    run.fail_all(raycluster.membership_findings(inventory, list(inventory.nodes), reported))
    alive = sum(1 for n in reported if n["alive"])
    run.note(head, f"Ray head {raycluster.head_address(inventory)}: {alive} node(s) alive")
    for node in inventory.nodes:
        if run.ok(node.name):
            run.note(node.name, f"in the Ray cluster on {node.links[0].ip}")


def ray_workflow(inventory: Inventory, dry_run: bool = False, verify_only: bool = False, wait_s: int = 60,
                 grace_s: float = 10.0, parallel: bool = True) -> TaskReport:
    """spark.ray: the env file on every node, Ray head on the first node and workers on the others, all bound to
    the first link address; then the head must see every node alive on its link address."""
    ray = RayUnits(wait_s, grace_s)
    stage = Stage(gather=ray.gather, plan=ray.plan, differs=ray.differs, apply=ray.apply)
    return converge(Task("spark.ray", (stage,), verify=ray.verify), inventory, dry_run, verify_only, parallel)


DOWN_SESSIONS = (vllm_serve.SESSION, raycluster.SESSION, raycluster.CHECK_SESSION)


def down_workflow(inventory: Inventory, dry_run: bool = False, grace_s: float = 10.0,
                  parallel: bool = True) -> TaskReport:
    """spark.down: stop what the toolkit started (vLLM, Ray) by the pids of its recorded sessions."""
    def down(run: Run) -> None:
        stop_sessions(run, list(run.reports), DOWN_SESSIONS, grace_s)
        for name, r in run.reports.items():
            if r.ok and not r.changes:
                run.note(name, "nothing started by the toolkit runs here")

    return run_task("spark.down", inventory, down, dry_run, parallel=parallel)
