"""`fab spark.<task>`: thin Fabric tasks. Each loads the inventory (exit 2 on bad input), runs its workflow on all
nodes at once, prints the per-node table (or --json) and exits 1 when any node failed or a check did not pass."""

from __future__ import annotations

import sys

from fabric import task
from invoke import Collection
from invoke.exceptions import Exit

from planner.errors import PlanInputError
from spark_cluster import workflows
from spark_cluster.inventory import Inventory, inventory_path, load_inventory
from spark_cluster.report import TaskReport, print_report

INVENTORY_HELP = "inventory YAML (default: $NEMOTRON_SPARK_INVENTORY or ansible-like/inventory/spark.yaml)"
COMMON_HELP = {"inventory": INVENTORY_HELP, "dry-run": "gather facts and print the plan; change nothing",
               "json": "print one JSON object instead of the table"}


def load(inventory: str | None) -> Inventory:
    try:
        return load_inventory(inventory_path(inventory))
    except PlanInputError as exc:
        print(f"spark: {exc}", file=sys.stderr)
        raise Exit(code=2) from exc


def seconds(value: object, flag: str, default: float, whole: bool = False) -> float:
    """A duration flag as typed (`--wait-s 30`; None: not given, the default): a number >= 0, else one line, exit 2.

    The task's parameter defaults to None so that Fabric's parser passes the text through instead of failing on it.
    """
    if value is None:
        return default
    try:
        number = int(value) if whole else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number != number or number in (float("inf"), float("-inf")) or number < 0:
        kind = "a whole number of seconds" if whole else "a number of seconds"
        print(f"spark: {flag}: {str(value)!r} is not valid; allowed: {kind}, 0 or more", file=sys.stderr)
        raise Exit(code=2)
    return number


def finish(report: TaskReport, as_json: bool) -> None:
    print_report(report, as_json)
    if not report.ok:
        raise Exit(code=report.exit_code)


@task(help={**COMMON_HELP, "verify-only": "change nothing; fail where a node differs from the inventory"})
def link(c, inventory=None, dry_run=False, verify_only=False, json=False):
    """Link addresses and MTU (netplan / nmcli / ip), then MTU match and jumbo don't-fragment ping mesh."""
    finish(workflows.link_workflow(load(inventory), dry_run=dry_run, verify_only=verify_only), json)


spark = Collection("spark")
spark.add_task(link)


@task(help={**COMMON_HELP, "verify-only": "change nothing; only check the logins"})
def ssh(c, inventory=None, dry_run=False, verify_only=False, json=False):
    """Passwordless SSH between all nodes over the link addresses; host keys into known_hosts (strict checking)."""
    finish(workflows.ssh_workflow(load(inventory), dry_run=dry_run, verify_only=verify_only), json)


spark.add_task(ssh)


@task(help={**COMMON_HELP, "verify-only": "change nothing; check the env file and that every node is in the cluster",
            "wait-s": "seconds to wait for every node to join (bounded; default 60)",
            "grace-s": "seconds between SIGTERM and SIGKILL when a running Ray must restart (default 10)"})
def ray(c, inventory=None, dry_run=False, verify_only=False, wait_s=None, grace_s=None, json=False):
    """Ray head on the first node, workers on the others, on the link addresses, env file on every node."""
    wait, grace = int(seconds(wait_s, "--wait-s", 60, whole=True)), seconds(grace_s, "--grace-s", 10)
    finish(workflows.ray_workflow(load(inventory), dry_run=dry_run, verify_only=verify_only, wait_s=wait,
                                  grace_s=grace), json)


@task(help={"inventory": INVENTORY_HELP, "dry-run": "list what would be stopped; stop nothing",
            "grace-s": "seconds between SIGTERM and SIGKILL (default 10)", "json": COMMON_HELP["json"]})
def down(c, inventory=None, dry_run=False, grace_s=None, json=False):
    """Stop what the toolkit started (vLLM, Ray) by the pids of its recorded sessions; never by name."""
    grace = seconds(grace_s, "--grace-s", 10)
    finish(workflows.down_workflow(load(inventory), dry_run=dry_run, grace_s=grace), json)


spark.add_task(ray)
spark.add_task(down)


@task(help={"inventory": INVENTORY_HELP, "skip-bench": "only devices and GID indexes, no ib_write_bw",
            "json": COMMON_HELP["json"]})
def roce(c, inventory=None, skip_bench=False, json=False):
    """RoCE devices (ibdev2netdev), GID index lookup, ib_write_bw per node pair and link half, 175 Gb/s gate."""
    finish(workflows.roce_workflow(load(inventory), skip_bench=skip_bench), json)


@task(help={**COMMON_HELP, "verify-only": "change nothing; check the env file",
            "skip-bench": "write/check the env file only, no all_gather_perf"})
def nccl(c, inventory=None, dry_run=False, verify_only=False, skip_bench=False, json=False):
    """NCCL/UCX/Gloo env file on every node (both RoCE halves), all_gather_perf via mpirun, busbw judged."""
    finish(workflows.nccl_workflow(load(inventory), dry_run=dry_run, verify_only=verify_only,
                                   skip_bench=skip_bench), json)


@task(help={**COMMON_HELP, "wait-s": "seconds to wait for the API to answer with the key (default 0: do not wait)",
            "grace-s": "seconds between SIGTERM and SIGKILL when a running vLLM must restart (default 10)"})
def vllm(c, inventory=None, dry_run=False, wait_s=None, grace_s=None, json=False):
    """Multi-node vLLM serve with the planner's layout for this cluster size; API key from a file on the head."""
    wait, grace = int(seconds(wait_s, "--wait-s", 0, whole=True)), seconds(grace_s, "--grace-s", 10)
    inv = load(inventory)
    try:
        report = workflows.vllm_workflow(inv, dry_run=dry_run, wait_s=wait, grace_s=grace)
    except PlanInputError as exc:
        print(f"spark.vllm: {exc}", file=sys.stderr)
        raise Exit(code=2) from exc
    finish(report, json)


spark.add_task(roce)
spark.add_task(nccl)
spark.add_task(vllm)


@task(help={"inventory": INVENTORY_HELP, "skip-bench": "skip ib_write_bw and all_gather_perf",
            "json": COMMON_HELP["json"]})
def doctor(c, inventory=None, skip_bench=False, json=False):
    """Every check above, read-only, as one report."""
    finish(workflows.doctor_workflow(load(inventory), skip_bench=skip_bench), json)


spark.add_task(doctor)


@task(help={"inventory": INVENTORY_HELP, "json": COMMON_HELP["json"]})
def metrics(c, inventory=None, json=False):
    """Read-only snapshot per node: GPU memory and utilisation, link counters, vLLM's metrics on the head."""
    finish(workflows.metrics_workflow(load(inventory)), json)


spark.add_task(metrics)


@task(help={**COMMON_HELP, "verify-only": "copy nothing; check every node's files against the manifest (sha256)"})
def weights(c, inventory=None, dry_run=False, verify_only=False, json=False):
    """Model weights fetched once to the head, copied to the others over the link (rsync), sha256-checked on all."""
    finish(workflows.weights_workflow(load(inventory), dry_run=dry_run, verify_only=verify_only), json)


spark.add_task(weights)
