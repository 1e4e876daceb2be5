"""Fabric entry point: `fab --list` shows the DGX Spark tasks (`fab spark.link --inventory FILE`, ...).

The tasks live in ansible-like/spark_cluster (a directory whose name is not a Python identifier, hence the path).
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
for _path in (_ROOT, _ROOT / "ansible-like"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from invoke import Collection  # noqa: E402
from spark_cluster.tasks import spark  # noqa: E402

ns = Collection()
ns.add_collection(spark)

from spark_cluster.cli import guard_parse_errors  # noqa: E402

guard_parse_errors(ns)
