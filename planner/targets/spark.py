"""The DGX Spark target: the plan of a small cluster of DGX Sparks (one GB10 each) serving with vLLM over Ray.

Pure: the inventory's numbers in (model, nodes, context, concurrency, port), the fit and the vLLM command out. The
Spark tasks (ansible-like/spark_cluster/vllm_serve.py) compute it once per run and launch exactly that argv.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import PlanInputError
from planner.fit import FitRequest, FitResult, plan_fit
from planner.hardware import gpu, instance_type
from planner.models import load_model
from planner.serving import ServingOptions, VllmCommand, render_vllm

SPARK = "dgx-spark"  # the planner's catalogue entry: one GB10 per node
PRECISION = "nvfp4"  # Blackwell's native 4-bit: the only precision whose weights fit a few Sparks
MODEL_FIELD = "vllm.model"  # where the inventory names the model, for errors


@dataclass(frozen=True)
class SparkPlan:
    """What the Spark cluster serves: the planner's fit and vLLM command for its nodes."""

    fit: FitResult
    serving: VllmCommand


def spark_fit(model: str, nodes: int, context_tokens: int, concurrency: int) -> FitResult:
    """The memory fit of the model on `nodes` Sparks at NVFP4."""
    spark = instance_type(SPARK, "spark")
    request = FitRequest(model=load_model(model, MODEL_FIELD), gpu=gpu(spark.gpu), gpus_per_node=spark.gpus,
                         nodes=nodes, precision=PRECISION, context=context_tokens, concurrency=concurrency)
    return plan_fit(request, with_alternatives=False)


def plan_spark(model: str, nodes: int, context_tokens: int, concurrency: int, port: int, max_nodes: int,
               source: str | None = None) -> SparkPlan:
    """The cluster's plan; PlanInputError naming `nodes` (with the cluster sizes that fit) when it does not fit."""
    fit = spark_fit(model, nodes, context_tokens, concurrency)
    if not fit.fits:
        sizes = [n for n in range(1, max_nodes + 1) if spark_fit(model, n, context_tokens, concurrency).fits]
        allowed = (f"{sizes[0]} to {sizes[-1]} DGX Sparks" if sizes else f"no cluster of up to {max_nodes} Sparks")
        why = next((r for r in fit.reasons if "does not fit" in r), fit.reasons[-1])
        raise PlanInputError("nodes", nodes, f"{allowed} for {model} at {PRECISION} ({nodes} node(s): {why})", source)
    return SparkPlan(fit, render_vllm(fit, ServingOptions(port=port)))
