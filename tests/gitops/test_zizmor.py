"""zizmor (pinned in requirements.txt) finds nothing in the workflows, offline: no GitHub token, no network.

The regular persona runs over every workflow; the GitOps workflows, which hold cloud credentials, must also pass the
auditor persona (its pedantic checks included). An ignore comment is allowed only with the reason it does not apply.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO / ".github" / "workflows"
ZIZMOR = Path(sys.executable).with_name("zizmor")
CLOUD_WORKFLOWS = ("pull-request.yml", "deploy.yml", "reaper.yml")


def zizmor(*args: str) -> subprocess.CompletedProcess:
    # no token in the environment: the run must not depend on GitHub
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    return subprocess.run([str(ZIZMOR), "--offline", "--no-progress", "--format", "json", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def findings(proc: subprocess.CompletedProcess) -> list[str]:
    return [f"{f['ident']}: {loc['symbolic']['key']} {loc['concrete']['location']['start_point']}"
            for f in json.loads(proc.stdout or "[]") for loc in f["locations"][:1]]


def test_workflows_have_no_findings():
    proc = zizmor(str(WORKFLOWS_DIR))
    assert proc.returncode == 0 and findings(proc) == [], proc.stdout + proc.stderr


@pytest.mark.parametrize("name", CLOUD_WORKFLOWS)
def test_cloud_workflows_pass_the_auditor_persona(name):
    proc = zizmor("--persona", "auditor", str(WORKFLOWS_DIR / name))
    assert proc.returncode == 0 and findings(proc) == [], proc.stdout + proc.stderr


def test_zizmor_catches_a_template_injection(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\non:\n  pull_request_target: {}\npermissions: {}\njobs:\n  a:\n"
                   "    runs-on: ubuntu-24.04\n"
                   "    steps:\n      - run: echo \"${{ github.event.pull_request.title }}\"\n")
    proc = zizmor(str(bad))
    assert proc.returncode != 0
    assert any(f.startswith("template-injection") for f in findings(proc))


def test_every_ignore_says_why():
    for workflow in sorted(WORKFLOWS_DIR.glob("*.yml")):
        for number, line in enumerate(workflow.read_text().splitlines(), start=1):
            match = re.search(r"#\s*zizmor:\s*ignore\[[\w,-]+\](?P<reason>.*)$", line)
            if match:
                reason = match["reason"].strip()
                assert len(reason) >= 20, f"{workflow.name}:{number}: say why the finding does not apply"
