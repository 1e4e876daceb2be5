"""The planner's shape, checked from the source: one plan per target, computed once.

- No import cycle among planner modules, counting every import: module level, inside functions, under TYPE_CHECKING.
- The pure planner imports no cloud or remote-execution library (pulumi, boto3, botocore, fabric, paramiko, invoke).
- The shared core imports nothing from planner.targets: only planner/plan.py dispatches to the targets.
- The functions that decide a target's plan are called only inside planner/targets and planner/plan.py: components,
  the Pulumi program, the scripts and the Spark tasks read the plan they were handed (tests may call them directly).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLANNER = REPO / "planner"
FORBIDDEN = ("pulumi", "boto3", "botocore", "fabric", "paramiko", "invoke")
# Modules of planner/ allowed to import planner.targets: the dispatcher (and the targets themselves).
DISPATCHER = "planner.plan"
# Where a target's plan is computed: the targets themselves, the stack dispatcher, and for the DGX Spark cluster (no
# stack file, an inventory) the task module that plans it once per run.
PLANNING = ("planner/targets", "planner/plan.py", "ansible-like/spark_cluster/vllm_serve.py")
# Functions that decide a target's plan; their results are fields of StackPlan.ec2 / .eks / .jumpstart.
TARGET_DECIDING = ("eks_settings", "names", "startup_budget", "cluster_name", "workload_sizing", "gpu_node_pool",
                   "system_node_pool", "cluster_addons", "multi_node", "boot_image", "node_roles", "node_role",
                   "secret_env_names", "internet_egress_reasons", "weights_location", "plan_ec2", "plan_eks",
                   "plan_endpoint", "plan_spark", "spark_fit")
# Code that consumes plans (tests excluded: they test the deciding functions themselves).
CONSUMERS = ("components", "scripts", "planner", "ansible-like")
CONSUMER_FILES = ("__main__.py", "fabfile.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "ansible-like":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, wherever the import statement is (functions, TYPE_CHECKING, try blocks)."""
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from planner import plan` names a module
    return found


def planner_files() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PLANNER.rglob("*.py")) if "__pycache__" not in p.parts}


def planner_graph() -> dict[str, set[str]]:
    files = planner_files()
    return {name: {m for m in imported_modules(path) if m in files and m != name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_planner_modules():
    assert cycles(planner_graph()) == []


def test_the_planner_imports_no_cloud_or_remote_library():
    offenders = sorted(f"{name} imports {module}" for name, path in planner_files().items()
                       for module in imported_modules(path) if module.split(".")[0] in FORBIDDEN)
    assert offenders == []


def test_the_core_imports_no_target():
    offenders = sorted(f"{name} imports {module}" for name, path in planner_files().items()
                       if not name.startswith("planner.targets") and name != DISPATCHER
                       for module in imported_modules(path) if module.startswith("planner.targets"))
    assert offenders == []


def test_the_targets_import_no_dispatcher():
    """A target builds on the core plan, never on planner.plan (which imports the targets)."""
    offenders = sorted(f"{name} imports {module}" for name, path in planner_files().items()
                       if name.startswith("planner.targets")
                       for module in imported_modules(path) if module == DISPATCHER)
    assert offenders == []


def consumer_files() -> list[Path]:
    files = [REPO / name for name in CONSUMER_FILES if (REPO / name).exists()]
    for folder in CONSUMERS:
        files += [p for p in sorted((REPO / folder).rglob("*.py")) if "__pycache__" not in p.parts]
    return files


def calls_of(path: Path, names: tuple[str, ...]) -> list[str]:
    """`name(...)` and `module.name(...)` calls of the given function names in the file, with their line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if called in names:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {called}()")
    return found


def test_target_decisions_are_made_only_by_the_targets_and_the_dispatcher():
    allowed = tuple(REPO / path for path in PLANNING)
    offenders = [call for path in consumer_files()
                 if not any(path == a or a in path.parents for a in allowed)
                 for call in calls_of(path, TARGET_DECIDING)]
    assert offenders == []


def test_the_call_finder_finds_a_call():
    sample = REPO / "planner" / "targets" / "eks.py"
    assert any("eks_settings()" in call for call in calls_of(sample, ("eks_settings",)))


def test_each_shipped_stack_carries_its_own_targets_plan_only():
    from datetime import UTC, datetime

    from planner.plan import plan_stack
    from planner.stack_config import load_stack, stack_names

    for name in stack_names(REPO / "stacks"):
        plan = plan_stack(load_stack(REPO / "stacks", name), datetime(2026, 12, 1, 9, tzinfo=UTC))
        carried = {target for target in ("ec2", "eks", "jumpstart") if getattr(plan, target) is not None}
        assert carried <= {plan.target}, name
        assert carried == {plan.target} or plan.target == "jumpstart", name  # jumpstart: only once resolved
        assert plan.peak_nodes >= plan.config.nodes
