"""What the project renders for vLLM, as cases for scripts/check_vllm.py: the EC2 entry script of every EC2 stack,
the EKS Deployment or LeaderWorkerSet leader, the Spark head of every inventory, and variants the stacks do not cover.
Imports planner and spark_cluster (installed with the project); never vLLM."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO / ".venv-vllm" / "vllm-source"
STACKS_DIR = REPO / "stacks"
INVENTORY_DIR = REPO / "ansible-like" / "inventory"
NOW = datetime(2026, 12, 1, tzinfo=UTC)  # fixed: the argv does not depend on the time, the expiry tags do
DUMMY_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:check-vllm"  # noqa: S105 - not a secret
TEST_KEY = "check-vllm-test-key"
VLLM_NAME = re.compile(r"\bVLLM_[A-Z0-9_]+\b")


# (base stack, variant, stack-config overrides): the layouts and options the stacks in stacks/ do not cover.
VARIANTS: tuple[tuple[str, str, dict], ...] = (
    ("h100-pilot", "mtp0", {"mtpTokens": 0}),
    ("h100-pilot", "extra-args", {"maxNumBatchedTokens": 32768, "vllmExtraArgs": ["--async-scheduling"]}),
    ("h100-pilot", "tp16-across-nodes", {"nodes": 2, "pipelineParallel": 1}),
    ("h200-pilot", "dp2-across-nodes", {"nodes": 2, "tensorParallel": 8, "pipelineParallel": 1}),
    ("eks-vllm", "two-nodes", {"nodes": 2}),
    ("b200-nvfp4", "moe-backend", {"vllmExtraArgs": ["--moe-backend", "flashinfer_trtllm"]}),
    ("b200-nvfp4", "article-opt-ins", {"vllmExtraArgs": ["--mamba-backend", "triton",
                                                         "--enable-flashinfer-autotune"]}),
)


@dataclass
class Case:
    """One argv the project renders, with what the target puts around it."""

    label: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)  # None: filled at run time (secret, pod field)
    texts: list[str] = field(default_factory=list)  # the rendered artifacts, scanned for VLLM_* names
    modules: dict[str, str] = field(default_factory=dict)  # file name -> source, as the target writes them
    problem: str | None = None  # the planner or the target could not render it
    skip: str | None = None  # nothing to check (not a vLLM target)


@dataclass
class Outcome:
    label: str
    check: str
    status: str  # PASS, FAIL, SKIP
    detail: str = ""


# --- what the project renders -------------------------------------------------------------------------------------


def _exec_line(script: str) -> list[str]:
    """The argv of the last `exec vllm ...` line of a shell script."""
    lines = [line.strip() for line in script.splitlines() if line.strip().startswith("exec ")]
    for line in reversed(lines):
        argv = shlex.split(line[len("exec "):])
        if len(argv) > 1 and argv[1] == "serve":
            return argv
    raise ValueError("no `exec ... serve ...` line in the script")


def ec2_case(label: str, plan) -> Case:
    import yaml

    from planner.targets.ec2 import render_user_data

    text = render_user_data(plan, plan.ec2, 0, DUMMY_SECRET_ARN)
    files = {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}
    entry_path = next(path for path in files if path.endswith("/entry.sh"))
    folder = entry_path.rsplit("/", 1)[0]
    env: dict[str, str | None] = {}
    for path, content in files.items():
        if path.endswith("/serving.env"):
            for line in content.splitlines():
                if "=" in line and not line.startswith("#"):
                    key, value = line.split("=", 1)
                    env[key.strip()] = value
    env |= {name: None for name in plan.serving.secret_env}
    modules = {path.rsplit("/", 1)[1]: content for path, content in files.items()
               if path.rsplit("/", 1)[0] == folder and path.endswith(".py")}
    return Case(f"{label}/ec2-entry({plan.ec2.roles[0]})", _exec_line(files[entry_path]), env, [text], modules)


def eks_case(label: str, plan) -> Case:
    from planner.targets.eks import render_manifests

    manifests = render_manifests(plan, plan.eks)
    workload = manifests.workload
    if workload["kind"] == "Deployment":
        container = workload["spec"]["template"]["spec"]["containers"][0]
        command = list(container["command"])
        # `bash -c SCRIPT` (the API-key guard, then exec), or the argv itself
        argv = _exec_line(command[-1]) if command[:2] == ["bash", "-c"] else command
        where = "eks-deployment"
    else:
        template = workload["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
        container = template["spec"]["containers"][0]
        argv, where = _exec_line(container["command"][-1]), "eks-lws-leader"
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    modules = dict((manifests.serving_modules or {}).get("data", {}))
    text = json.dumps([m for m in manifests.all()], default=str)
    return Case(f"{label}/{where}", argv, env, [text], modules)


def plan_cases(label: str, name: str, raw: dict, source: str, variant: bool) -> Iterator[Case]:
    from planner.errors import PlanInputError
    from planner.plan import plan_stack
    from planner.serving import VllmCommand
    from planner.stack_config import parse_stack

    try:
        plan = plan_stack(parse_stack(name, raw, source), NOW)
    except PlanInputError as err:
        if variant:  # a variant is this script's invention: the planner may refuse it
            yield Case(label, skip=f"the planner refuses this variant: {err}")
        else:
            yield Case(label, problem=f"the planner refuses the stack: {err}")
        return
    if not isinstance(plan.serving, VllmCommand):
        what = "does not fit" if not plan.fit.fits else f"{plan.target}/{plan.engine} renders no vLLM argv"
        yield Case(label, skip=what)
        return
    render = {"ec2": ec2_case, "eks": eks_case}.get(plan.target)
    if render is None:
        yield Case(label, skip=f"target {plan.target} has no vLLM entry point this script knows")
        return
    try:
        yield render(label, plan)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check, with the reason
        yield Case(f"{label}/{plan.target}", problem=f"could not render or read the {plan.target} argv: "
                   f"{type(exc).__name__}: {exc}")


def stack_cases(stacks_dir: Path = STACKS_DIR) -> Iterator[Case]:
    from planner.stack_config import stack_names, stack_path
    from planner.yamlfile import load_yaml_file

    names = stack_names(stacks_dir)
    for name in names:
        path = stack_path(stacks_dir, name)
        raw = (load_yaml_file(path, "a Pulumi stack file") or {}).get("config", {})
        yield from plan_cases(name, name, raw, str(path), variant=False)
    for base, variant, overrides in VARIANTS:
        label = f"{base}+{variant}"
        if base not in names:
            yield Case(label, skip=f"no stack {base} in {stacks_dir}")
            continue
        path = stack_path(stacks_dir, base)
        raw = dict((load_yaml_file(path, "a Pulumi stack file") or {}).get("config", {}))
        raw |= {f"nemotron-deploy:{key}": value for key, value in overrides.items()}
        yield from plan_cases(label, base, raw, str(path), variant=True)


def spark_cases(inventory_dir: Path = INVENTORY_DIR) -> Iterator[Case]:
    from spark_cluster import vllm_serve
    from spark_cluster.inventory import load_inventory

    from planner.errors import PlanInputError

    for path in sorted(inventory_dir.glob("*.yaml")):
        label = f"spark:{path.stem}/head"
        try:
            inventory = load_inventory(path)
            _, command = vllm_serve.serving_command(inventory)
            argv = vllm_serve.argv_for(inventory, command)
            env: dict[str, str | None] = dict(vllm_serve.launch_env(inventory, command))
            env |= {name: None for name in command.secret_env}
            step = vllm_serve.launch_step(inventory, command)
            yield Case(label, argv, env, [step.command], dict(command.modules))
        except PlanInputError as err:  # the planner's verdict on this inventory, not a vLLM matter
            yield Case(label, skip=f"the planner refuses this inventory: {err}")
        except Exception as exc:  # noqa: BLE001 - reported as a failed check, with the reason
            yield Case(label, problem=f"could not render the Spark argv: {type(exc).__name__}: {exc}")


def all_cases() -> list[Case]:
    return [*stack_cases(), *spark_cases()]


