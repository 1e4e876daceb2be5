"""CrossGuard front end of the toolkit's policy rules: one ResourceValidationPolicy per rule in planner/policy.py.

One implementation, two front ends: `make plan` runs the same rules on the resources the offline engine lists, and
this pack runs them inside `pulumi preview/up` on the engine's resource properties (camelCase, as under mocks).
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy

from planner.policy import REQUIRED_TAG_KEYS, Rule, rules_for

PACK_NAME = "nemotron-deploy"


def _validate(rule: Rule):
    def validate(args, report_violation) -> None:
        for message in rule.check(args.resource_type, args.props):
            report_violation(message, None)

    return validate


def resource_policies(enforcement: EnforcementLevel = EnforcementLevel.MANDATORY) -> list[ResourceValidationPolicy]:
    """Every rule as a mandatory resource policy; the tag rule checks presence and the expires-at format."""
    return [ResourceValidationPolicy(name=rule.name, description=rule.description, validate=_validate(rule),
                                     enforcement_level=enforcement)
            for rule in rules_for(REQUIRED_TAG_KEYS)]
