"""Preflight: the stack's staged copy of the weights (weightsS3Uri) is complete, by its manifest, before a server
boots to read it (docs/weights.md). A copy without its manifest, or with a file missing or of the wrong size, fails
the check with the command that completes it; S3 refusing the read fails it with the call and the code."""

from __future__ import annotations

from typing import Any

from planner.plan import StackPlan
from scripts.preflight.results import FAIL, PASS, SKIP, CheckResult
from scripts.stage_weights.staged import staged_copy_problems

NAME = "staged-weights"
SHOWN_PROBLEMS = 3


def check_staged_weights(plan: StackPlan, s3: Any) -> CheckResult:
    uri = plan.config.weights_s3_uri
    if uri is None:
        return CheckResult(NAME, SKIP, "no weightsS3Uri: the servers download from Hugging Face")
    problems = staged_copy_problems(s3, uri)
    if not problems:
        return CheckResult(NAME, PASS, f"{uri}: the manifest and every file it lists are there")
    more = f" (+{len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
    return CheckResult(NAME, FAIL, f"{uri}: " + "; ".join(problems[:SHOWN_PROBLEMS]) + more,
                       f"stage it (resumable): python -m scripts.stage_weights SOURCE --to {uri}, then "
                       f"python -m scripts.stage_weights verify {uri}")
