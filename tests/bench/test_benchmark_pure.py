"""planner/benchmark.py: percentiles, stream parsing, parser verdicts, cost against the planner's bound, input."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.benchmark import (
    SseLineSplitter,
    StreamAccumulator,
    bound_at_concurrency,
    compare_cost,
    distribution,
    failed_request,
    judge_reasoning,
    judge_tool_call,
    parse_concurrency_levels,
    parse_prompts,
    percentile,
    record_filename,
    redact,
    summarize_level,
    usd_per_million_tokens,
)
from planner.errors import PlanInputError
from planner.estimates import ThroughputBound
from planner.plan import plan_stack
from planner.stack_config import load_stack
from scripts.bench import STACKS_DIR

# ---- percentiles -----------------------------------------------------------------------------------------------

PERCENTILE_CASES = [
    ([1, 2, 3, 4], 50, 2.5),
    ([4, 3, 2, 1], 50, 2.5),  # order does not matter
    ([5], 99, 5),
    ([1, 2], 0, 1),
    ([1, 2], 100, 2),
    (list(range(1, 101)), 90, 90.1),  # rank 89.1 between 90 and 91
    (list(range(1, 101)), 99, 99.01),
    ([0.2, 0.2, 0.2, 10.0], 50, 0.2),  # one outlier does not move the median
]


@pytest.mark.parametrize(("values", "q", "expected"), PERCENTILE_CASES)
def test_percentile(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_none_and_q_is_checked():
    assert percentile([], 50) is None
    assert distribution([]).p99 is None and distribution([]).count == 0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=50),
       st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_percentile_is_monotone_and_within_range(values, q1, q2):
    low, high = sorted((q1, q2))
    assert min(values) - 1e-9 <= percentile(values, low) <= percentile(values, high) + 1e-9
    assert percentile(values, high) <= max(values) + 1e-9


# ---- stream parsing --------------------------------------------------------------------------------------------

def chunk(delta=None, finish=None, model="m", **extra):
    body = {"model": model, "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **extra}
    return "data: " + json.dumps(body)


USAGE = "data: " + json.dumps({"model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}})


def feed(lines_at):
    acc = StreamAccumulator()
    for line, at in lines_at:
        acc.feed_line(line, at)
    return acc.finish(lines_at[-1][1] + 0.001 if lines_at else 0.0)


def test_role_only_first_chunk_does_not_count_as_first_token():
    result = feed([(chunk({"role": "assistant", "content": ""}), 0.001), (chunk({"content": "a"}), 0.2),
                   (chunk({"content": "b"}), 0.22), (chunk({"content": "c"}), 0.25), (chunk({}, "stop"), 0.25),
                   ("data: [DONE]", 0.26)])
    assert result.ok and result.model == "m"
    assert result.ttft_s == pytest.approx(0.2)
    assert result.chunk_gaps_s == pytest.approx((0.02, 0.03))
    assert result.output_tokens == 3 and not result.output_tokens_from_usage
    assert result.time_per_output_token_s == pytest.approx(0.025)
    assert result.content == "abc" and result.finish_reason == "stop"


def test_usage_chunk_gives_the_token_count_when_chunks_carry_several_tokens():
    result = feed([(chunk({"content": "ab"}), 0.1), (chunk({"content": "cdef"}), 0.2), (chunk({}, "stop"), 0.2),
                   (USAGE, 0.21), ("data: [DONE]", 0.21)])
    assert result.output_tokens == 7 and result.output_tokens_from_usage
    assert result.time_per_output_token_s == pytest.approx(0.1 / 6)


STREAM_FAILURES = [
    ("no finish and no [DONE]", [(chunk({"content": "a"}), 0.1)], "truncated stream"),
    ("error object mid-stream", [(chunk({"content": "a"}), 0.1),
                                 ('data: {"error": {"message": "engine died", "code": 500}}', 0.2),
                                 ("data: [DONE]", 0.3)], "stream error"),
    ("malformed JSON", [(chunk({"content": "a"}), 0.1), ("data: {not json", 0.2), ("data: [DONE]", 0.3)],
     "malformed chunk"),
    ("only a role chunk", [(chunk({"role": "assistant", "content": ""}), 0.1), (chunk({}, "stop"), 0.2),
                           ("data: [DONE]", 0.2)], "no tokens"),
]


@pytest.mark.parametrize(("case", "lines", "kind"), STREAM_FAILURES, ids=[c[0] for c in STREAM_FAILURES])
def test_broken_streams_are_errors_not_crashes(case, lines, kind):
    result = feed(lines)
    assert not result.ok and result.error_kind == kind


def test_bare_json_lines_comments_and_event_fields_are_accepted():
    result = feed([(": keep-alive", 0.0), ("event: message", 0.0), (json.dumps(
        {"choices": [{"delta": {"content": "x"}}]}), 0.1), (json.dumps({"choices": [{"delta": {}, "finish_reason":
                                                                                     "length"}]}), 0.2)])
    assert result.ok and result.content == "x" and result.finish_reason == "length"


def test_reasoning_and_tool_call_fragments_are_assembled():
    result = feed([
        (chunk({"reasoning": "think "}), 0.1),  # newer vLLM names the field `reasoning`
        (chunk({"reasoning_content": "more"}), 0.12),
        (chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": ""}}]}), 0.2),
        (chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}), 0.21),
        (chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}), 0.22),
        (chunk({}, "tool_calls"), 0.23), ("data: [DONE]", 0.23)])
    assert result.reasoning == "think more"
    assert [(c.id, c.name, c.parsed_arguments()) for c in result.tool_calls] == [("c1", "get_weather",
                                                                                   {"city": "Oslo"})]
    assert result.ttft_s == pytest.approx(0.1) and len(result.chunk_gaps_s) == 4


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_line_splitter_reassembles_lines_cut_anywhere(cuts):
    body = b'data: {"a": "\xc3\xa9t\xc3\xa9"}\n\ndata: {"b": 2}\r\n\ndata: [DONE]\n\n'
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[i:j] for i, j in zip([0, *points], [*points, len(body)], strict=True)]
    splitter = SseLineSplitter()
    lines = [line for piece in pieces for line in splitter.feed(piece)] + splitter.flush()
    assert [line for line in lines if line] == ['data: {"a": "été"}', 'data: {"b": 2}', "data: [DONE]"]


# ---- level summaries -------------------------------------------------------------------------------------------

def test_level_counts_errors_and_times_only_successes():
    good = feed([(chunk({"content": "a"}), 0.3), (chunk({"content": "b"}), 0.35), (chunk({}, "stop"), 0.35),
                 ("data: [DONE]", 0.4)])
    results = [good, good, failed_request("http 500", "boom", 500, 0.01), failed_request("timeout", "slow")]
    level = summarize_level(4, results, wall_s=0.5)
    assert (level.requests, level.ok, level.error_count) == (4, 2, 2)
    assert level.errors == {"http 500": 1, "timeout": 1}
    assert level.ttft_s.p50 == pytest.approx(0.3) and level.ttft_s.count == 2
    assert level.output_tokens == 4 and level.total_tokens_per_s == pytest.approx(8.0)
    assert level.to_json()["errors"] == {"http 500": 1, "timeout": 1}


# ---- parser checks ---------------------------------------------------------------------------------------------

TOOL_CALL_OK = [(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "get_weather",
                                                                              "arguments": '{"city": "Paris"}'}}]}),
                 0.1), (chunk({}, "tool_calls"), 0.1), ("data: [DONE]", 0.1)]
JUDGE_CASES = [
    ("tool call ok", judge_tool_call, TOOL_CALL_OK, True, "get_weather"),
    ("tool call as text", judge_tool_call,
     [(chunk({"content": '<tool_call>{"name": "get_weather"}</tool_call>'}), 0.1), (chunk({}, "stop"), 0.1)],
     False, "--tool-call-parser"),
    ("wrong function", judge_tool_call,
     [(chunk({"tool_calls": [{"index": 0, "function": {"name": "get_time", "arguments": "{}"}}]}), 0.1),
      (chunk({}, "tool_calls"), 0.1)], False, "get_time"),
    ("arguments not JSON", judge_tool_call,
     [(chunk({"tool_calls": [{"index": 0, "function": {"name": "get_weather", "arguments": "{city: Paris"}}]}),
       0.1), (chunk({}, "tool_calls"), 0.1)], False, "not a JSON object"),
    ("reasoning ok", judge_reasoning, [(chunk({"reasoning_content": "hmm"}), 0.1), (chunk({"content": "4"}), 0.2),
                                       (chunk({}, "stop"), 0.2)], True, "reasoning"),
    ("thinking inside content", judge_reasoning,
     [(chunk({"content": "<think>hmm</think>4"}), 0.1), (chunk({}, "stop"), 0.2)], False, "--reasoning-parser"),
]


@pytest.mark.parametrize(("case", "judge", "lines", "passed", "says"), JUDGE_CASES, ids=[c[0] for c in JUDGE_CASES])
def test_parser_checks(case, judge, lines, passed, says):
    check = judge(feed(lines))
    assert check.passed is passed
    assert says in check.detail


def test_a_failed_request_fails_the_check_with_its_error():
    check = judge_tool_call(failed_request("http 400", "tools not supported", 400))
    assert not check.passed and "http 400" in check.detail


# ---- cost against the planner's bound --------------------------------------------------------------------------

def test_dollars_per_million_tokens():
    assert usd_per_million_tokens(55.04, 1000.0) == pytest.approx(55.04 / 3.6)
    assert usd_per_million_tokens(None, 1000.0) is None
    assert usd_per_million_tokens(55.04, 0.0) is None


def test_compare_cost_against_bound():
    bound = ThroughputBound(500.0, 2000.0, "memory bandwidth")
    c = compare_cost(8, 55.04, 500.0, bound)
    assert c.fraction_of_bound == pytest.approx(0.25)
    assert c.measured_usd_per_million == pytest.approx(4 * c.bound_usd_per_million)
    assert c.note == ""
    above = compare_cost(8, 55.04, 2500.0, bound)
    assert above.fraction_of_bound > 1 and "exceeds" in above.note
    unpriced = compare_cost(8, None, 100.0, bound)
    assert unpriced.measured_usd_per_million is None and "no price" in unpriced.note


def test_bound_follows_the_planners_throughput_and_caps_at_configured_concurrency():
    plan = plan_stack(load_stack(STACKS_DIR, "h100-pilot"), datetime(2026, 6, 1, tzinfo=UTC))
    configured = plan.config.concurrency
    assert bound_at_concurrency(plan.fit, configured) == plan.throughput
    assert bound_at_concurrency(plan.fit, configured * 4) == plan.throughput  # requests beyond max-num-seqs queue
    one = bound_at_concurrency(plan.fit, 1)
    assert one.aggregate_tokens_per_s == pytest.approx(plan.throughput.single_stream_tokens_per_s)
    series = [bound_at_concurrency(plan.fit, c).aggregate_tokens_per_s for c in range(1, configured + 1)]
    assert series == sorted(series)


# ---- input and record ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "levels"), [("1,4,16", (1, 4, 16)), ("8", (8,)), (" 2 , 3", (2, 3))])
def test_concurrency_levels(text, levels):
    assert parse_concurrency_levels(text) == levels


@pytest.mark.parametrize("text", ["0", "1,x", "", "1,,4", "-1", "2000", "1.5"])
def test_bad_concurrency_levels_name_the_flag(text):
    with pytest.raises(PlanInputError, match="--concurrency"):
        parse_concurrency_levels(text)


def test_prompts_files():
    assert parse_prompts("hello\n\n world \n", "p.txt") == (({"role": "user", "content": "hello"},),
                                                           ({"role": "user", "content": "world"},))
    jsonl = '"a"\n{"prompt": "b"}\n{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "c"}]}'
    parsed = parse_prompts(jsonl, "p.jsonl")
    assert [c[-1]["content"] for c in parsed] == ["a", "b", "c"] and len(parsed[2]) == 2
    for bad, name in (("", "p.txt"), ('{"x": 1}', "p.jsonl"), ("{oops", "p.jsonl")):
        with pytest.raises(PlanInputError, match="--prompts"):
            parse_prompts(bad, name)


def test_record_name_and_redaction():
    assert record_filename(datetime(2026, 11, 29, 11, 7, 5, tzinfo=UTC), "h100 pilot/../x") == \
        "20261129T110705Z-h100-pilot-..-x.json"
    assert redact('{"error": "Bearer sk-secret-1"}', ["sk-secret-1", None]) == '{"error": "Bearer [redacted]"}'
    assert math.isclose(usd_per_million_tokens(3.6, 1.0), 1000.0)  # 3,600 tokens for $3.60
