"""spark.metrics as a read-only task on run_task(): one snapshot script per node (GPUs, link counters, and on the
head vLLM's Prometheus metrics over loopback with the API key), its figures as the node's report lines. A source
that is missing (no nvidia-smi, no endpoint, no key file) is a line saying so, not a failure."""

from __future__ import annotations

from typing import Any

from spark_cluster import metrics, remote
from spark_cluster.converge import Run, run_task
from spark_cluster.inventory import Inventory, Node
from spark_cluster.report import TaskReport


def metrics_workflow(inventory: Inventory, parallel: bool = True) -> TaskReport:
    """spark.metrics: a snapshot per node; fails a node only where it cannot be reached."""
    def snapshot(cxn: Any, node: Node) -> list[str]:
        out = remote.run(cxn, metrics.snapshot_command(inventory, node), timeout_s=30, check=False).stdout
        return metrics.describe_snapshot(inventory, node, out)

    def body(run: Run) -> None:
        for name, lines in run.collect(snapshot, label="metrics: ").items():
            for line in lines:
                run.note(name, line)

    return run_task("spark.metrics", inventory, body, parallel=parallel)
