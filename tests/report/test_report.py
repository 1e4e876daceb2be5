"""python -m scripts.report over recorded runs (tests/report/data: the real benchmark against the local fake server
of tests/bench/fake_openai.py): the page's figures are the records', the charts exist beside it and inline, Cost
Explorer's actual spend sits next to the planned maximum, bad input ends in one line with exit 2, and the page
opens in a real headless Chromium with no console errors."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from datetime import date, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from planner.report import PROVENANCE_HEADERS, cost_frontier, parse_run
from scripts import report
from tests.report.pagecheck import Tables, chromium, screenshot

DATA = Path(__file__).parent / "data"
RECORDS = sorted(DATA.glob("*.json"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys, argv, **kwargs):
    code = report.main([str(a) for a in argv], **kwargs)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert report.main([*map(str, RECORDS), "--out", str(out)]) == 0
    return out


def ms(value):
    return "-" if value is None else f"{value * 1000:.1f}"


def test_the_tables_carry_the_records_figures(page):
    tables = Tables(page.read_text()).tables
    records = {json.loads(p.read_text())["plan"]["stack"]: json.loads(p.read_text()) for p in RECORDS}
    assert len(records) == 3
    names = [row[0] for row in tables["provenance"][1:]]
    assert sorted(names) == sorted(records)
    for index, name in enumerate(names):
        record = records[name]
        costs = {c["concurrency"]: c for c in record["cost"]}
        rows = tables[f"levels-{index}"][1:]
        assert [int(r[0]) for r in rows] == [lv["concurrency"] for lv in record["levels"]]
        for row, lv in zip(rows, record["levels"], strict=True):
            c = costs[lv["concurrency"]]
            assert row == [str(lv["concurrency"]), f"{lv['ok']}/{lv['requests']}", ms(lv["ttft_s"]["p50"]),
                           ms(lv["ttft_s"]["p99"]), ms(lv["inter_token_latency_s"]["p50"]),
                           ms(lv["inter_token_latency_s"]["p99"]), f"{lv['total_output_tokens_per_s']:.2f}",
                           f"${c['measured_usd_per_million']:,.2f}", f"{c['bound_tokens_per_s']:.2f}",
                           f"{c['fraction_of_bound']:.1%}"]
    provenance = {row[0]: dict(zip(PROVENANCE_HEADERS, row, strict=True)) for row in tables["provenance"][1:]}
    for name, record in records.items():
        row = provenance[name]
        assert row["stack"] == name and row["instance type"] == record["plan"]["instance_type"]
        assert row["nodes"] == str(record["plan"]["nodes"]) and row["model"] == record["model"]
        assert row["date"] == record["started_at"] and row["$/hour"] == f"${record['plan']['usd_per_hour']:,.2f}"
        plan = record["plan"]  # the provenance the plan summary records
        assert (row["target"], row["engine"], row["precision"], row["layout"]) == (
            plan["target"], plan["engine"], plan["precision"], plan["layout"])
        assert (row["engine version"], row["image"]) == (plan["engine_version"], plan["image"])
        assert row["file"].endswith(f"{name}.json")


def test_the_frontier_is_the_levels_no_other_beats():
    runs = [parse_run(p.read_text(), str(p)) for p in RECORDS]
    points = cost_frontier(runs)
    assert len(points) == sum(len(r.levels) for r in runs)
    for p in points:
        beaten = any(o.itl_p50_s <= p.itl_p50_s and o.usd_per_million <= p.usd_per_million and o != p
                     and (o.itl_p50_s, o.usd_per_million) != (p.itl_p50_s, p.usd_per_million) for o in points)
        assert p.on_frontier is not beaten
    assert any(p.on_frontier for p in points)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def test_the_charts_are_written_beside_the_page_and_inlined(page):
    text = page.read_text()
    links = Tables(text).links
    assert links and all(link.startswith("data:image/png;base64,") for link in links)  # nothing fetched
    for name in ("latency", "throughput", "frontier"):
        beside = page.with_name(f"report-{name}.png").read_bytes()
        width, height = _png_size(beside)
        assert width >= 600 and height >= 300 and len(beside) > 10_000
        assert f'id="chart-{name}"' in text
        assert base64.b64encode(beside).decode() in text  # the inlined chart is the file beside the page


@pytest.mark.parametrize("content, says", [
    (None, "no run records given"),
    ("{not json", "not JSON"),
    ('{"kind": "something else"}', "not a run record"),
    ('{"kind": "nemotron-deploy.bench", "levels": []}', "no levels"),
    ('{"kind": "nemotron-deploy.bench", "levels": [{"concurrency": 1}]}', "malformed level"),
    (b"\xff\xfe\x00", "not UTF-8"),
    ("missing", "cannot read"),
])
def test_bad_input_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys, content, says):
    argv = ["--out", tmp_path / "r.html"]
    bad = tmp_path / "bad.json"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif content not in (None, "missing"):
        bad.write_text(content)
    if content is not None:
        argv = [RECORDS[0], bad, *argv]
    code, out, err = run(capsys, argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("python -m scripts.report: ") and says in err
    if content is not None:
        assert str(bad) in err
    assert not (tmp_path / "r.html").exists()


def test_an_unknown_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        report.main(["--colour", "x"])
    assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def _ce_page(amounts: list[str], token: str | None = None) -> dict:
    page = {"ResultsByTime": [{"TimePeriod": {"Start": f"2026-12-0{i + 1}", "End": f"2026-12-0{i + 2}"},
                               "Total": {"UnblendedCost": {"Amount": a, "Unit": "USD"}}, "Groups": [],
                               "Estimated": True} for i, a in enumerate(amounts)],
            "DimensionValueAttributes": [], "ResponseMetadata": {}}
    if token:
        page["NextPageToken"] = token
    return page


def test_actual_cost_asks_cost_explorer_by_stack_tag(tmp_path, capsys):
    records = [DATA / "h100-pilot.json"]
    record = json.loads(records[0].read_text())
    day = record["started_at"][:10]
    ce = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    end = (date.fromisoformat(record["finished_at"][:10]) + timedelta(days=1)).isoformat()
    expected = {"TimePeriod": {"Start": day, "End": end}, "Granularity": "DAILY", "Metrics": ["UnblendedCost"],
                "Filter": {"Tags": {"Key": "nemotron-deploy:stack", "Values": ["h100-pilot"],
                                    "MatchOptions": ["EQUALS"]}}}
    with Stubber(ce) as stub:
        stub.add_response("get_cost_and_usage", _ce_page(["12.5"], token="more"), expected)
        stub.add_response("get_cost_and_usage", _ce_page(["0.75"]), {**expected, "NextPageToken": "more"})
        code, out, err = run(capsys, [*records, "--out", tmp_path / "r.html", "--actual-cost"], ce_client=ce)
        stub.assert_no_pending_responses()
    assert code == 0, err
    rows = Tables((tmp_path / "r.html").read_text()).tables["actual-cost"]
    days = (date.fromisoformat(end) - date.fromisoformat(day)).days
    assert rows[1][:5] == ["h100-pilot", day, end, "$13.25", f"${record['plan']['usd_per_hour'] * 24 * days:,.2f}"]


def test_actual_cost_through_moto(tmp_path, capsys, monkeypatch):
    moto = pytest.importorskip("moto")
    from moto.ce.models import ce_backends
    from moto.core import DEFAULT_ACCOUNT_ID
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with moto.mock_aws():
        ce_backends[DEFAULT_ACCOUNT_ID]["global"].cost_usage_results_queue.append(_ce_page(["3.10", "4.15"]))
        code, out, err = run(capsys, [DATA / "b200-nvfp4.json", "--out", tmp_path / "r.html", "--actual-cost"])
    assert code == 0, err
    assert Tables((tmp_path / "r.html").read_text()).tables["actual-cost"][1][3] == "$7.25"


def test_cost_explorer_refusing_is_one_line_and_exit_1(tmp_path, capsys):
    ce = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ce) as stub:
        stub.add_client_error("get_cost_and_usage", "AccessDeniedException", "not allowed: ce:GetCostAndUsage")
        code, out, err = run(capsys, [RECORDS[0], "--out", tmp_path / "r.html", "--actual-cost"], ce_client=ce)
    assert code == 1 and err.count("\n") == 1 and "AccessDeniedException" in err


def _png_pixels_vary(data: bytes) -> bool:
    """True when the PNG is not all one colour (decoded with zlib; 8-bit RGB or RGBA, the filters undone
    only as far as needed: distinct raw scanline bytes after the filter byte already prove variety)."""
    width, _ = _png_size(data)
    chunks, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    return len(set(raw)) > 8


def test_the_page_opens_in_headless_chromium_without_console_errors(page, tmp_path):
    shot = tmp_path / "report.png"
    console = screenshot(page, shot)
    assert console == [], console
    data = shot.read_bytes()
    width, height = _png_size(data)
    assert (width, height) == (1200, 2000)
    assert len(data) > 50_000 and _png_pixels_vary(data)


def test_the_browser_check_sees_console_errors(tmp_path):
    # the control: a page whose script fails is caught, so an empty list above means a clean page
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); nosuch();</script></body></html>")
    console = screenshot(bad, tmp_path / "bad.png", size="300,200")
    assert any("boom" in line for line in console) and any("nosuch is not defined" in line for line in console)


@pytest.mark.parametrize("required", ["", "1"])
def test_without_chromium_the_browser_check_skips_or_where_required_fails(monkeypatch, required):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("NEMOTRON_REQUIRE_LAB", required)
    expected = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(expected, match="no chromium on PATH"):
        chromium()


def test_a_run_without_a_stack_is_charted_but_not_priced(tmp_path, capsys):
    record = json.loads(RECORDS[0].read_text())
    record.update(plan=None, cost=[])
    record["settings"]["stack"] = None
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(record))
    code, out, err = run(capsys, [bare, RECORDS[1], "--out", tmp_path / "r.html"])
    assert code == 0, err
    tables = Tables((tmp_path / "r.html").read_text()).tables
    url = record["endpoint"]["url"]
    provenance = {row[0]: row for row in tables["provenance"][1:]}
    assert provenance[url][2] == "-" and provenance[url][13] == "-"  # no stack, no $/hour
    assert {row[0] for row in tables["frontier"][1:]} == {json.loads(RECORDS[1].read_text())["plan"]["stack"]}


def test_an_out_directory_that_does_not_exist_is_exit_2(tmp_path, capsys):
    code, out, err = run(capsys, [RECORDS[0], "--out", tmp_path / "nowhere" / "r.html"])
    assert code == 2 and err.count("\n") == 1 and "--out" in err
