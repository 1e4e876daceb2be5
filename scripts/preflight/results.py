"""A preflight check's result, and how a check that could not ask AWS says so."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from scripts.aws import describe_error, error_code

PASS, FAIL, SKIP = "pass", "fail", "skip"

# On-Demand vCPU quotas (service code ec2) by instance family letter. docs/sources.md#aws-limits.
ON_DEMAND_QUOTAS = {"p": ("L-417A185B", "Running On-Demand P instances")}
ENDPOINT_QUOTA_NAME = "{instance_type} for endpoint usage"
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException")


@dataclass(frozen=True)
class CheckResult:
    """One preflight check: its name, pass/fail/skip, what was found and, on failure, what to do."""

    name: str
    status: str
    detail: str
    remedy: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "remedy": self.remedy}



def quantity(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def api_failure(name: str, exc: Exception, action: str) -> CheckResult:
    """A check that could not ask AWS: say which call failed and what would let it."""
    if isinstance(exc, ClientError):
        code = error_code(exc) or "Error"
        detail = f"{action} failed: {describe_error(exc)}".rstrip(": ")
        if code in DENIED:
            return CheckResult(name, FAIL, detail, f"allow {action} for this identity (see docs/preflight.md)")
        return CheckResult(name, FAIL, detail, "retry; if it persists, check the region and the service's status")
    return CheckResult(name, FAIL, f"{action} failed: {exc}", "check network access to AWS and AWS_ENDPOINT_URL")

