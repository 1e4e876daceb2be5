"""scripts/check_vllm.py catches what it is for: each check fails on a planted defect and passes on the fix.

Runs with .venv-vllm (make check-vllm), against the same vLLM sources as the checker's default.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from scripts import check_vllm

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not (check_vllm.SOURCE_DIR / "vllm").is_dir(),
                                reason=f"no {check_vllm.SOURCE_DIR}: run `make check-vllm`")


@pytest.fixture(scope="module")
def base() -> check_vllm.Case:
    """A rendered EC2 case the checks read (its argv, env and modules, as the planner makes them)."""
    check_vllm.load_vllm(installed=False, source_dir=check_vllm.SOURCE_DIR)
    cases = [c for c in check_vllm.all_cases() if not c.skip and not c.problem and "/ec2-entry" in c.label]
    assert cases, "no EC2 stack renders a vLLM argv"
    return cases[0]


def with_flag(argv: list[str], flag: str, value: str | None = None) -> list[str]:
    argv = list(argv)
    if flag in argv:
        i = argv.index(flag)
        if value is None:
            return argv
        argv[i + 1] = value
        return argv
    return argv + ([flag] if value is None else [flag, value])


def status(case: check_vllm.Case, check: str) -> tuple[str, str]:
    """(status, detail) of one check; a failed parse stands for every check after it."""
    outcomes = {o.check: o for o in check_vllm.run_case(case)}
    outcome = outcomes.get(check) or outcomes.get("parse")
    assert outcome is not None, sorted(outcomes)
    return outcome.status, outcome.detail


def spec(method: str) -> str:
    return json.dumps({"method": method, "num_speculative_tokens": 3})


VLLM_OWN_CHECK = '''
async def require_api_key(request, call_next):  # the /v1-only check vLLM does itself
    from starlette.responses import JSONResponse
    if request.url.path.startswith("/v1") and request.headers.get("authorization") != "Bearer check-vllm-test-key":
        return JSONResponse({"error": "Unauthorized"}, status_code=401)
    return await call_next(request)
'''


DEFECTS = {
    "unknown flag": (lambda c: replace(c, argv=c.argv + ["--no-such-flag"]), "parse"),
    "kv cache dtype": (lambda c: replace(c, argv=with_flag(c.argv, "--kv-cache-dtype", "fp9")), "cache-dtypes"),
    "mamba dtype": (lambda c: replace(c, argv=with_flag(c.argv, "--mamba-ssm-cache-dtype", "fp3")), "cache-dtypes"),
    "reasoning parser": (lambda c: replace(c, argv=with_flag(c.argv, "--reasoning-parser", "no_such_parser")),
                         "reasoning-parser"),
    "tool parser": (lambda c: replace(c, argv=with_flag(with_flag(c.argv, "--enable-auto-tool-choice"),
                                                        "--tool-call-parser", "no_such_parser")), "tool-parser"),
    "deprecated MTP alias": (lambda c: replace(c, argv=with_flag(c.argv, "--speculative-config",
                                                                 spec("nemotron_h_mtp"))), "speculative"),
    "unknown speculative method": (lambda c: replace(c, argv=with_flag(c.argv, "--speculative-config",
                                                                       spec("no_such_method"))), "speculative"),
    "data parallel backend": (lambda c: replace(c, argv=with_flag(c.argv, "--data-parallel-backend", "bogus")),
                              "engine-args"),
    "unknown VLLM_ variable": (lambda c: replace(c, env=c.env | {"VLLM_NO_SUCH_SETTING": "1"}),
                               "env VLLM_NO_SUCH_SETTING"),
    "refused VLLM_ value": (lambda c: replace(c, env=c.env | {"VLLM_SSM_CONV_STATE_LAYOUT": "XY"}),
                            "env VLLM_SSM_CONV_STATE_LAYOUT"),
    "middleware module not written": (lambda c: replace(c, modules={}), "middleware"),
    "middleware not a coroutine": (lambda c: replace(c, modules={
        name: "def require_api_key(request, call_next):\n    return None\n" for name in c.modules}), "middleware"),
    "middleware guarding /v1 only": (lambda c: replace(c, modules={name: VLLM_OWN_CHECK for name in c.modules}),
                                     "middleware"),
    "streamer key unknown": (lambda c: replace(c, argv=with_flag(with_flag(c.argv, "--load-format", "runai_streamer"),
                                                                 "--model-loader-extra-config",
                                                                 '{"distributed":true,"threads":32}')), "model-loader"),
    "streamer concurrency a word": (lambda c: replace(c, argv=with_flag(with_flag(
        c.argv, "--load-format", "runai_streamer"), "--model-loader-extra-config", '{"concurrency":"many"}')),
        "model-loader"),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_a_planted_defect_fails_its_check(base, defect):
    mutate, check = DEFECTS[defect]
    result, detail = status(mutate(base), check)
    assert result == "FAIL", f"{defect}: {check} says {result}: {detail}"


FIXES = {
    "mtp": (lambda c: replace(c, argv=with_flag(c.argv, "--speculative-config", spec("mtp"))), "speculative"),
    "moe backend flag": (lambda c: replace(c, argv=with_flag(c.argv, "--moe-backend", "flashinfer_trtllm")),
                         "engine-args"),
    "ssm conv layout": (lambda c: replace(c, env=c.env | {"VLLM_SSM_CONV_STATE_LAYOUT": "DS"}),
                        "env VLLM_SSM_CONV_STATE_LAYOUT"),
    "rendered middleware": (lambda c: c, "middleware"),
    "rendered loader": (lambda c: c, "model-loader"),
    "rendered parsers": (lambda c: c, "tool-parser"),
}


@pytest.mark.parametrize("fix", sorted(FIXES))
def test_the_right_value_passes_its_check(base, fix):
    mutate, check = FIXES[fix]
    result, detail = status(mutate(base), check)
    assert result == "PASS", f"{fix}: {check} says {result}: {detail}"
