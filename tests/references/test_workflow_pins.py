"""Every action a workflow uses is pinned by full commit SHA, with its version in a comment, and both are the ones
registered in planner/references.py (so `make check-references` asks GitHub about exactly what the workflows run)."""

import re
from pathlib import Path

import pytest
import yaml

from planner.references import REFERENCES

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONS = {(r.name, r.repository): r for r in REFERENCES if r.kind == "github-action"}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<target>\S+)(?:\s+#\s*(?P<comment>\S+))?\s*$")
PINNED = re.compile(r"^(?P<name>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40})$")


def uses_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, target, version comment) of every `uses:` line."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = USES.match(line)
        if match:
            found.append((number, match["target"].strip("'\""), match["comment"] or ""))
    return found


def uses_in_yaml(path: Path) -> list[str]:
    document = yaml.safe_load(path.read_text())
    return [step["uses"] for job in document["jobs"].values() for step in job.get("steps", []) if "uses" in step]


def test_there_are_workflows_and_registered_actions():
    assert WORKFLOWS and ACTIONS
    assert all(re.fullmatch(r"[0-9a-f]{40}", sha) for _, sha in ACTIONS)
    assert all(r.version.startswith("v") for r in ACTIONS.values())


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_uses_is_pinned_to_a_registered_sha_with_its_version(workflow):
    lines = uses_lines(workflow)
    assert sorted(t for _, t, _ in lines) == sorted(uses_in_yaml(workflow)), "a `uses:` the line scan missed"
    for number, target, comment in lines:
        where = f"{workflow.name}:{number}: {target}"
        if target.startswith("./"):
            continue  # an action of this repository
        match = PINNED.match(target)
        assert match, f"{where}: pin it by full commit SHA (`owner/action@<40 hex> # vX.Y.Z`)"
        repository = "/".join(match["name"].split("/")[:2])
        entry = ACTIONS.get((repository, match["sha"]))
        assert entry, f"{where}: not a github-action entry of planner/references.py (name and SHA)"
        assert comment == entry.version, f"{where}: the comment must be `# {entry.version}`, found {comment!r}"


def test_every_registered_action_is_used():
    used = {(PINNED.match(t)["name"], PINNED.match(t)["sha"])
            for w in WORKFLOWS for _, t, _ in uses_lines(w) if PINNED.match(t)}
    assert set(ACTIONS) <= used, f"registered but unused: {sorted(set(ACTIONS) - used)}"


def test_each_action_has_one_pin():
    names = [name for name, _ in ACTIONS]
    assert len(names) == len(set(names)), "two SHAs registered for one action"
