"""The README's stack table states what the planner computes, so the two cannot drift apart."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from planner.plan import plan_stack
from planner.stack_config import load_stack

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(?P<stack>[\w-]+)` \|.*\| (?P<max>\d+) \| (?P<margin>[\d.]+) \| ~?\$(?P<hourly>[\d,.]+)")
ROWS = {m["stack"]: m for line in (REPO / "README.md").read_text().splitlines() if (m := ROW.match(line))}


def test_readme_lists_every_shipped_stack():
    assert set(ROWS) == {p.name[len("Pulumi."):-len(".yaml")] for p in (REPO / "stacks").glob("Pulumi.*.yaml")}


@pytest.mark.parametrize("stack", sorted(ROWS))
def test_readme_row_matches_the_plan(stack):
    plan = plan_stack(load_stack(REPO / "stacks", stack), datetime(2026, 12, 1, tzinfo=UTC))
    row = ROWS[stack]
    assert int(row["max"]) == plan.fit.max_concurrent_sequences
    assert float(row["margin"]) == pytest.approx(plan.fit.margin_gib, abs=0.05)
    assert float(row["hourly"].replace(",", "")) == pytest.approx(plan.cost.usd_per_hour)
