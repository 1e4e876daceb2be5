"""Parallel layout: TP inside a node and dividing the heads, PP across nodes, Spark TP or PP across nodes."""

import pytest

from planner.errors import PlanInputError
from planner.fit import choose_layout, tensor_parallel_problem
from planner.models import NEMOTRON_3_ULTRA as ULTRA

LAYOUTS = [
    # gpus_per_node, nodes, (tp, pp, dp, ep)
    (8, 1, (8, 1, 1, True)),  # one p5: TP 8
    (8, 2, (8, 2, 1, True)),  # two p5: TP 8 inside, PP 2 across
    (4, 1, (4, 1, 1, True)),  # the published 4x B200 recipe
    (1, 1, (1, 1, 1, False)),  # one Spark
    (1, 2, (2, 1, 1, True)),  # two Sparks: TP 2 over the link
    (1, 3, (1, 3, 1, False)),  # three Sparks: 3 does not divide 64 heads -> PP 3
    (1, 4, (4, 1, 1, True)),  # four Sparks: TP 4
]


@pytest.mark.parametrize(("gpus_per_node", "nodes", "expected"), LAYOUTS)
def test_automatic_layout(gpus_per_node, nodes, expected):
    layout = choose_layout(ULTRA, gpus_per_node, nodes)
    assert (layout.tensor_parallel, layout.pipeline_parallel, layout.data_parallel, layout.expert_parallel) == \
        expected


def test_tp_must_divide_the_heads():
    assert [tp for tp in range(1, 17) if tensor_parallel_problem(ULTRA, tp) is None] == [1, 2, 4, 8, 16]
    with pytest.raises(PlanInputError, match="tensor_parallel: 3 .* divisor of the model's 64 attention heads"):
        choose_layout(ULTRA, 1, 3, tensor_parallel=3)


def test_explicit_tp_and_pp_must_divide_the_cluster():
    with pytest.raises(PlanInputError, match="tensor_parallel: 16 .* divisor of the 8 GPUs"):
        choose_layout(ULTRA, 8, 1, tensor_parallel=16)
    with pytest.raises(PlanInputError, match="pipeline_parallel: 3"):
        choose_layout(ULTRA, 8, 1, pipeline_parallel=3)


def test_explicit_smaller_tp_leaves_data_parallel_replicas():
    layout = choose_layout(ULTRA, 8, 1, tensor_parallel=4)
    assert (layout.tensor_parallel, layout.pipeline_parallel, layout.data_parallel) == (4, 1, 2)
