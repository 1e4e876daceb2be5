"""Alternatives span several servers only with NVLink GPUs: memory alone would put a 550B model on three g6e.12xlarge
(4x L40S over PCIe each), which the memory arithmetic cannot tell from a usable deployment."""

import pytest

from planner.fit import FitRequest, alternatives
from planner.hardware import GPUS
from planner.models import load_model


@pytest.mark.parametrize(("gpu", "nvlink"), [("h100", True), ("h200", True), ("b200", True), ("b300", True),
                                             ("a100-80", True), ("a100-40", True), ("l40s", False), ("l4", False),
                                             ("a10g", False), ("gb10", False)])
def test_nvlink_is_read_from_the_interconnect(gpu, nvlink):
    assert GPUS[gpu].nvlink is nvlink


def test_no_multi_server_alternative_on_pcie_only_gpus():
    ultra = load_model("nemotron-3-ultra")
    request = FitRequest(ultra, GPUS["h100"], 8, 1, "bf16", 262_144, 16)
    found = alternatives(request, limit=100)
    assert found, "some configuration fits"
    assert all(GPUS[a.gpu].nvlink or a.nodes == 1 for a in found), found
    # before the rule, 3x g6e.12xlarge (12x L40S, NVFP4, TP 4 x PP 3) was the second cheapest at $31.47/h
    assert not any(a.instance_type.startswith(("g6e.", "g6.", "g5.")) for a in found)
