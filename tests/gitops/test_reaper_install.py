"""The reaper workflow installs only what scripts.teardown imports, at requirements.txt's pins: the list in its grep
is complete (teardown imports nothing from any other distribution) and every name on it is pinned."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
REAPER = REPO / ".github" / "workflows" / "reaper.yml"
GREP = re.compile(r"grep -E '\^\((?P<names>[\w.|-]+)\)==' requirements\.txt")

# Imports scripts.teardown (and its --help) with every module of a distribution outside the reaper's install refused,
# as it would be missing there. A module optional to a library (botocore tries certifi) fails as it would there too.
PROBE = r"""
import importlib.metadata as md, re, sys
allowed_roots = sys.argv[1].split(",")

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

# this project itself (installed editable by `make venv`; the reaper runs it from its checkout) is always there
closure, todo = set(), [norm(n) for n in allowed_roots] + ["nemotron-deploy"]
while todo:
    name = todo.pop()
    if name in closure:
        continue
    closure.add(name)
    for requirement in md.requires(name) or []:
        if "extra ==" in requirement:
            continue
        todo.append(norm(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)))

owners = {module: {norm(d) for d in dists} for module, dists in md.packages_distributions().items()}

class Refuse:
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.split(".")[0]
        if top in owners and not owners[top] & closure:
            raise ModuleNotFoundError(f"not installed for the reaper: {top}")
        return None

sys.meta_path.insert(0, Refuse())
sys.argv = ["python -m scripts.teardown", "--help"]
import runpy
try:
    runpy.run_module("scripts.teardown", run_name="__main__")
except SystemExit as exit_:
    sys.exit(exit_.code)
"""


def reaper_packages() -> list[str]:
    document = yaml.safe_load(REAPER.read_text())
    runs = " ".join(s.get("run", "") for job in document["jobs"].values() for s in job["steps"])
    match = GREP.search(runs)
    assert match, "reaper.yml picks its packages from requirements.txt with grep -E '^(a|b)==' requirements.txt"
    return match["names"].split("|")


def test_every_reaper_package_is_pinned_in_requirements():
    pinned = {line.split("==")[0] for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line}
    packages = reaper_packages()
    assert packages and set(packages) <= pinned
    assert "pulumi" not in packages and "ray[default]" not in packages


def test_teardown_needs_nothing_else():
    proc = subprocess.run([sys.executable, "-c", PROBE, ",".join(reaper_packages())], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--expired" in proc.stdout


def test_the_probe_refuses_what_is_not_listed():
    proc = subprocess.run([sys.executable, "-c", PROBE, "PyYAML,pydantic,rich"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "not installed for the reaper: boto3" in proc.stderr
