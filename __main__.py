"""The Pulumi program: read the stack config, plan it with the planner, hand the plan to the components.

It holds no logic of its own (DESIGN.md): a plan that does not fit or a bad key stops `pulumi up` before any
resource is declared.
"""

from datetime import UTC, datetime
from pathlib import Path

import pulumi

from planner.errors import PlanInputError
from planner.plan import plan_stack
from planner.stack_config import load_stack

STACKS_DIR = Path(__file__).resolve().parent / "stacks"


def stack_plan():
    try:
        plan = plan_stack(load_stack(STACKS_DIR, pulumi.get_stack()), datetime.now(UTC))
    except PlanInputError as err:
        raise pulumi.RunError(str(err)) from None
    if not plan.fit.fits:
        raise pulumi.RunError(f"{plan.stack}: does not fit: " + "; ".join(plan.fit.reasons))
    return plan


plan = stack_plan()
pulumi.export("plan", {"fit": plan.fit.fits, "layout": plan.fit.layout.describe(),
                       "usd_per_hour": plan.cost.usd_per_hour, "expires_at": plan.tags["nemotron-deploy:expires-at"]})
