"""The GitHub workflows validate against GitHub's workflow schema offline, and do what the lifecycle needs."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.gitops import deployable, main, pr_comment, stack_status, stacks_touched

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


def role_of(job):
    return next(s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/"))["with"]["role-to-assume"]


def test_each_cloud_job_has_its_own_role_and_workflows_grant_nothing_by_default():
    roles = {"pull-request.yml": ("preview", "vars.AWS_PREVIEW_ROLE_ARN"),
             "deploy.yml": ("up", "vars.AWS_DEPLOY_ROLE_ARN"),
             "reaper.yml": ("reap", "vars.AWS_REAPER_ROLE_ARN")}
    for name, (job_id, role) in roles.items():
        document = load(name)
        assert document["permissions"] == {}, f"{name}: jobs ask for their own permissions"
        job = document["jobs"][job_id]
        assert role_of(job) == f"${{{{ {role} }}}}", name
        assert role in job["if"], f"{name}: the job is skipped while its role is not configured"
        assert "AWS_ROLE_ARN }}" not in (REPO / ".github" / "workflows" / name).read_text()  # no shared fallback


def test_preview_is_read_only_outside_any_environment_and_hides_secrets():
    job = load("pull-request.yml")["jobs"]["preview"]
    # an environment would change the OIDC sub claim from repo:OWNER/REPO:pull_request, which the role trusts
    assert "environment" not in job
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert "head.repo.full_name == github.repository" in job["if"]  # forks: no OIDC token, no secrets
    run = job["steps"][-1]["run"]
    assert "pulumi up" not in run and "pulumi preview" in run
    assert all("--show-secrets=false" in line for line in run.splitlines() if "pulumi preview" in line)


def test_deploy_runs_in_the_protected_environment():
    job = load("deploy.yml")["jobs"]["up"]
    assert job["environment"] == "production"
    run = job["steps"][-1]["run"]
    assert "pulumi stack select --create" in run
    assert run.index("pulumi stack select --create") < run.index("pulumi up")


def test_checkouts_do_not_persist_the_token():
    for workflow in WORKFLOWS:
        document = load(workflow.name)
        for step in all_steps(document):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, workflow.name


def test_reaper_is_hourly_and_acts():
    document = load("reaper.yml")
    assert document["on"]["schedule"][0]["cron"].split()[1:] == ["*", "*", "*", "*"]
    run = all_steps(document)[-1]["run"]
    assert "scripts.teardown --expired --yes" in run
    assert not any("make venv" in s.get("run", "") for s in all_steps(document)), "the reaper installs a subset"


def test_deploy_runs_up_for_marked_stacks_on_main():
    document = load("deploy.yml")
    assert document["on"]["push"]["branches"] == ["main"]
    run = all_steps(document)[-1]["run"]
    assert "scripts.gitops deployable" in run and "pulumi up" in run and "scripts.preflight" in run


# ---- the stack loops, run by bash against stand-ins for the helper and the Pulumi CLI ----------------------------

def step_script(workflow, job_id, marker):
    step = next(s for s in load(workflow)["jobs"][job_id]["steps"] if marker in s.get("run", ""))
    assert step.get("shell") == "bash"
    return step["run"]


def run_step(tmp_path, script, helper, extra_env=None):
    """Run a workflow step's script in tmp_path, where .venv/bin/python is `helper` (a bash body) and `pulumi`
    records its argv. Returns (exit status, the recorded pulumi calls)."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/bash\n" + helper)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "pulumi").write_text('#!/bin/bash\necho "pulumi $*" >> "$CALLS"\n'
                                     'if [[ "$1 $2" == "stack ls" ]]; then echo \'[{"name": "old"}]\'; fi\n')
    for stub in (bin_dir / "python", path_dir / "pulumi"):
        stub.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.touch()
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = {"PATH": f"{path_dir}:/usr/bin:/bin", "CALLS": str(calls), "RUNNER_TEMP": str(runner_temp),
           "BASE": "origin/main", **(extra_env or {})}
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, calls.read_text().splitlines()


DEPLOY = step_script("deploy.yml", "up", "scripts.gitops deployable")
PREVIEW = step_script("pull-request.yml", "preview", "scripts.gitops changed-stacks")


def test_deploy_fails_when_the_helper_crashes(tmp_path):
    status, calls = run_step(tmp_path, DEPLOY, 'echo "Traceback: boom" >&2; echo half-a-name; exit 1\n')
    assert status != 0 and calls == []


def test_deploy_creates_missing_stacks_then_ups_each_marked_one(tmp_path):
    helper = 'if [[ "$2" == scripts.gitops ]]; then printf "a\\nb\\n"; fi\n'
    status, calls = run_step(tmp_path, DEPLOY, helper)
    assert status == 0
    assert calls == ["pulumi stack select --create a",
                     "pulumi up --stack a --yes --non-interactive --show-secrets=false --policy-pack policies",
                     "pulumi stack select --create b",
                     "pulumi up --stack b --yes --non-interactive --show-secrets=false --policy-pack policies"]


def test_deploy_with_nothing_marked_does_nothing(tmp_path):
    status, calls = run_step(tmp_path, DEPLOY, "exit 0\n")
    assert status == 0 and calls == []


def test_preview_fails_when_the_helper_crashes(tmp_path):
    status, calls = run_step(tmp_path, PREVIEW, 'echo "Traceback: boom" >&2; exit 1\n')
    assert status != 0 and calls == []


PREVIEW_HELPER = ('if [[ "$3" == changed-stacks ]]; then printf "old\\nnew\\n"; '
                  f'else exec "{sys.executable}" "$@"; fi\n')


def test_preview_previews_existing_stacks_and_new_ones_from_an_empty_state(tmp_path):
    env = {"PULUMI_CONFIG_PASSPHRASE": "x", "PYTHONPATH": str(REPO)}
    status, calls = run_step(tmp_path, PREVIEW, PREVIEW_HELPER, env)
    assert status == 0, calls
    assert calls == ["pulumi stack ls --json", "pulumi stack select old",
                     "pulumi preview --stack old --diff --show-secrets=false --policy-pack policies",
                     "pulumi stack select --create new",
                     "pulumi preview --stack new --diff --show-secrets=false --policy-pack policies"]


def test_preview_without_a_passphrase_skips_existing_stacks(tmp_path):
    status, calls = run_step(tmp_path, PREVIEW, PREVIEW_HELPER, {"PYTHONPATH": str(REPO)})
    assert status == 0
    assert calls == ["pulumi stack ls --json", "pulumi stack select --create new",
                     "pulumi preview --stack new --diff --show-secrets=false --policy-pack policies"]


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


def test_stack_status_reads_plain_and_qualified_names():
    listed = [{"name": "h100-pilot", "current": False}, {"name": "acme/nemotron-deploy/jumpstart"}]
    assert stack_status(["h100-pilot", "jumpstart", "eks-nim"], listed) == [
        ("h100-pilot", "existing"), ("jumpstart", "existing"), ("eks-nim", "new")]


def test_stack_status_refuses_what_is_not_a_stack_listing(tmp_path, capsys):
    listing = tmp_path / "stacks.json"
    listing.write_text('{"name": "not a list"}')
    assert main(["stack-status", "--backend-stacks", str(listing), "--", "a"]) == 2
    assert "--backend-stacks" in capsys.readouterr().err


def test_the_onboarding_doc_names_every_variable_and_secret_the_workflows_read():
    doc = (REPO / "docs" / "pipelines.md").read_text()
    referenced = {m for w in WORKFLOWS for m in re.findall(r"\b(?:vars|secrets)\.(\w+)", w.read_text())}
    assert referenced >= {"AWS_PREVIEW_ROLE_ARN", "AWS_DEPLOY_ROLE_ARN", "AWS_REAPER_ROLE_ARN", "PULUMI_BACKEND_URL",
                          "PULUMI_CONFIG_PASSPHRASE", "REAPER_REGIONS"}
    missing = sorted(name for name in referenced if f"`{name}`" not in doc)
    assert not missing, f"docs/pipelines.md does not list {missing}"
