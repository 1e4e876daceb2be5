"""A stack's AWS Budget, decided from its plan: the limit, the period, the cost filter and who gets the alerts.

Pure: components/budget.py declares what `plan_budget` decides, and scripts/teardown/ finds the toolkit's budgets
by BUDGET_NAME_PREFIX before their tags decide.

Why MONTHLY: a cost budget resets DAILY, MONTHLY, QUARTERLY or ANNUALLY. An evaluation lives at most
MAX_TTL_HOURS (a week), so DAILY would have to split the limit across days, and AWS offers no FORECASTED alert on a
daily budget; MONTHLY is the smallest period that takes the whole limit and a forecast. The budget ends at the start
of the month after the expiry (AWS deletes a budget after its end date), so it does not outlive the stack for long
even when nobody reaps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from planner.core import CorePlan
from planner.hardware import INSTANCE_TYPES
from planner.stack_config import EMAIL_ADDRESS, PROJECT, TARGET_PLATFORM, StackConfig

BUDGET_NAME_PREFIX = f"{PROJECT}-"
TIME_UNIT = "MONTHLY"
# The stack tag as a cost-allocation tag: Billing knows user-defined tags as "user:<key>", and a TagKeyValue filter
# value is "<tag>$<value>". The tag must be activated as a cost allocation tag (Billing console, Cost allocation
# tags) before the budget sees any spend; activation takes up to 24 hours and is not retroactive.
COST_ALLOCATION_TAG = f"user:{PROJECT}:stack"
# (percent of the limit, ACTUAL or FORECASTED): half spent, most spent, on course to overspend
ALERTS = ((50, "ACTUAL"), (80, "ACTUAL"), (100, "FORECASTED"))


@dataclass(frozen=True)
class BudgetAlert:
    """One notification: at `threshold_percent` of the limit, of ACTUAL or FORECASTED spend."""

    threshold_percent: int
    notification_type: str


@dataclass(frozen=True)
class BudgetPlan:
    """What the stack's budget is: the components declare exactly this."""

    name: str
    limit_usd: int
    limit_basis: str  # how the limit was reached, for a person reading the plan
    time_unit: str
    time_period_end: str  # AWS Budgets' format, "2026-07-01_00:00" (UTC)
    cost_filter_tag: str  # the TagKeyValue filter value, "user:nemotron-deploy:stack$<stack>"
    alert_emails: tuple[str, ...]
    alerts: tuple[BudgetAlert, ...]  # empty when there is nobody to alert: AWS needs a subscriber per notification

    def to_json(self) -> dict:
        return {"name": self.name, "limit_usd": self.limit_usd, "limit_basis": self.limit_basis,
                "time_unit": self.time_unit, "time_period_end": self.time_period_end,
                "cost_filter": {"TagKeyValue": [self.cost_filter_tag]}, "alert_emails": list(self.alert_emails),
                "alerts": [f"{a.threshold_percent}% {a.notification_type}" for a in self.alerts]}


def budget_name(stack: str) -> str:
    """The budget's name: fixed per stack, so the reaper can find the toolkit's budgets without reading every tag."""
    return BUDGET_NAME_PREFIX + stack


def alert_emails(config: StackConfig) -> tuple[str, ...]:
    """Who the alerts go to: `alertEmails`, else the owner when the owner is an email address, else nobody."""
    if config.alert_emails:
        return tuple(config.alert_emails)
    return (config.owner,) if EMAIL_ADDRESS.fullmatch(config.owner) else ()


def budget_warnings(config: StackConfig, max_spend_usd: float | None) -> tuple[str, ...]:
    """What a person should know about the stack's budget before `pulumi up`: no alert, or a fallback limit."""
    warnings = []
    if not alert_emails(config):
        warnings.append(f"no alertEmails and the owner {config.owner!r} is not an email address: the stack's budget "
                        f"has no alert; set {PROJECT}:alertEmails")
    if max_spend_usd is None:
        limit, basis = budget_limit(config, None)
        warnings.append(f"no price for {config.instance_type}: the budget limit is ${limit:,} ({basis})")
    return tuple(warnings)


def budget_limit(config: StackConfig, max_spend_usd: float | None) -> tuple[int, str]:
    """The limit in whole dollars, and how it was reached: the plan's max spend over the TTL, rounded up; without
    a price, the catalogue's highest hourly price for the target's platform x nodes x TTL (an upper bound)."""
    if max_spend_usd is not None:
        return max(1, math.ceil(max_spend_usd)), f"max spend over the {config.ttl_hours:g} h TTL, rounded up"
    platform = TARGET_PLATFORM[config.target]
    highest = max(i.usd_per_hour for i in INSTANCE_TYPES.values() if i.platform == platform and i.usd_per_hour)
    fallback = max(1, math.ceil(highest * config.nodes * config.ttl_hours))
    return fallback, (f"fallback: the highest {platform} price in the catalogue, ${highest:,.2f}/h x "
                      f"{config.nodes} node(s) x {config.ttl_hours:g} h, because {config.instance_type} has none")


def period_end(expires_at: datetime) -> str:
    """The start of the month after the expiry, in AWS Budgets' format: a month boundary, as a MONTHLY budget counts."""
    expiry = expires_at.astimezone(UTC)
    next_month = (expiry.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(day=1)
    return next_month.strftime("%Y-%m-%d_%H:%M")


def plan_budget(plan: CorePlan) -> BudgetPlan:
    """The budget of one stack's plan."""
    limit, basis = budget_limit(plan.config, plan.cost.max_spend_usd)
    emails = alert_emails(plan.config)
    alerts = tuple(BudgetAlert(percent, kind) for percent, kind in ALERTS) if emails else ()
    return BudgetPlan(name=budget_name(plan.stack), limit_usd=limit, limit_basis=basis, time_unit=TIME_UNIT,
                      time_period_end=period_end(plan.expires_at),
                      cost_filter_tag=f"{COST_ALLOCATION_TAG}${plan.stack}", alert_emails=emails, alerts=alerts)
