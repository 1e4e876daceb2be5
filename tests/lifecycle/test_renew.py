"""The expiry is decided once and moved on purpose: scripts.renew writes it into the stack file, `pulumi up` refuses a
stack without it, and a re-run of the program with the same file declares the same expiry everywhere."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from components.offline import run_program
from planner.plan import plan_stack
from planner.stack_config import load_stack
from scripts.renew import main

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
KEY = "nemotron-deploy:expiresAt"
EXPIRY_TAG = "nemotron-deploy:expires-at"


@pytest.fixture
def stacks(tmp_path) -> Path:
    for name in ("h100-pilot", "jumpstart", "eks-vllm"):
        shutil.copy(REPO / "stacks" / f"Pulumi.{name}.yaml", tmp_path)
    return tmp_path


def renew(stacks: Path, *args: str, now: datetime = NOW) -> int:
    return main([*args, "--stacks-dir", str(stacks), "--now", now.isoformat()])


def test_renew_writes_the_expiry_once_keeping_the_file_and_a_rerun_of_the_program_keeps_it(stacks, capsys):
    before = (stacks / "Pulumi.h100-pilot.yaml").read_text()
    assert renew(stacks, "h100-pilot") == 0  # the stack's ttlHours (8), rounded up to the minute
    after = (stacks / "Pulumi.h100-pilot.yaml").read_text()
    assert yaml.safe_load(after)["config"][KEY] == "2026-12-01T18:01:00Z"
    assert after.splitlines()[:4] == before.splitlines()[:4]  # the comments stay
    assert "expiresAt set to 2026-12-01T18:01:00Z" in capsys.readouterr().out
    # two `pulumi up` at different times declare the same expiry on every resource: nothing moves without renew
    early, late = (run_program("h100-pilot", stacks_dir=stacks, now=NOW + timedelta(minutes=m)) for m in (5, 95))
    for run in (early, late):
        tags = {r["inputs"]["tags"][EXPIRY_TAG] for r in run.resources if EXPIRY_TAG in r["inputs"].get("tags", {})}
        assert tags == {"2026-12-01T18:01:00Z"}
    assert not any("expiresAt is not set" in w for w in plan_stack(load_stack(stacks, "h100-pilot"), NOW).warnings)


def test_renew_moves_it_and_the_end_schedules_follow(stacks):
    assert renew(stacks, "jumpstart", "--hours", "4") == 0
    assert renew(stacks, "jumpstart", "--hours", "24", now=NOW + timedelta(hours=3)) == 0
    assert load_stack(stacks, "jumpstart").config.expires_at == datetime(2026, 12, 2, 13, 1, tzinfo=UTC)
    plan = plan_stack(load_stack(stacks, "jumpstart"), NOW + timedelta(hours=3))
    assert plan.tags[EXPIRY_TAG] == "2026-12-02T13:01:00Z"


@pytest.mark.parametrize(("args", "message"), [
    (("h100-pilot", "--hours", "169"), "--hours: 169 is not valid; allowed: more than 0 and at most 168"),
    (("h100-pilot", "--hours", "0"), "allowed: more than 0"),
    (("no-such-stack",), "stack: 'no-such-stack' is not valid"),
    (("h100-pilot", "--hours", "soon"), "--hours: 'soon' is not valid; allowed: a number"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(stacks, capsys, args, message):
    before = (stacks / "Pulumi.h100-pilot.yaml").read_text()
    assert renew(stacks, *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert (stacks / "Pulumi.h100-pilot.yaml").read_text() == before


def test_apply_runs_pulumi_up_for_the_stack(stacks, tmp_path, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "pulumi-args"
    stub = bin_dir / "pulumi"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "scripts.renew", "eks-vllm", "--hours", "2", "--apply",
                           "--stacks-dir", str(stacks)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert record.read_text().split() == ["up", "--yes", "--non-interactive", "--skip-preview", "-s", "eks-vllm"]


def test_pulumi_up_refuses_a_stack_whose_expiry_was_never_decided(stacks):
    """A re-run or a merge must never extend an evaluation: without expiresAt `pulumi up` stops before declaring;
    a preview and the offline plan assume a renewal now (and say so)."""
    import pulumi

    from components.offline import _program_module

    program = _program_module()
    unset = plan_stack(load_stack(stacks, "h100-pilot"), NOW)
    assert any("expiresAt is not set: the plan assumes now + 8 h" in w for w in unset.warnings)
    with pytest.raises(pulumi.RunError, match=r"nemotron-deploy:expiresAt is not set: run `python -m scripts.renew "
                                              r"h100-pilot`"):
        program.require_fixed_expiry(unset, provisional_expiry=False)
    program.require_fixed_expiry(unset, provisional_expiry=True)  # the offline plan
    assert run_program("h100-pilot", stacks_dir=stacks, now=NOW).resources  # which make plan runs
    assert renew(stacks, "h100-pilot") == 0
    program.require_fixed_expiry(plan_stack(load_stack(stacks, "h100-pilot"), NOW), provisional_expiry=False)
