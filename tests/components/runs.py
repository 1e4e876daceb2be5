"""Runs of the Pulumi program under the offline engine (the path `make plan` takes), shared by the component tests."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import yaml

from components.offline import OfflineRun, run_program
from planner.plan import StackPlan, plan_stack
from planner.stack_config import load_stack

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
# Configured secret values: shaped like real ones so a leak would also trip the policy rules.
API_KEY = "sk-test-" + "k3y" * 12
HF_TOKEN = "hf_" + "T0ken" * 8
SECRETS = {"apiKey": API_KEY, "hfToken": HF_TOKEN}
# EFA network cards per instance type (docs/sources.md#aws-limits, #aws-gpu-instances): p5 32, p5en 16, p6-b200 8,
# p6-b300 16.
EC2_STACKS = {"h100-pilot": 32, "h100-bf16": 32, "h200-pilot": 16, "b200-nvfp4": 8, "b300-bf16": 16}

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"


@cache
def shipped_run(stack: str) -> OfflineRun:
    """One run per shipped stack, with configured secrets (cached: runs are deterministic)."""
    return run_program(stack, now=NOW, secrets=SECRETS)


@cache
def shipped_plan(stack: str) -> StackPlan:
    return plan_stack(load_stack(STACKS_DIR, stack), NOW)


def only(run: OfflineRun, type_token: str) -> dict:
    found = run.of_type(type_token)
    assert len(found) == 1, f"{len(found)} resources of type {type_token}"
    return found[0]


def servers(run: OfflineRun) -> list[dict]:
    """The stack's instances, head first."""
    return sorted(run.of_type(INSTANCE), key=lambda r: r["name"])


def boot_text(server: dict) -> str:
    """A server's user data as cloud-init reads it: the gzipped, base64-encoded input unpacked."""
    raw = base64.b64decode(server["inputs"]["userDataBase64"], validate=True)
    assert raw[:2] == b"\x1f\x8b", "user data is gzipped"
    return gzip.decompress(raw).decode()



def stack_variant(stacks_dir: Path, base: str, **changes) -> str:
    """Write a copy of a shipped stack into stacks_dir with config keys changed; returns its name."""
    document = yaml.safe_load((STACKS_DIR / f"Pulumi.{base}.yaml").read_text())
    for key, value in changes.items():
        document["config"][f"nemotron-deploy:{key}"] = value
    (stacks_dir / f"Pulumi.{base}.yaml").write_text(yaml.safe_dump(document))
    return base
