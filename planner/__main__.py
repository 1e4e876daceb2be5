"""`python -m planner fit ...`: the memory-fit verdict for one configuration, as a table or --json.

Exit 0 with a verdict either way; exit 2 with one line naming the field on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from planner.cli import OneLineParser, PipeConsole, number, run_main, whole
from planner.errors import PlanInputError, one_of
from planner.estimates import article_break_even, with_one_server_alternatives
from planner.fit import DEFAULT_GPU_MEMORY_UTILIZATION, FitRequest, FitResult, plan_fit
from planner.hardware import GPUS
from planner.hardware import gpu as lookup_gpu
from planner.hf_config import load_model_or_config
from planner.models import PRECISIONS, load_model
from planner.serving import ARTICLE_FLAG_REVIEW, VLLM_CHECKED

# The fit request's fields and the flags that set them: a message names the flag the user typed.
FIT_FLAGS = {"model": "--model", "gpu": "--gpu", "gpus_per_node": "--gpus-per-node", "nodes": "--nodes",
             "precision": "--precision", "context": "--context", "concurrency": "--concurrency",
             "kv_cache_dtype": "--kv-cache-dtype", "gpu_memory_utilization": "--gpu-memory-utilization",
             "tensor_parallel": "--tensor-parallel", "pipeline_parallel": "--pipeline-parallel"}


def as_typed(err: PlanInputError) -> PlanInputError:
    """The error with the flag as typed (`--gpus-per-node`) when it is about a flag, not a file."""
    if err.source is None and err.field in FIT_FLAGS:
        return PlanInputError(FIT_FLAGS[err.field], err.value, err.allowed)
    return err


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m planner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    fit = sub.add_parser("fit", help="can this model be served on these GPUs?")
    fit.add_argument("--model", default="nemotron-3-ultra",
                     help="built-in model name, a model-spec YAML file (layers or layer_kinds: attention, "
                          "sliding_window, chunked_local, mla, mamba2, mamba1, gated_deltanet) or a Hugging Face "
                          "config.json (Llama, Qwen3 dense and MoE, Mixtral, DeepSeek-V3/Kimi K2, Gemma 3, gpt-oss, "
                          "NemotronH); parameters are then computed from its shapes")
    fit.add_argument("--gpu", required=True, help=f"one of {one_of(GPUS)}")
    fit.add_argument("--gpus-per-node", type=whole, required=True)
    fit.add_argument("--nodes", type=whole, default=1)
    fit.add_argument("--precision", help=f"{', '.join(PRECISIONS)}; default: the precision a config.json's "
                                          "quantization_config (or dtype) states; required otherwise")
    fit.add_argument("--context", type=whole, required=True, help="max tokens per sequence (max-model-len)")
    fit.add_argument("--concurrency", type=whole, required=True, help="sequences served at once (max-num-seqs)")
    fit.add_argument("--kv-cache-dtype", default="fp8")
    fit.add_argument("--gpu-memory-utilization", type=number, default=DEFAULT_GPU_MEMORY_UTILIZATION)
    fit.add_argument("--tensor-parallel", type=whole)
    fit.add_argument("--pipeline-parallel", type=whole)
    fit.add_argument("--json", action="store_true", help="one JSON object on stdout")
    article = sub.add_parser("article", help="the article's 8x H100 BF16 vLLM command, checked")
    article.add_argument("--json", action="store_true")
    return parser


def print_fit(result: FitResult, console: Console) -> None:
    r = result.request
    verdict = "[bold green]FITS[/]" if result.fits else "[bold red]DOES NOT FIT[/]"
    console.print(f"{r.model.name} on {r.nodes} node(s) x {r.gpus_per_node} {r.gpu.name}, {r.precision}, "
                  f"context {r.context:,}, concurrency {r.concurrency}: {verdict}")
    table = Table(show_header=False, box=None, pad_edge=False)
    for label, value in (
        ("layout", result.layout.describe()),
        ("weights", f"{result.weights_gib:,.1f} GiB total, {result.weights_per_gpu_gib:,.1f} GiB per GPU"),
        ("per-GPU budget", f"{result.per_gpu_budget_gib:,.1f} GiB of {r.gpu.memory_gib:g} GiB"),
        ("free for cache", f"{result.per_gpu_free_gib:,.1f} GiB per GPU"),
        ("KV cache", f"{result.kv_cache_bytes_per_token:,} B/token ({result.kv_cache_bytes_per_token_per_gpu:,} "
                     f"per GPU)"),
        ("Mamba state", f"{result.mamba_state_bytes_per_sequence / 2**20:,.1f} MiB/sequence "
                        f"({result.mamba_state_bytes_per_sequence_per_gpu / 2**20:,.1f} per GPU)"),
        ("max sequences", f"{result.max_concurrent_sequences:,} at {r.context:,} tokens"),
    ):
        table.add_row(f"  {label}", value)
    console.print(table)
    for reason in result.reasons:
        console.print(f"  - {reason}", highlight=False)
    for warning in result.warnings:
        console.print(f"  [yellow]! {warning}[/]", highlight=False)
    if result.alternatives:
        console.print("  configurations that do fit, cheapest first:")
        for alt in result.alternatives:
            console.print(f"    * {alt.describe()}", highlight=False)


def article_check() -> tuple[FitResult, FitResult, FitResult]:
    """The article's pilot (8x H100, BF16, 262,144 tokens, 16 sequences), then the same with NVIDIA's NVFP4
    checkpoint (what the toolkit serves on H100) and with the community FP8 one. The pilot's alternatives also name
    every single server that holds it in BF16, as the article meant to evaluate (8x B200, 8x B300)."""
    model, h100 = load_model("nemotron-3-ultra"), lookup_gpu("h100")
    asked = with_one_server_alternatives(plan_fit(FitRequest(model, h100, 8, 1, "bf16", 262_144, 16)))
    nvfp4 = plan_fit(FitRequest(model, h100, 8, 1, "nvfp4", 262_144, 16))
    fp8 = plan_fit(FitRequest(model, h100, 8, 1, "fp8", 262_144, 16))
    return asked, nvfp4, fp8


def print_checkpoints(model_name: str, console: Console) -> None:
    """The checkpoints that exist for the model, with their publisher and size."""
    model = load_model(model_name)
    console.print(f"Checkpoints of {model.name} (docs/sources.md#nemotron-3-ultra-checkpoints):")
    for precision, checkpoint in model.checkpoints.items():
        size = f"{checkpoint.size_gb:,.1f} GB" if checkpoint.size_gb else "size not published"
        console.print(f"  {precision:6} {checkpoint.describe()}, {size}", highlight=False, markup=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = PipeConsole(highlight=False, width=120)
    try:
        if args.command == "article":
            asked, nvfp4, fp8 = article_check()
            if args.json:
                checkpoints = [{"precision": p, "repo": c.repo, "publisher": c.publisher, "size_gb": c.size_gb}
                               for p, c in asked.request.model.checkpoints.items()]
                print(json.dumps({"article_config": asked.to_json(), "same_at_nvfp4": nvfp4.to_json(),
                                  "same_at_fp8": fp8.to_json(), "checkpoints": checkpoints,
                                  "flags": [f.__dict__ for f in ARTICLE_FLAG_REVIEW],
                                  "flags_checked_against_vllm": VLLM_CHECKED,
                                  "break_even": [b.to_json() for b in article_break_even()]}, indent=2))
                return 0
            print_checkpoints("nemotron-3-ultra", console)
            console.print()
            print_fit(asked, console)
            console.print()
            print_fit(nvfp4, console)
            console.print()
            print_fit(fp8, console)
            console.print(f"\nThe article's vllm serve flags (checked against vLLM {VLLM_CHECKED}):")
            for flag in ARTICLE_FLAG_REVIEW:
                console.print(f"  [{flag.verdict}] {flag.article}: {flag.reason}", highlight=False, markup=False)
            return 0
        model = load_model_or_config(args.model)
        precision = args.precision or model.native_precision
        if precision is None:
            raise PlanInputError("precision", None, f"{', '.join(PRECISIONS)} (required unless --model is a "
                                 "config.json that states its precision)")
        request = FitRequest(
            model=model, gpu=lookup_gpu(args.gpu), gpus_per_node=args.gpus_per_node,
            nodes=args.nodes, precision=precision, context=args.context, concurrency=args.concurrency,
            kv_cache_dtype=args.kv_cache_dtype, gpu_memory_utilization=args.gpu_memory_utilization,
            tensor_parallel=args.tensor_parallel, pipeline_parallel=args.pipeline_parallel)
        result = plan_fit(request)
    except PlanInputError as err:
        print(f"python -m planner: {as_typed(err)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_fit(result, console)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
