"""What each `fab spark.<task>` does: gather facts -> plan -> act (unless dry run) -> gather again and verify,
on every node at once, into one TaskReport. The Fabric @task wrappers in tasks.py only parse flags and print.

The skeleton runs once, in converge.py; each workflow is a declaration of its units (gather, plan, apply, verify
per concern): linkflow.py (spark.link, spark.ssh), rayflow.py (spark.ray, spark.down), rdmaflow.py (spark.roce,
spark.nccl), vllmflow.py (spark.vllm), metricsflow.py (spark.metrics), weightsflow.py (spark.weights), units.py
(the recorded sessions and the env file they share). This module names them all and composes spark.doctor from them.
"""

from __future__ import annotations

from spark_cluster import raycluster, vllm_serve
from spark_cluster.converge import collect, new_reports
from spark_cluster.inventory import Inventory
from spark_cluster.linkflow import link_workflow, ssh_workflow
from spark_cluster.metricsflow import metrics_workflow
from spark_cluster.rayflow import down_workflow, ray_workflow
from spark_cluster.rdmaflow import nccl_workflow, roce_workflow
from spark_cluster.remote import NodeError, connect
from spark_cluster.report import TaskReport
from spark_cluster.units import gather_sessions
from spark_cluster.vllmflow import vllm_check, vllm_workflow
from spark_cluster.weightsflow import weights_workflow

__all__ = ["doctor_workflow", "down_workflow", "link_workflow", "metrics_workflow", "nccl_workflow", "ray_workflow",
           "roce_workflow", "ssh_workflow", "started_sessions", "vllm_check", "vllm_workflow", "weights_workflow"]


# ---- spark.doctor --------------------------------------------------------------------------------------------------

def doctor_workflow(inventory: Inventory, skip_bench: bool = False, parallel: bool = True) -> TaskReport:
    """spark.doctor: every check above, read-only, as one report (one line per check and node)."""
    checks: list[tuple[str, TaskReport]] = [
        ("link", link_workflow(inventory, verify_only=True, parallel=parallel)),
        ("ssh", ssh_workflow(inventory, verify_only=True, parallel=parallel)),
        ("roce", roce_workflow(inventory, skip_bench=skip_bench, parallel=parallel, applicable_only=True)),
        ("nccl", nccl_workflow(inventory, verify_only=True, skip_bench=skip_bench, parallel=parallel,
                               applicable_only=True)),
    ]
    started = started_sessions(inventory, parallel)
    if any(raycluster.SESSION in names for names in started.values()):
        checks.append(("ray", ray_workflow(inventory, verify_only=True, wait_s=5, parallel=parallel)))
    if vllm_serve.SESSION in started.get(inventory.head.name, ()):
        checks.append(("vllm", vllm_check(inventory, parallel)))
    merged = new_reports(inventory)
    for check, result in checks:
        for node in result.nodes:
            target = merged[node.node]
            detail = "; ".join(node.messages)
            if node.ok and node.not_applicable:
                target.messages.append(f"{check}: not applicable here: {node.not_applicable}")
            elif node.ok:
                target.messages.append(f"{check}: ok" + (f" ({detail})" if detail else ""))
            else:
                target.fail(f"{check}: FAILED: {detail}")
    for name, names in started.items():
        if not names:
            merged[name].messages.append("ray, vllm: not started by the toolkit (spark.ray, spark.vllm)")
    return TaskReport("spark.doctor", list(merged.values()))


def started_sessions(inventory: Inventory, parallel: bool = True) -> dict[str, tuple[str, ...]]:
    """Which recorded sessions (ray, vllm) run on each reachable node."""
    try:
        cluster = connect(inventory, parallel)
    except NodeError:
        return {}
    try:
        reports = new_reports(inventory)
        facts = collect(cluster, reports, gather_sessions(inventory, (raycluster.SESSION, vllm_serve.SESSION)))
        return {name: tuple(s for s, f in node_facts.items() if f.running) for name, node_facts in facts.items()}
    finally:
        cluster.close()
