"""A secret a stack cannot deploy without (ngcApiKey for NIM) is checked in the plan, from the stack file alone, not
first inside `pulumi up` after the network and cluster have started. `make plan` (every stack) marks the stack
"cannot deploy" and stays exit 0, since the shipped examples hold no secrets; naming the stack plans it for deployment
and exits 2 with one line per missing key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from planner.stack_config import load_stack
from planner.targets.eks import missing_required_secrets, missing_secret_message
from scripts.plan import main as plan_main

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"
NOW = ["--now", "2026-12-01T10:00:00+00:00"]
MESSAGE = ("nemotron-deploy:ngcApiKey is not set: stack eks-nim cannot deploy without it (NIM pulls its image and "
           "weights from NGC with it); set it with `pulumi config set --secret ngcApiKey ... -s eks-nim`")


@pytest.fixture
def stacks_with_key(tmp_path) -> Path:
    """A copy of the shipped stacks whose eks-nim holds the NGC key as `pulumi config set --secret` writes it."""
    for path in STACKS.glob("Pulumi.*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    document = yaml.safe_load((tmp_path / "Pulumi.eks-nim.yaml").read_text())
    document["config"]["nemotron-deploy:ngcApiKey"] = {"secure": "v1:AAAAbm90LWEtcmVhbC1rZXk="}
    (tmp_path / "Pulumi.eks-nim.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def test_the_shipped_nim_stack_lacks_its_ngc_key_and_no_other_stack_needs_one():
    assert missing_required_secrets(load_stack(STACKS, "eks-nim").config) == ("ngcApiKey",)
    for name in ("eks-vllm", "h100-pilot", "jumpstart"):
        assert missing_required_secrets(load_stack(STACKS, name).config) == ()
    assert missing_secret_message("eks-nim", "ngcApiKey") == MESSAGE


def test_a_key_held_as_a_pulumi_secret_satisfies_it(stacks_with_key):
    assert missing_required_secrets(load_stack(stacks_with_key, "eks-nim").config) == ()


def test_planning_every_stack_marks_it_and_exits_0(capsys):
    assert plan_main(["--json", *NOW]) == 0
    out, err = capsys.readouterr()
    entries = {e["stack"]: e for e in json.loads(out)["stacks"]}
    assert entries["eks-nim"]["cannot_deploy"] == [MESSAGE]
    assert all(e["cannot_deploy"] == [] for name, e in entries.items() if name != "eks-nim")
    # The offline engine still shows what the program would declare (it fills a placeholder for the key).
    assert entries["eks-nim"]["resources"] and err == ""


def test_the_table_says_cannot_deploy(capsys):
    assert plan_main(["eks-vllm", "eks-nim", *NOW]) == 2
    out, err = capsys.readouterr()
    assert "cannot deploy: nemotron-deploy:ngcApiKey is not set" in " ".join(out.split())
    assert err.count("\n") == 1


def test_naming_the_stack_plans_it_for_deployment_and_exits_2_with_one_line(capsys):
    assert plan_main(["eks-nim", "--json", *NOW]) == 2
    out, err = capsys.readouterr()
    assert err == f"python -m scripts.plan: {STACKS / 'Pulumi.eks-nim.yaml'}: {MESSAGE}\n"
    assert json.loads(out)["stacks"][0]["cannot_deploy"] == [MESSAGE]  # the plan is still shown


def test_with_the_key_set_the_named_stack_plans_cleanly(stacks_with_key, capsys):
    assert plan_main(["eks-nim", "--stacks-dir", str(stacks_with_key), "--json", *NOW]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["stacks"][0]["cannot_deploy"] == [] and err == ""
