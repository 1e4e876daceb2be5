"""Serving commands: the vLLM argv and the NIM environment, rendered once from a fitted plan for every target.

No secret is ever rendered: the API key reaches vLLM as VLLM_API_KEY and NIM's NGC key as NGC_API_KEY, both from the
target's secret store; `secret_env` names them so each target knows what to inject.

vLLM's own VLLM_API_KEY check guards only the /v1, /v2, /inference and /cohere prefixes (vllm#58144; checked in
vLLM 0.33.0): /invocations (SageMaker-style inference), /tokenize, /pooling, /score, /metrics and others answer
without a key, and an empty key turns its check off. So the argv ends with
`--middleware nemotron_auth.require_api_key`, and `VllmCommand.modules` carries that module's source: every target
writes it into one directory and puts that directory on the server's PYTHONPATH.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from planner.errors import PlanInputError, one_of
from planner.fit import LONG_CONTEXT_THRESHOLD, FitResult, vllm_default_max_num_batched_tokens
from planner.hardware import GIB
from planner.references import ref

VLLM_IMAGE = ref("vllm-image")
NIM_IMAGE = ref("nim-image")  # NIM LLM 2.x for this model (docs/sources.md#nim-nemotron-3-ultra)
# The NIM for this model ships BF16 and NVFP4 profiles only, NVFP4 on Hopper too (docs/sources.md#nim-nemotron-3-ultra).
NIM_PRECISIONS = ("bf16", "nvfp4")
NIM_CACHE_PATH = "/opt/nim/.cache"
API_PORT = 8000
# The Run:ai Model Streamer, when a stack streams its staged S3 copy (docs/sources.md#cold-start)
STREAM_CONCURRENCY = 32  # parallel reads per process (vLLM's default is 16)
STREAM_MEMORY_LIMIT = 8 * 1024**3  # bytes of CPU buffer per process (8 ranks: 64 GiB of a p5's 2 TiB)

# The API key on every path of the vLLM server (see the module docstring). Targets write AUTH_MODULE_FILE into a
# directory of their own on PYTHONPATH; in containers they mount it at AUTH_MODULE_DIR (EC2 keeps it next to entry.sh).
AUTH_MODULE = "nemotron_auth"
AUTH_MODULE_FILE = f"{AUTH_MODULE}.py"
AUTH_MIDDLEWARE = f"{AUTH_MODULE}.require_api_key"
AUTH_MODULE_DIR = "/opt/nemotron-deploy/auth"
AUTH_MIDDLEWARE_SOURCE = '''"""nemotron-deploy: the API key on every path of the vLLM server, not only under /v1."""
import hmac
import os

from starlette.responses import JSONResponse

# No key, no server: an unset or blank key would leave every path open (vLLM turns its own check off for "").
_KEY = os.environ.get("VLLM_API_KEY")
if _KEY is None:
    raise SystemExit("nemotron_auth: VLLM_API_KEY is unset; refusing to serve without an API key")
if not _KEY.strip():
    raise SystemExit("nemotron_auth: VLLM_API_KEY is empty; refusing to serve without an API key")
_EXPECTED = _KEY.encode()
_OPEN_PATHS = frozenset({"/health"})


async def require_api_key(request, call_next):
    if request.method == "OPTIONS" or request.url.path in _OPEN_PATHS:
        return await call_next(request)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # The scheme is case-insensitive (RFC 7235, as vLLM's own check); the key is compared in constant time.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), _EXPECTED):
        return JSONResponse({"error": "Unauthorized"}, status_code=401)
    return await call_next(request)
'''

# Flags the planner owns: set them through the stack config, not extra args, so the fit and the command agree.
PLANNER_FLAGS = {
    "--tensor-parallel-size": "tensorParallel", "--pipeline-parallel-size": "pipelineParallel",
    "--data-parallel-size": "nodes/instanceType", "--data-parallel-backend": "nodes",
    "--max-model-len": "contextTokens",
    "--max-num-seqs": "concurrency", "--gpu-memory-utilization": "gpuMemoryUtilization",
    "--kv-cache-dtype": "kvCacheDtype", "--port": "(fixed)", "--served-model-name": "model",
    "--speculative-config": "mtpTokens", "--distributed-executor-backend": "nodes",
    "--middleware": "(fixed: the API key on every path)", "--moe-backend": "precision/instanceType",
    "--max-num-batched-tokens": "maxNumBatchedTokens",
    "--load-format": "weightsLoader", "--model-loader-extra-config": "weightsLoader",
}
SECRET_FLAGS = ("--api-key", "--hf-token")

# vLLM imports --middleware only after the engine has loaded the model (minutes on 550B), so the middleware's own
# refusal comes late. Every target runs this line before `vllm serve` (and before Ray on a head): no key, or a blank
# one, stops the launch at once with one line (exit 78, EX_CONFIG).
API_KEY_GUARD = ('if [ -z "$(printf %s "${VLLM_API_KEY:-}" | tr -d "[:space:]")" ]; then '
                 'echo "nemotron: VLLM_API_KEY is unset or empty: refusing to start vLLM without an API key" >&2; '
                 'exit 78; fi')


@dataclass(frozen=True)
class ServingOptions:
    """Choices a stack may make about serving that the memory fit does not decide."""

    port: int = API_PORT
    mtp_tokens: int = 3  # MTP speculative tokens; 0 turns speculative decoding off
    reasoning_parser: str | None = "nemotron_v3"
    tool_call_parser: str | None = "qwen3_coder"
    extra_args: tuple[str, ...] = ()
    image: str = VLLM_IMAGE
    nim_image: str = NIM_IMAGE
    nim_model_profile: str | None = None
    # A staged S3 copy the server streams straight into GPU memory (Run:ai Model Streamer, each rank reading its
    # share and broadcasting it: `distributed`); None: vLLM loads the repo id from local disk or the hub.
    stream_from: str | None = None


@dataclass(frozen=True)
class VllmCommand:
    argv: tuple[str, ...]
    env: dict[str, str]  # plain values only
    secret_env: tuple[str, ...]  # names the target must fill from its secret store
    image: str
    model_repo: str
    port: int
    warnings: tuple[str, ...] = ()
    # Python modules the argv imports (file name -> source; no secrets): a target writes them, mode 644, into one
    # directory of its own and puts that directory first on the server's PYTHONPATH.
    modules: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        return shlex.join(self.argv)

    def launch(self) -> str:
        """A bash script that starts the server: the API-key guard, then `exec` of the argv."""
        return f"{API_KEY_GUARD}\nexec {self.shell()}"

    def to_json(self) -> dict:
        return {"engine": "vllm", "image": self.image, "model_repo": self.model_repo, "port": self.port,
                "argv": list(self.argv), "command": self.shell(), "env": dict(self.env),
                "secret_env": list(self.secret_env), "modules": sorted(self.modules), "warnings": list(self.warnings)}


@dataclass(frozen=True)
class NimEnvironment:
    env: dict[str, str]
    secret_env: tuple[str, ...]
    image: str
    port: int
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {"engine": "nim", "image": self.image, "port": self.port, "env": dict(self.env),
                "secret_env": list(self.secret_env), "warnings": list(self.warnings)}


def checkpoint_for(fit: FitResult) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(repository, extra flags, warnings) for the requested precision.

    A published checkpoint of that precision when the model has one. Without one, FP8 may still be reached by
    quantizing the BF16 checkpoint while vLLM loads it (`--quantization fp8`), but only where the BF16 weights
    themselves fit: vLLM allocates each layer at the checkpoint's width before quantizing it, so the peak per GPU
    is the BF16 shard. That is decided here in numbers.
    """
    model, precision, layout = fit.request.model, fit.request.precision, fit.layout
    published = model.checkpoints.get(precision)
    if published is not None:
        warnings = ()
        if published.publisher == "community":
            warnings = (f"{published.describe()}: not published by the model's authors; check its card and "
                        "licence before an evaluation depends on it",)
        return published.repo, (), warnings
    if precision == "fp8" and "bf16" in model.checkpoints:
        shards = layout.tensor_parallel * layout.pipeline_parallel
        peak_gib = model.weights_bytes("bf16") / shards / GIB
        memory_gib = fit.request.gpu.memory_gib
        if peak_gib >= memory_gib * fit.request.gpu_memory_utilization:
            raise PlanInputError(
                "precision", precision,
                f"a precision with a checkpoint for {model.name} ({one_of(model.checkpoints)}): no FP8 checkpoint, "
                f"and quantizing the BF16 one at load needs {peak_gib:,.1f} GiB per GPU at its peak "
                f"(BF16 over TP {layout.tensor_parallel} x PP {layout.pipeline_parallel}), more than "
                f"{memory_gib:g} GiB x {fit.request.gpu_memory_utilization:g}")
        return model.checkpoints["bf16"].repo, ("--quantization", "fp8"), (
            f"no FP8 checkpoint: vLLM quantizes the BF16 one while loading (peak {peak_gib:,.1f} GiB per GPU, "
            "slower start)",)
    listed = one_of(model.checkpoints) or "none listed"
    raise PlanInputError("precision", precision, f"a precision with a checkpoint for {model.name}: {listed}")


def batched_tokens_args(fit: FitResult) -> list[str]:
    """`--max-num-batched-tokens N` when the plan's budget (what its runtime reserve was computed for) differs from
    vLLM's default on this GPU; nothing when they agree, so vLLM's own default stays visible as such."""
    tokens = fit.request.batched_tokens
    if tokens == vllm_default_max_num_batched_tokens(fit.request.gpu):
        return []
    return ["--max-num-batched-tokens", str(tokens)]


def _check_extra_args(extra: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse secrets and planner-owned flags in vllmExtraArgs; vLLM's own parser judges the rest at start."""
    warnings: list[str] = []
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in SECRET_FLAGS:
            raise PlanInputError("vllmExtraArgs", flag, "no secrets on the command line; the API key comes from "
                                 "the VLLM_API_KEY environment variable, filled from the secret store")
        if flag in PLANNER_FLAGS:
            raise PlanInputError("vllmExtraArgs", flag, f"flags the planner does not set; change {PLANNER_FLAGS[flag]}"
                                 " in the stack config instead")
    return tuple(warnings)


def render_vllm(fit: FitResult, options: ServingOptions = ServingOptions()) -> VllmCommand:
    """The `vllm serve` argv and environment for a fitted plan, the same on EC2, EKS and DGX Spark."""
    if not fit.fits:
        raise PlanInputError("plan", "does not fit", "a configuration the planner accepts (see its reasons)")
    r, layout, model = fit.request, fit.layout, fit.request.model
    repo, quantization, warnings = checkpoint_for(fit)
    warnings = warnings + _check_extra_args(options.extra_args)
    argv = ["vllm", "serve", options.stream_from or repo,
            "--served-model-name", model.served_model_name or model.name,
            "--host", "0.0.0.0", "--port", str(options.port),
            "--trust-remote-code",
            "--tensor-parallel-size", str(layout.tensor_parallel)]
    if layout.pipeline_parallel > 1:
        argv += ["--pipeline-parallel-size", str(layout.pipeline_parallel)]
    if layout.data_parallel > 1:
        argv += ["--data-parallel-size", str(layout.data_parallel)]
        if layout.nodes > 1:
            # Only the head runs `vllm serve`: with vLLM's default "mp" backend it would start every replica on the
            # head's own GPUs; the Ray backend places them over the Ray cluster, one replica per node's GPUs.
            argv += ["--data-parallel-backend", "ray"]
            replica_gpus = layout.tensor_parallel * layout.pipeline_parallel
            if replica_gpus > layout.gpus_per_node:
                warnings += (f"DP {layout.data_parallel} over Ray with replicas of {replica_gpus} GPUs: vLLM packs "
                             f"each replica onto one node of {layout.gpus_per_node} GPUs; choose TP x PP within "
                             "a node",)
    if layout.expert_parallel:
        argv += ["--enable-expert-parallel"]
    argv += list(quantization)
    if r.precision == "nvfp4" and r.precision in r.gpu.precisions and r.gpu.fp4_moe_backend:
        # FP4 MoE kernels where the GPU has FP4 math (vLLM >= 0.23 dropped VLLM_USE_FLASHINFER_MOE_FP4 and
        # VLLM_FLASHINFER_MOE_BACKEND for this flag); Hopper's weight-only NVFP4 is left to vLLM (Marlin)
        argv += ["--moe-backend", r.gpu.fp4_moe_backend]
    argv += ["--kv-cache-dtype", "fp8" if r.kv_cache_dtype == "fp8" else "auto"]
    if model.mamba_layers:
        argv += ["--mamba-ssm-cache-dtype", "float32"]
    argv += ["--max-model-len", str(r.context),
             "--max-num-seqs", str(r.concurrency),
             "--gpu-memory-utilization", f"{r.gpu_memory_utilization:g}"]
    argv += batched_tokens_args(fit)
    if options.stream_from:
        argv += ["--load-format", "runai_streamer", "--model-loader-extra-config", json.dumps(
            {"distributed": True, "concurrency": STREAM_CONCURRENCY, "memory_limit": STREAM_MEMORY_LIMIT},
            separators=(",", ":"))]
    if options.mtp_tokens and layout.pipeline_parallel > 1:
        warnings += (f"MTP speculative decoding under pipeline parallel (PP {layout.pipeline_parallel}) is not "
                     "confirmed in vLLM; if vLLM refuses to start, set mtpTokens: 0",)
    if options.mtp_tokens:
        spec = {"method": "mtp", "num_speculative_tokens": options.mtp_tokens}  # nemotron_h_mtp: deprecated alias
        argv += ["--speculative-config", json.dumps(spec, separators=(",", ":"))]
    if options.reasoning_parser:
        argv += ["--reasoning-parser", options.reasoning_parser]
    if options.tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", options.tool_call_parser]
    if layout.nodes > 1:
        argv += ["--distributed-executor-backend", "ray"]
    argv += list(options.extra_args)
    argv += ["--middleware", AUTH_MIDDLEWARE]  # the API key beyond /v1 (see the module docstring)

    env = {}
    if r.context > LONG_CONTEXT_THRESHOLD:
        env["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] = "1"
    return VllmCommand(tuple(argv), env, ("VLLM_API_KEY",), options.image, repo, options.port, warnings,
                       {AUTH_MODULE_FILE: AUTH_MIDDLEWARE_SOURCE})


def render_nim(fit: FitResult, options: ServingOptions = ServingOptions()) -> NimEnvironment:
    """The NIM container environment for a fitted plan; NIM runs vLLM inside, so the same layout and limits."""
    if not fit.fits:
        raise PlanInputError("plan", "does not fit", "a configuration the planner accepts (see its reasons)")
    r, layout, model = fit.request, fit.layout, fit.request.model
    if r.precision not in NIM_PRECISIONS:
        raise PlanInputError("precision", r.precision,
                             f"{one_of(NIM_PRECISIONS)} for engine nim: the NIM ships profiles for those only")
    passthrough = ["--kv-cache-dtype", "fp8" if r.kv_cache_dtype == "fp8" else "auto",
                   "--max-num-seqs", str(r.concurrency)] + batched_tokens_args(fit)
    if model.mamba_layers:
        passthrough += ["--mamba-ssm-cache-dtype", "float32"]
    if layout.expert_parallel:
        passthrough += ["--enable-expert-parallel"]
    env = {
        "NIM_SERVED_MODEL_NAME": model.served_model_name or model.name,
        "NIM_MAX_MODEL_LEN": str(r.context),
        "NIM_TENSOR_PARALLEL_SIZE": str(layout.tensor_parallel),
        "NIM_PIPELINE_PARALLEL_SIZE": str(layout.pipeline_parallel),
        "NIM_CACHE_PATH": NIM_CACHE_PATH,
        "NIM_PASSTHROUGH_ARGS": shlex.join(passthrough),
    }
    if layout.nodes > 1:
        # NVIDIA's multi-node NIM recipes: every pod knows it is one of several and where the leader is (on
        # Kubernetes, the LeaderWorkerSet's leader address, expanded from the pod's own environment).
        env |= {"NIM_MULTI_NODE": "1", "NIM_NUM_COMPUTE_NODES": str(layout.nodes),
                "NIM_LEADER_IP_ADDRESS": "$(LWS_LEADER_ADDRESS)"}
    # The profile, chosen explicitly: left to itself NIM picks by the GPUs it finds, which may not be the precision
    # the fit was computed for. Names follow NIM's vllm-<precision>-tp<N>-pp<M> pattern.
    env["NIM_MODEL_PROFILE"] = options.nim_model_profile or (
        f"vllm-{r.precision}-tp{layout.tensor_parallel}-pp{layout.pipeline_parallel}")
    warnings = (f"NIM profile {env['NIM_MODEL_PROFILE']}: named by NIM's profile pattern; confirm it with "
                "`list-model-profiles` in the image before the first deploy",)
    return NimEnvironment(env, ("NGC_API_KEY",), options.nim_image, options.port, warnings)


@dataclass(frozen=True)
class ArticleFlag:
    """One line of the article's `vllm serve` command and what the toolkit does with it."""

    article: str
    verdict: str  # "kept", "corrected", "dropped", "opt-in"
    reason: str


VLLM_CHECKED = "0.33.0"  # the release the flag review below was checked against (`make check-vllm`)

ARTICLE_FLAG_REVIEW = (
    ArticleFlag("--tensor-parallel-size 8 (BF16, 8x H100)", "corrected",
                "1,044 GiB of BF16 weights do not fit 8x 79.6 GiB; the planner serves NVIDIA's NVFP4 checkpoint on "
                "8x H100 (W4A16), or BF16 with --pipeline-parallel-size 2 on 16x H100"),
    ArticleFlag("--speculative_config.method mtp --speculative_config.num_speculative_tokens 5", "corrected",
                "rendered as one JSON --speculative-config with method mtp (vLLM's canonical name; nemotron_h_mtp is "
                "a deprecated alias it rewrites with a warning); speculative tokens default to 3, set by mtpTokens"),
    ArticleFlag("--mamba-backend triton", "kept",
                "a real flag (Mamba SSU backend: triton, flashinfer, cpu) and triton is vLLM's default, so it is not "
                "rendered; another backend through vllmExtraArgs"),
    ArticleFlag("--enable-flashinfer-autotune", "kept",
                "a real flag, on by default (off only at -O0), so it is not rendered"),
    ArticleFlag("export VLLM_USE_FLASHINFER_MOE_FP4=1 (on H100 BF16)", "corrected",
                "gone since vLLM 0.23 (only warned about as unknown): NVFP4 MoE kernels are chosen with --moe-backend, "
                "rendered for NVFP4 on GPUs with FP4 math (flashinfer_trtllm on B200/GB200, what "
                "VLLM_FLASHINFER_MOE_BACKEND=latency meant; flashinfer_cutlass on GB10); Hopper has no FP4 math"),
    ArticleFlag("--max-model-len 262144 --max-num-seqs 16", "corrected",
                "derived from the fit: the context and concurrency the stack asks for, checked against free memory"),
    ArticleFlag("--max-num-batched-tokens 32768, --async-scheduling", "opt-in",
                "real vLLM flags, left at vLLM's defaults (8,192 batched tokens on these GPUs): the batched-token "
                "budget is the stack key maxNumBatchedTokens, rendered when it differs from vLLM's default, and the "
                "fit reserves activations for it (32,768 tokens: 2 GiB + 8 GiB per GPU); --async-scheduling via "
                "vllmExtraArgs"),
    ArticleFlag("export VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1", "kept",
                "a real setting and already vLLM's default (1), so it is not rendered"),
    ArticleFlag("--kv-cache-dtype fp8, --mamba-ssm-cache-dtype float32", "kept", "as NVIDIA recommends"),
    ArticleFlag("--reasoning-parser nemotron_v3 --enable-auto-tool-choice --tool-call-parser qwen3_coder", "kept",
                "both parsers are in vLLM's registries"),
    ArticleFlag("--enable-expert-parallel (absent in the article)", "corrected",
                "added for MoE models: NVIDIA strongly prefers expert parallel for LatentMoE"),
    ArticleFlag("--api-key (absent in the article)", "corrected",
                "every endpoint requires a key, passed as VLLM_API_KEY from the secret store, never on the argv; "
                "--middleware nemotron_auth.require_api_key extends vLLM's check (/v1, /v2, /inference, /cohere "
                "only) to every path, and the launch refuses an unset or empty key before the model loads"),
)
