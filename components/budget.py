"""A budget per stack: an AWS cost budget on the stack's tag that emails its people before the spend runs away."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from planner.budget import plan_budget
from planner.plan import StackPlan


@dataclass(frozen=True)
class StackBudgetArgs:
    """`plan`: the stack's plan; the limit, period, cost filter and alerts are what planner/budget.py decides."""

    plan: StackPlan


class StackBudget(pulumi.ComponentResource):
    """One AWS Budgets cost budget for the stack, named `nemotron-deploy-<stack>`.

    It counts the unblended cost carrying the stack's tag (`user:nemotron-deploy:stack`, which must be activated as a
    cost allocation tag in Billing), without credits and refunds, so promotional credits cannot hide the spend. It
    emails at 50% and 80% of actual spend and at 100% of forecast spend; with nobody to alert (no alertEmails, an
    owner that is not an email address) it declares no notification, because AWS needs a subscriber on each, and the
    plan says so. It ends at the start of the month after the expiry; the reaper deletes it after the rest of its
    stack.
    """

    budget_name: pulumi.Output[str]

    def __init__(self, name: str, args: StackBudgetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:StackBudget", name, None, opts)
        plan = args.plan
        decided = plan_budget(plan)
        notifications = [{"comparison_operator": "GREATER_THAN", "threshold": alert.threshold_percent,
                          "threshold_type": "PERCENTAGE", "notification_type": alert.notification_type,
                          "subscriber_email_addresses": list(decided.alert_emails)} for alert in decided.alerts]
        budget = aws.budgets.Budget(
            f"{name}-budget", name=decided.name, budget_type="COST", limit_amount=str(decided.limit_usd),
            limit_unit="USD", time_unit=decided.time_unit, time_period_end=decided.time_period_end,
            cost_filters=[{"name": "TagKeyValue", "values": [decided.cost_filter_tag]}],
            cost_types={"include_credit": False, "include_refund": False},
            notifications=notifications, tags=dict(plan.tags), opts=pulumi.ResourceOptions(parent=self))
        if not decided.alerts:
            pulumi.log.warn(f"{plan.stack}: the budget {decided.name} has no alert: set nemotron-deploy:alertEmails",
                            resource=self)
        self.budget_name = budget.name
        self.register_outputs({"budget_name": self.budget_name, "limit_usd": decided.limit_usd})
