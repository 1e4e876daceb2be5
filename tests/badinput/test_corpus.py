"""The bad-input corpus (GitHub issue 14): every case ends in one line on stderr, exit 2, no traceback, no secret,
the input file and the checkout unchanged, in under 5 s.

Cases are data in tests/badinput/cases/: stacks.yaml (stack files, run through every entry point that reads one when
`via: all`), models.yaml (model specs, through `python -m planner fit --model FILE`), inventories.yaml (Spark
inventories, through the loader every `fab spark.<task>` calls first) and commands.yaml (command lines, through each
entry point's main(), or the real `fab` for Fabric's own parser). A case starts from a shipped file (`base`) and
changes it: `set` / `remove` (keys under nemotron-deploy:, dotted for nested ones), `append`, `replace`; or gives the
whole file as `raw` text or `raw_base64` bytes; `encoding` writes the text in another encoding (`utf-16` adds a BOM,
`bom: true` adds one to the others); `pad_bytes` makes the file that much larger.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import botocore.session
import pytest
import yaml
from invoke.exceptions import Exit
from spark_cluster import tasks as spark_tasks

from planner.__main__ import main as planner_main
from planner.regions import AWS_REGIONS, BOTOCORE_PARTITIONS
from scripts.bench import main as bench_main
from scripts.jumpstart import main as jumpstart_main
from scripts.plan import main as plan_main
from scripts.preflight import main as preflight_main
from scripts.renew import main as renew_main
from scripts.stage_weights.cli import main as stage_weights_main
from scripts.teardown import main as teardown_main

REPO = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parent / "cases"
NS = "nemotron-deploy:"
MAX_SECONDS = 5.0
MAX_LINE = 400  # characters, the file path included


def table(name: str) -> list[dict]:
    return yaml.safe_load((CASES / name).read_text(encoding="utf-8"))


STACK_CASES, MODEL_CASES = table("stacks.yaml"), table("models.yaml")
INVENTORY_CASES, COMMAND_CASES = table("inventories.yaml"), table("commands.yaml")

# Entry points that read a stack file: argv for stack STACK in directory DIR (all exit 2 before any AWS call).
STACK_ENTRIES = {
    "plan": lambda stack, d: (plan_main, [stack, "--stacks-dir", d, "--json"]),
    "preflight": lambda stack, d: (preflight_main, [stack, "--stacks-dir", d, "--json"]),
    "teardown": lambda stack, d: (teardown_main, ["--stack", stack, "--stacks-dir", d, "--json"]),
    "bench": lambda stack, d: (bench_main, ["--url", "http://127.0.0.1:9", "--stack", stack, "--stacks-dir", d]),
    "renew": lambda stack, d: (renew_main, [stack, "--stacks-dir", d, "--hours", "4", "--apply"]),
    "jumpstart": lambda stack, d: (jumpstart_main, ["resolve", stack, "--stacks-dir", d]),
}
MAINS = {"planner": planner_main, "plan": plan_main, "preflight": preflight_main, "teardown": teardown_main,
         "bench": bench_main, "renew": renew_main, "jumpstart": jumpstart_main, "stage_weights": stage_weights_main}


def _set(document: dict, dotted: str, value: object) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        document = document.setdefault(key, {})
    if value is None:
        document.pop(keys[-1], None)
    else:
        document[keys[-1]] = value


def build_file(case: dict, base: Path, namespaced: bool) -> bytes:
    """The bytes of the case's file, from its base file and its changes."""
    if "raw_base64" in case:
        return base64.b64decode(case["raw_base64"])
    if "raw" in case:
        text = case["raw"]
    else:
        text = base.read_text(encoding="utf-8")
        if "set" in case or "remove" in case:
            document = copy.deepcopy(yaml.safe_load(text))
            config = document["config"] if namespaced else document
            for key, value in {**case.get("set", {}), **dict.fromkeys(case.get("remove", []))}.items():
                head, _, rest = key.partition(".")
                if namespaced and ":" not in head:
                    head = NS + head
                if rest:
                    _set(config.setdefault(head, {}), rest, value)
                elif value is None:
                    config.pop(head, None)
                else:
                    config[head] = value
            text = yaml.safe_dump(document, sort_keys=False)
        for old, new in case.get("replace", []):
            assert old in text, f"{case['id']}: {old!r} not in the base file"
            text = text.replace(old, new)
        text += case.get("append", "")
        text += "#" * case.get("pad_bytes", 0)
    data = text.encode(case.get("encoding", "utf-8"))
    return ("\ufeff".encode(case["encoding"]) if case.get("bom") else b"") + data


def call(main, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except Exit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def check_one_line(case: dict, code: int, out: str, err: str, seconds: float, entry: str) -> None:
    where = f"{case['id']} via {entry}"
    assert code == 2, f"{where}: exit {code}; stderr {err!r}"
    assert "Traceback" not in out + err, f"{where}: {err}"
    assert err.count("\n") == 1 and err.endswith("\n"), f"{where}: not one line: {err!r}"
    assert len(err) <= MAX_LINE, f"{where}: {len(err)} characters: {err}"
    expected = case["expect"] if isinstance(case["expect"], list) else [case["expect"]]
    for fragment in expected:
        assert fragment in err, f"{where}: {fragment!r} not in {err!r}"
    for word in ("pydantic", "Input should", "valid tuple", "datetime.datetime", "[type=", "^"):
        assert word not in err, f"{where}: {word!r} reaches the user: {err}"
    if case.get("secret"):
        assert case["secret"] not in out + err, f"{where}: the secret is echoed"
    assert seconds < MAX_SECONDS, f"{where}: {seconds:.1f} s"


@pytest.fixture(scope="module", autouse=True)
def checkout_unchanged():
    """No case writes into the checkout (stacks/, models/, inventories, anything tracked or not)."""
    def state() -> str:  # empty outside a git checkout: then there is nothing to compare
        proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                              capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else ""
    before = state()
    yield
    assert state() == before


@pytest.mark.parametrize("case", STACK_CASES, ids=[c["id"] for c in STACK_CASES])
def test_stack_file(case, tmp_path):
    path = tmp_path / "Pulumi.case.yaml"
    data = build_file(case, REPO / "stacks" / f"Pulumi.{case.get('base', 'h100-pilot')}.yaml", namespaced=True)
    if case.get("directory"):
        path.mkdir()
    else:
        path.write_bytes(data)
    entries = list(STACK_ENTRIES) if case.get("via") == "all" else [case.get("via", "plan")]
    for entry in entries:
        main, argv = STACK_ENTRIES[entry]("case", str(tmp_path))
        started = time.monotonic()
        code, out, err = call(main, argv)
        check_one_line(case, code, out, err, time.monotonic() - started, entry)
        if not case.get("directory"):
            assert path.read_bytes() == data, f"{case['id']} via {entry}: the stack file changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.case.yaml"]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c["id"] for c in MODEL_CASES])
def test_model_spec(case, tmp_path):
    path = tmp_path / case.get("filename", "model.yaml")
    data = build_file(case, REPO / "models" / f"{case.get('base', 'example-70b')}.yaml", namespaced=False)
    path.write_bytes(data)
    argv = ["fit", "--model", str(path), "--gpu", "h100", "--gpus-per-node", "8", "--precision", "fp8",
            "--context", "8192", "--concurrency", "4", "--json"]
    started = time.monotonic()
    code, out, err = call(planner_main, argv)
    check_one_line(case, code, out, err, time.monotonic() - started, "planner fit")
    assert path.read_bytes() == data


@pytest.mark.parametrize("case", INVENTORY_CASES, ids=[c["id"] for c in INVENTORY_CASES])
def test_spark_inventory(case, tmp_path):
    path = tmp_path / "inventory.yaml"
    base = REPO / "ansible-like" / "inventory" / f"{case.get('base', 'spark')}.yaml"
    data = build_file(case, base, namespaced=False)
    path.write_bytes(data)
    started = time.monotonic()
    code, out, err = call(spark_tasks.load, str(path))
    check_one_line(case, code, out, err, time.monotonic() - started, "fab spark.<task> (inventory)")
    assert path.read_bytes() == data


def _argv(case: dict, tmp_path: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp_path)).replace("{repo}", str(REPO)) for a in case["argv"]]


@pytest.mark.parametrize("case", COMMAND_CASES, ids=[c["id"] for c in COMMAND_CASES])
def test_command_line(case, tmp_path):
    for name, text in case.get("utf16_files", {}).items():
        (tmp_path / name).write_text(text, encoding="utf-16")
    started = time.monotonic()
    if case["entry"] == "fab":
        env = {**os.environ, "NEMOTRON_SPARK_INVENTORY": str(REPO / "ansible-like" / "inventory" / "spark.yaml")}
        proc = subprocess.run([str(Path(sys.executable).parent / "fab"), *_argv(case, tmp_path)], cwd=REPO,
                              capture_output=True, text=True, timeout=MAX_SECONDS * 2, env=env)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        code, out, err = call(MAINS[case["entry"]], _argv(case, tmp_path))
    check_one_line(case, code, out, err, time.monotonic() - started, case["entry"])


def test_the_corpus_covers_four_kinds_and_200_cases():
    sizes = {"stacks": len(STACK_CASES), "models": len(MODEL_CASES), "inventories": len(INVENTORY_CASES),
             "commands": len(COMMAND_CASES)}
    assert all(sizes.values()) and sum(sizes.values()) >= 200, sizes
    ids = [c["id"] for cases in (STACK_CASES, MODEL_CASES, INVENTORY_CASES, COMMAND_CASES) for c in cases]
    assert len(ids) == len(set(ids)), "case ids are unique"


def test_the_planner_region_list_is_botocores():
    session = botocore.session.get_session()
    regions = {r for p in BOTOCORE_PARTITIONS for r in session.get_available_regions("ec2", partition_name=p)}
    assert set(AWS_REGIONS) == regions


@pytest.mark.parametrize("argv", [["scripts.plan", "--json"], ["scripts.plan"], ["planner", "article"],
                                  ["fabric", "--list"]], ids=["json", "rich-tables", "planner", "fab-list"])
def test_a_closed_pipe_ends_quietly(argv):
    """`python -m scripts.plan | true`: the reader is gone before the first write; no traceback, and the status a
    shell gives a command whose reader left (141), for JSON and for rich's tables alike (rich alone would exit 1)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the child writes: every run meets the closed pipe, whatever the timing
    try:
        proc = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, stdout=write_end, stderr=subprocess.PIPE,
                              timeout=60)
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
