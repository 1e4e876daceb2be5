"""The checks of scripts/check_vllm.py, against the vLLM that check_vllm.load_vllm put first on sys.path: vLLM's own
serve parser and validation, EngineArgs and the configs that need no model, its registries (speculative methods,
parsers, cache dtypes), vllm.envs, and its middleware setup."""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import io
import logging
import os
import shlex
import sys
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

from scripts.vllm_check.cases import TEST_KEY, VLLM_NAME, Case, Outcome


@contextlib.contextmanager
def quiet() -> Iterator[None]:
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


def check_model_loader(args: argparse.Namespace) -> str:
    """The weights loader vLLM would build from the argv (--load-format, --model-loader-extra-config): the Run:ai
    streamer refuses keys it does not know and values of the wrong type when it is constructed."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.model_executor.model_loader import get_model_loader

    try:
        with _vllm_log(), _hub_online():
            engine = AsyncEngineArgs.from_cli_args(args)
            loader = get_model_loader(engine.create_load_config())
    except Exception as exc:  # noqa: BLE001 - ValueError from the loader, pydantic errors from LoadConfig
        raise CheckFailed(f"{type(exc).__name__}: {' '.join(str(exc).strip().splitlines()[:2])}") from None
    extra = engine.model_loader_extra_config or "no extra config"
    return f"{type(loader).__name__} for load format {engine.load_format!r} accepts {extra}"


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
        yield outcome("model-loader", lambda: check_model_loader(args))
        yield outcome("speculative", lambda: check_speculative(args))
        yield outcome("reasoning-parser", lambda: check_reasoning_parser(args))
        yield outcome("tool-parser", lambda: check_tool_parser(args))
        yield outcome("cache-dtypes", lambda: check_cache_dtypes(args))
        yield outcome("middleware", lambda: check_middleware(case, args))
    for check, func in env_outcomes(case):
        yield outcome(check, func)


