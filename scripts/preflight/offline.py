"""The checks that need no AWS call: the plan fits, a JumpStart EULA was accepted, the required secrets are set."""

from __future__ import annotations

from planner.estimates import iso_utc
from planner.plan import StackPlan
from planner.targets.eks import missing_required_secrets, missing_secret_message, required_secret_keys
from scripts.preflight.results import FAIL, PASS, CheckResult


def check_plan(plan: StackPlan) -> CheckResult:
    """The stack's plan fits: a configuration that cannot load the model is not worth a quota request."""
    fit = plan.fit
    layout = fit.layout.describe()
    warnings = f"; warnings: {'; '.join(plan.warnings)}" if plan.warnings else ""
    if fit.fits:
        return CheckResult("plan", PASS, f"{plan.config.nodes} x {plan.instance.name}, {fit.request.precision}: "
                                         f"fits ({layout}){warnings}")
    return CheckResult("plan", FAIL, f"does not fit: {'; '.join(fit.reasons)}",
                       f"run `python -m scripts.plan {plan.stack}` for configurations that fit")


def check_eula(plan: StackPlan) -> CheckResult:
    """A JumpStart model's EULA was accepted by a person, for the hub content the stack records (never by default)."""
    name, js = "eula-accepted", plan.config.jumpstart
    resolved = js.resolved
    if resolved is None:
        return CheckResult(name, FAIL, f"{js.model_id}: hub content not resolved, so the EULA to accept is unknown",
                           f"run `python -m scripts.jumpstart resolve {plan.stack}`, read the EULA it records, then "
                           "set jumpstart.acceptEula to true")
    link = plan.jumpstart.eula_url if plan.jumpstart else resolved.eula_uri
    what = f"{js.model_id} {resolved.hub_content_version} (resolved {iso_utc(resolved.recorded_at)})"
    if not js.accept_eula:
        return CheckResult(name, FAIL, f"jumpstart.acceptEula is false for {what}; SageMaker refuses the model",
                           f"read {link or 'the model EULA'} and, if you accept it, set jumpstart.acceptEula to true")
    return CheckResult(name, PASS, f"accepted for {what}: {link or 'no EULA stated by the hub'}")


def check_required_secrets(plan: StackPlan) -> CheckResult:
    """The stack file holds every secret the stack cannot deploy without (a `secure:` value), read offline: without
    it `pulumi up` fails only after the network and cluster have started."""
    name, required = "required-secrets", required_secret_keys(plan.config)
    missing = missing_required_secrets(plan.config)
    if missing:
        return CheckResult(name, FAIL, "; ".join(missing_secret_message(plan.stack, key) for key in missing),
                           "; ".join(f"pulumi config set --secret {key} ... -s {plan.stack}" for key in missing))
    return CheckResult(name, PASS, f"{', '.join(required)} set as a Pulumi secret")


