"""`python -m scripts.report bench-runs/*.json --out report.html`: the evaluation report (scripts/report/cli.py)."""

from scripts.report.cli import main

__all__ = ["main"]
