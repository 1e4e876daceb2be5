"""The stack budget (issue 7): every cloud stack declares one AWS cost budget whose limit is the plan's max spend,
filtered on the stack's cost-allocation tag, tagged like the rest, alerting the configured people; the reaper
recognises it; the policy rules and `scripts.plan` stay green."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
import yaml

from components.offline import run_program
from planner.budget import BUDGET_NAME_PREFIX, alert_emails, budget_limit, period_end, plan_budget
from planner.errors import PlanInputError
from planner.plan import plan_stack
from planner.reaper import EXPIRED, LIVE, FoundResource, assess
from planner.stack_config import load_stack, parse_stack, stack_names
from planner.tags import TAG_EXPIRES_AT
from scripts.plan import main as plan_main

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
BUDGET = "aws:budgets/budget:Budget"
COMPONENT = "nemotron-deploy:index:StackBudget"
SHIPPED = stack_names(STACKS_DIR)
NO_ALERT = "the stack's budget has no alert"


@cache
def plan_document() -> dict[str, dict]:
    """`python -m scripts.plan --json` for every shipped stack, once: exit status and entries by stack."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = plan_main(["--json", "--now", NOW.isoformat()])
    return {"status": status, **{e["stack"]: e for e in json.loads(out.getvalue())["stacks"]}}


def budget_of(resources: list[dict]) -> dict:
    budgets = [r for r in resources if r["type"] == BUDGET]
    assert len(budgets) == 1, f"{len(budgets)} budgets"
    return budgets[0]["inputs"]


def variant(tmp_path: Path, base: str = "h100-pilot", **changes) -> str:
    """A copy of a shipped stack with config keys changed, under a new name in tmp_path."""
    document = yaml.safe_load((STACKS_DIR / f"Pulumi.{base}.yaml").read_text())
    for key, value in changes.items():
        document["config"][f"nemotron-deploy:{key}"] = value
    name = f"{base}-variant"
    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document))
    return name


def test_scripts_plan_json_exits_0_and_every_stack_is_free_of_policy_findings():
    document = plan_document()
    assert document["status"] == 0
    assert set(document) - {"status"} == set(SHIPPED) and len(SHIPPED) >= 7
    for stack in SHIPPED:
        assert document[stack]["violations"] == [], stack


@pytest.mark.parametrize("stack", SHIPPED)
def test_every_shipped_stack_declares_exactly_one_budget_of_its_max_spend(stack):
    entry = plan_document()[stack]
    plan = plan_stack(load_stack(STACKS_DIR, stack), NOW)
    assert entry["target"] in ("ec2", "jumpstart", "eks")
    assert [r["name"] for r in entry["resources"] if r["type"] == COMPONENT] == [f"{stack}-cost"]
    budget = budget_of(entry["resources"])
    assert budget["name"] == f"nemotron-deploy-{stack}" and budget["budgetType"] == "COST"
    assert plan.cost.max_spend_usd is not None  # every shipped stack has a price: no fallback here
    assert budget["limitAmount"] == str(math.ceil(plan.cost.max_spend_usd)) and budget["limitUnit"] == "USD"
    assert float(budget["limitAmount"]) >= plan.cost.max_spend_usd > float(budget["limitAmount"]) - 1
    assert budget["timeUnit"] == "MONTHLY"
    assert budget["costFilters"] == [{"name": "TagKeyValue", "values": [f"user:nemotron-deploy:stack${stack}"]}]
    assert budget["costTypes"] == {"includeCredit": False, "includeRefund": False}
    assert budget["tags"] == entry["tags"] == plan.tags
    if alert_emails(plan.config):
        assert [n["threshold"] for n in budget["notifications"]] == [50, 80, 100]
    else:  # a team name as owner, no alertEmails: no notification (AWS needs a subscriber), and the plan says so
        assert budget["notifications"] == []
        assert any(NO_ALERT in w for w in entry["warnings"])


def test_alert_emails_get_half_most_and_forecast_alerts(tmp_path):
    emails = ["ml-platform@example.com", "oncall+gpu@example.org"]
    name = variant(tmp_path, alertEmails=emails)
    budget = budget_of(run_program(name, stacks_dir=tmp_path, now=NOW).resources)
    assert budget["notifications"] == [
        {"comparisonOperator": "GREATER_THAN", "threshold": threshold, "thresholdType": "PERCENTAGE",
         "notificationType": kind, "subscriberEmailAddresses": emails}
        for threshold, kind in ((50, "ACTUAL"), (80, "ACTUAL"), (100, "FORECASTED"))]
    assert not [w for w in plan_stack(load_stack(tmp_path, name), NOW).warnings if NO_ALERT in w]


def test_an_owner_that_is_an_email_address_is_alerted_without_alert_emails(tmp_path):
    name = variant(tmp_path, base="eks-vllm", owner="jane.doe@example.com")
    budget = budget_of(run_program(name, stacks_dir=tmp_path, now=NOW).resources)
    assert {tuple(n["subscriberEmailAddresses"]) for n in budget["notifications"]} == {("jane.doe@example.com",)}
    assert len(budget["notifications"]) == 3


def test_a_type_without_a_price_gets_the_stated_fallback_limit_and_a_warning(tmp_path):
    name = variant(tmp_path, instanceType="p5e.48xlarge", nodes=2, ttlHours=4)  # no price in the catalogue
    path = tmp_path / f"Pulumi.{name}.yaml"  # p5e.48xlarge is not offered in us-east-1
    path.write_text(path.read_text().replace("aws:region: us-east-1", "aws:region: us-west-2"))
    plan = plan_stack(load_stack(tmp_path, name), NOW)
    assert plan.cost.max_spend_usd is None
    budget = budget_of(run_program(name, stacks_dir=tmp_path, now=NOW).resources)
    assert budget["limitAmount"] == str(math.ceil(142.42 * 2 * 4))  # p6-b300, the catalogue's dearest EC2 type
    assert any("no price for p5e.48xlarge: the budget limit is $1,140 (fallback" in w for w in plan.warnings)


def test_the_reaper_recognises_the_declared_budget_and_reaps_it_after_the_expiry():
    budget = budget_of(plan_document()["h100-pilot"]["resources"])
    assert budget["name"].startswith(BUDGET_NAME_PREFIX)  # how the reaper picks candidates before reading tags
    found = FoundResource("budgets:budget", f"arn:aws:budgets::123456789012:budget/{budget['name']}", "global",
                          budget["tags"])
    expiry = datetime.fromisoformat(budget["tags"][TAG_EXPIRES_AT])
    assert assess(found, expiry - timedelta(minutes=1)).verdict == LIVE
    assert assess(found, expiry).verdict == EXPIRED


# ---- the pure decisions ------------------------------------------------------------------------------------------

PERIOD_END_CASES = [
    (datetime(2026, 12, 1, 17, 30, tzinfo=UTC), "2027-01-01_00:00"),
    (datetime(2026, 1, 31, 23, 59, tzinfo=UTC), "2026-02-01_00:00"),
    (datetime(2026, 2, 28, 0, 0, tzinfo=UTC), "2026-03-01_00:00"),
    (datetime.fromisoformat("2026-07-01T01:00:00+02:00"), "2026-07-01_00:00"),  # still June in UTC
]


@pytest.mark.parametrize(("expiry", "end"), PERIOD_END_CASES, ids=[c[1] for c in PERIOD_END_CASES])
def test_the_budget_ends_at_the_start_of_the_month_after_the_expiry(expiry, end):
    assert period_end(expiry) == end


def config(**changes):
    raw = {"nemotron-deploy:target": "ec2", "nemotron-deploy:owner": "platform-team",
           "nemotron-deploy:instanceType": "p5.48xlarge", "nemotron-deploy:precision": "fp8", "aws:region": "us-east-1",
           **{f"nemotron-deploy:{k}": v for k, v in changes.items()}}
    return parse_stack("s", raw, "test").config


LIMIT_CASES = [(440.32, 441), (441.0, 441), (0.2, 1), (None, math.ceil(142.42 * 1 * 8))]


@pytest.mark.parametrize(("spend", "limit"), LIMIT_CASES, ids=[str(c[0]) for c in LIMIT_CASES])
def test_the_limit_is_the_max_spend_rounded_up_in_whole_dollars(spend, limit):
    assert budget_limit(config(), spend)[0] == limit


def test_alert_emails_win_over_an_email_shaped_owner():
    assert alert_emails(config(owner="a@example.com", alertEmails=["b@example.com"])) == ("b@example.com",)
    assert alert_emails(config(owner="a@example.com")) == ("a@example.com",)
    assert alert_emails(config(owner="team a@b")) == ()


BAD_EMAILS = [("not a list", "a@example.com", "a list of email addresses"),
              ("not an address", ["platform-team"], "email addresses such as owner@example.com"),
              ("twice", ["a@example.com", "a@example.com"], "distinct email addresses"),
              ("eleven", [f"u{i}@example.com" for i in range(11)], "at most 10 addresses")]


@pytest.mark.parametrize(("case", "value", "allowed"), BAD_EMAILS, ids=[c[0] for c in BAD_EMAILS])
def test_bad_alert_emails_name_the_key_and_what_is_allowed(case, value, allowed):
    with pytest.raises(PlanInputError) as raised:
        config(alertEmails=value)
    assert raised.value.field == "nemotron-deploy:alertEmails" and allowed in str(raised.value)


def test_plan_budget_has_no_alerts_without_an_address_and_filters_on_the_stack():
    plan = plan_stack(load_stack(STACKS_DIR, "jumpstart"), NOW)
    decided = plan_budget(plan)
    assert decided.alerts == () and decided.alert_emails == ()
    assert decided.cost_filter_tag == "user:nemotron-deploy:stack$jumpstart"
    assert decided.to_json()["cost_filter"] == {"TagKeyValue": ["user:nemotron-deploy:stack$jumpstart"]}
