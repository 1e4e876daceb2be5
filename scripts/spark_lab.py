"""The Spark lab: `up N` builds N fake DGX Sparks (network namespaces with a real sshd), `down` removes them.

    sudo .venv/bin/python -m scripts.spark_lab up 4            # writes /var/tmp/nemotron-spark-lab/lab/inventory.yaml
    .venv/bin/fab spark.link --inventory /var/tmp/nemotron-spark-lab/lab/inventory.yaml
    sudo .venv/bin/python -m scripts.spark_lab down

The work is done in ansible-like/spark_cluster/lab.py; this is argument parsing and output.
"""

from __future__ import annotations

import argparse
import json
import sys

from spark_cluster import lab

from planner.cli import run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark_lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create N lab nodes and write their inventory")
    up.add_argument("nodes", type=int, help=f"number of nodes, 1 to {lab.MAX_NODES}")
    up.add_argument("--index", type=int, default=0, help="selects 198.18.<index>.0/24 for management (0-255)")
    up.add_argument("--mtu", type=int, default=9000, help="the MTU the inventory asks for")
    up.add_argument("--network-backend", default="ip", choices=("ip", "netplan", "nmcli"))
    down = sub.add_parser("down", help="stop the lab's processes by pid and delete its namespaces")
    for command in (up, down):
        command.add_argument("--name", default="lab", help="lab name, 1-8 of a-z 0-9 (prefixes its namespaces)")
        command.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            layout = lab.up(args.nodes, args.name, args.index, args.mtu, args.network_backend)
            result = {"name": layout.name, "inventory": str(layout.inventory_file),
                      "nodes": [{"name": n.name, "namespace": n.namespace, "host": n.mgmt_address,
                                 "links": [a for _, a in n.links]} for n in layout.nodes]}
            text = [f"lab {layout.name}: {len(layout.nodes)} node(s); inventory {layout.inventory_file}"]
            text += [f"  {n['name']:6} {n['namespace']:10} ssh {n['host']:14} links {', '.join(n['links'])}"
                     for n in result["nodes"]]
        else:
            removed = lab.down(args.name)
            result = {"name": args.name, "removed_namespaces": removed}
            text = [f"lab {args.name}: removed {', '.join(removed) or 'nothing (not up)'}"]
    except lab.LabError as exc:
        print(f"spark_lab: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else "\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
