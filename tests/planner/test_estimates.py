"""Throughput upper bound, cost over the time-to-live, expiry and break-even."""

import math
from datetime import UTC, datetime

import pytest

from planner.estimates import (
    article_break_even,
    break_even,
    cost_estimate,
    decode_upper_bound,
    expires_at,
    iso_utc,
    weight_bytes_read_per_step,
)
from planner.fit import FitRequest, plan_fit
from planner.hardware import GPUS, INSTANCE_TYPES
from planner.models import NEMOTRON_3_ULTRA as ULTRA


def test_single_stream_bound_is_tp_bandwidth_over_active_bytes():
    fit = plan_fit(FitRequest(ULTRA, GPUS["h100"], 8, 1, "fp8", 65536, 8))
    bound = decode_upper_bound(fit)
    assert bound.single_stream_tokens_per_s == pytest.approx(8 * 3.35e12 / 55e9)  # 487 tok/s
    assert bound.aggregate_tokens_per_s <= 8 * bound.single_stream_tokens_per_s
    assert bound.aggregate_tokens_per_s > bound.single_stream_tokens_per_s


def test_a_batch_touches_more_experts():
    one = weight_bytes_read_per_step(ULTRA, "fp8", 1)
    many = weight_bytes_read_per_step(ULTRA, "fp8", 256)
    assert one == pytest.approx(55e9)
    assert one < many <= 550e9


def test_cost_over_ttl_and_per_million_tokens():
    fit = plan_fit(FitRequest(ULTRA, GPUS["h100"], 8, 2, "bf16", 65536, 16))
    bound = decode_upper_bound(fit)
    cost = cost_estimate(INSTANCE_TYPES["p5.48xlarge"], 2, 8, bound)
    assert cost.usd_per_hour == pytest.approx(2 * 55.04)
    assert cost.max_spend_usd == pytest.approx(2 * 55.04 * 8)
    assert cost.usd_per_million_output_tokens == pytest.approx(110.08 / (bound.aggregate_tokens_per_s * 3600) * 1e6)


def test_unpriced_instance_has_no_hourly_cost():
    fit = plan_fit(FitRequest(ULTRA, GPUS["gb10"], 1, 4, "nvfp4", 32768, 4))
    cost = cost_estimate(INSTANCE_TYPES["dgx-spark"], 4, 8, decode_upper_bound(fit))
    assert cost.usd_per_hour is None and cost.max_spend_usd is None
    assert cost.capex_usd == 12_000


def test_expiry_rounds_up_to_the_minute_in_utc():
    now = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
    assert iso_utc(expires_at(now, 8)) == "2026-12-01T18:01:00Z"
    assert iso_utc(expires_at(datetime(2026, 12, 1, 10, 0, tzinfo=UTC), 0.5)) == "2026-12-01T10:30:00Z"
    with pytest.raises(ValueError):
        expires_at(datetime(2026, 12, 1), 1)


def test_article_break_even_table():
    months = {b.scenario: round(b.months, 1) for b in article_break_even()}
    assert months == {"4x GB200 NVFP4": 5.7, "8x H100 BF16 class": 6.0, "3x DGX Spark": 4.5, "4x DGX Spark": 4.0}


def test_break_even_with_running_costs_and_never():
    assert break_even("x", 300_000, 50_000, 10_000).months == pytest.approx(7.5)
    assert math.isinf(break_even("x", 300_000, 5_000, 10_000).months)


def test_max_spend_counts_the_autoscaling_maximum():
    fit = plan_fit(FitRequest(ULTRA, GPUS["h200"], 8, 1, "fp8", 65536, 8))
    cost = cost_estimate(INSTANCE_TYPES["ml.p5en.48xlarge"], 1, 8, decode_upper_bound(fit), peak_count=3)
    assert cost.usd_per_hour == pytest.approx(79.13)  # what runs now
    assert cost.max_spend_usd == pytest.approx(79.13 * 3 * 8)  # what it may cost at most
