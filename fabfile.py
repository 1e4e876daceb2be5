"""Fabric entry point: `fab --list` shows the DGX Spark tasks (`fab spark.link --inventory FILE`, ...).

The tasks live in ansible-like/spark_cluster, installed with this project (`make venv`) as the package spark_cluster.
"""

from invoke import Collection
from spark_cluster.cli import guard_parse_errors
from spark_cluster.tasks import spark

ns = Collection()
ns.add_collection(spark)
guard_parse_errors(ns)
