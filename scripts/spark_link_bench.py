"""Time `spark.link` (converge + MTU check + jumbo ping mesh) on lab clusters of 1, 2, 4 and 8 nodes.

    sudo .venv/bin/python -m scripts.spark_link_bench                 # parallel fan-out (ThreadingGroup)
    sudo .venv/bin/python -m scripts.spark_link_bench --serial        # also one node after another, for comparison

Each measurement gets a fresh lab (unconfigured links), so every run does the full work: facts, plan, act, verify;
then a `--verify-only` run on the converged lab times the checks alone (facts, MTU check, jumbo ping mesh). With
`--repeat N` each figure is the median of N fresh labs (single runs of well under a second are noisy).
The work is done by ansible-like/spark_cluster (lab.py, workflows.py); this is argument parsing and output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from spark_cluster import lab, workflows
from spark_cluster.inventory import load_inventory

from planner.cli import run_main

LAB_NAME = "bench"
LAB_INDEX = 230  # management addresses 198.18.230.0/24


def measure_once(nodes: int, parallel: bool) -> tuple[float, float, list[str]]:
    """Wall times of one spark.link run on a fresh lab of `nodes` nodes and of a verify-only run after it."""
    name = f"{LAB_NAME}{nodes}"
    lab.down(name)
    layout = lab.up(nodes, name, LAB_INDEX + nodes)
    try:
        inventory = load_inventory(layout.inventory_file)
        started = time.perf_counter()
        report = workflows.link_workflow(inventory, parallel=parallel)
        wall = time.perf_counter() - started
        started = time.perf_counter()
        verify = workflows.link_workflow(inventory, verify_only=True, parallel=parallel)
        verify_wall = time.perf_counter() - started
    finally:
        lab.down(name)
    failed = [f"{n.node}: {'; '.join(n.messages)}" for r in (report, verify) for n in r.nodes if not n.ok]
    return wall, verify_wall, failed


def measure(nodes: int, parallel: bool, repeat: int = 1) -> dict:
    """Median wall times over `repeat` fresh labs of `nodes` nodes."""
    runs = [measure_once(nodes, parallel) for _ in range(repeat)]
    failed = [f for _, _, fs in runs for f in fs]
    return {"nodes": nodes, "mode": "parallel" if parallel else "serial",
            "wall_s": round(statistics.median(r[0] for r in runs), 3),
            "verify_s": round(statistics.median(r[1] for r in runs), 3), "runs": repeat,
            "ok": not failed, "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark_link_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4, 8], help="lab sizes (1-8)")
    parser.add_argument("--serial", action="store_true", help="also time a serial fan-out for comparison")
    parser.add_argument("--repeat", type=int, default=3, help="fresh labs per figure (the median is reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        lab.require_root()
        results = []
        for nodes in args.nodes:
            for parallel in ([True, False] if args.serial else [True]):
                results.append(measure(nodes, parallel, max(1, args.repeat)))
                if not args.json:
                    r = results[-1]
                    print(f"{r['nodes']:>2} node(s) {r['mode']:>8}: {r['wall_s']:6.2f} s  verify-only "
                          f"{r['verify_s']:6.2f} s  "
                          f"{'ok' if r['ok'] else 'FAILED ' + ' | '.join(r['failed'])}", flush=True)
    except lab.LabError as exc:
        print(f"spark_link_bench: {exc}", file=sys.stderr)
        return 2
    parallel = {r["nodes"]: r["wall_s"] for r in results if r["mode"] == "parallel"}
    summary = {"results": results}
    if 1 in parallel and len(parallel) > 1:
        summary["largest_over_one_node"] = round(parallel[max(parallel)] / parallel[1], 2)
        verify = {r["nodes"]: r["verify_s"] for r in results if r["mode"] == "parallel"}
        summary["largest_over_one_node_verify"] = round(verify[max(verify)] / verify[1], 2)
    if args.json:
        print(json.dumps(summary))
    elif "largest_over_one_node" in summary:
        print(f"{max(parallel)} nodes cost {summary['largest_over_one_node']}x the wall time of 1 node "
              f"({summary['largest_over_one_node_verify']}x for verify-only)")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
