"""The GitHub workflows validate against GitHub's workflow schema offline, and do what the lifecycle needs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.gitops import deployable, pr_comment, stacks_touched

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def load(name):
    # PyYAML reads the key `on` as True; GitHub reads it as "on"
    document = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    document["on"] = document.pop(True)
    return document


def test_the_pipelines_workflows_are_there():
    assert {w.name for w in WORKFLOWS} >= {"pull-request.yml", "deploy.yml", "reaper.yml", "check-references.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(workflow):
    proc = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(workflow)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps: nope\n")
    proc = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(broken)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0


def all_steps(document):
    return [step for job in document["jobs"].values() for step in job["steps"]]


def test_pull_request_runs_tests_then_plan_comment_then_preview():
    document = load("pull-request.yml")
    jobs = document["jobs"]
    assert "make test" in jobs["test"]["steps"][-1]["run"]
    assert jobs["plan"]["needs"] == "test" and jobs["preview"]["needs"] == "plan"
    plan_runs = " ".join(s.get("run", "") for s in jobs["plan"]["steps"])
    assert "scripts.plan --json" in plan_runs and "gh pr comment" in plan_runs
    assert "pulumi preview" in jobs["preview"]["steps"][-1]["run"]


def test_cloud_jobs_use_oidc_and_no_long_lived_keys():
    for name in ("pull-request.yml", "deploy.yml", "reaper.yml"):
        text = (REPO / ".github" / "workflows" / name).read_text()
        assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text
        document = load(name)
        for job in document["jobs"].values():
            uses = [s.get("uses", "") for s in job["steps"]]
            if any(u.startswith("aws-actions/configure-aws-credentials") for u in uses):
                assert job.get("permissions", document.get("permissions", {})).get("id-token") == "write"
                creds = next(s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/"))
                assert "role-to-assume" in creds["with"]


def test_reaper_is_hourly_and_acts():
    document = load("reaper.yml")
    assert document["on"]["schedule"][0]["cron"].split()[1:] == ["*", "*", "*", "*"]
    run = all_steps(document)[-1]["run"]
    assert "scripts.teardown --expired --yes" in run


def test_deploy_runs_up_for_marked_stacks_on_main():
    document = load("deploy.yml")
    assert document["on"]["push"]["branches"] == ["main"]
    run = all_steps(document)[-1]["run"]
    assert "scripts.gitops deployable" in run and "pulumi up" in run and "scripts.preflight" in run


@pytest.mark.parametrize(("paths", "expected"), [
    (["stacks/Pulumi.h100-pilot.yaml"], ["h100-pilot"]),
    (["README.md", "docs/ec2.md"], []),
    (["planner/fit.py"], ["a", "h100-pilot", "z"]),
    (["stacks/Pulumi.gone.yaml"], []),
])
def test_stacks_touched(paths, expected):
    assert stacks_touched(paths, ["a", "h100-pilot", "z"]) == expected


def test_deployable_reads_the_marker(tmp_path):
    base = {"aws:region": "us-east-1", "nemotron-deploy:target": "ec2", "nemotron-deploy:owner": "me",
            "nemotron-deploy:instanceType": "p5.48xlarge", "nemotron-deploy:precision": "fp8"}
    (tmp_path / "Pulumi.on.yaml").write_text(yaml.safe_dump({"config": {**base, "nemotron-deploy:autoDeploy": True}}))
    (tmp_path / "Pulumi.off.yaml").write_text(yaml.safe_dump({"config": base}))
    assert deployable(tmp_path) == ["on"]
    assert deployable(REPO / "stacks") == []  # nothing ships marked: deploying costs money


def test_pr_comment_summarises_and_flags():
    document = {"stacks": [
        {"stack": "good", "target": "ec2", "nodes": 1, "instance_type": "p5.48xlarge",
         "fit": {"fits": True, "reasons": ["fine"]}, "layout": {"description": "TP 8 x PP 1"},
         "cost": {"usd_per_hour": 55.04, "max_spend_usd": 440.32}, "resources": [{}] * 12, "violations": []},
        {"stack": "bad", "target": "ec2", "nodes": 1, "instance_type": "p5.48xlarge",
         "fit": {"fits": False, "reasons": ["weights per GPU 128.1 GiB exceed"]}, "layout": {"description": ""},
         "cost": {"usd_per_hour": None, "max_spend_usd": None}, "resources": [],
         "violations": [{"rule": "world-open-ingress", "resource": "sg", "message": "open to the world on 8000"}]},
    ]}
    text = pr_comment(document)
    assert "| `good` | ec2 | 1x p5.48xlarge | yes | TP 8 x PP 1 | $55.04 | $440 | 12 | 0 |" in text
    assert "| **NO** |" in text and "weights per GPU 128.1 GiB exceed" in text
    assert "`world-open-ingress` on `sg`" in text
    assert json.dumps(document)  # the input is plain JSON, as scripts.plan writes it
