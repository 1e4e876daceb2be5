"""The evaluation report's pure side: run records (planner/benchmark.py) in, the figures to compare out.

Reads `python -m scripts.bench` records, and computes per run the series against concurrency (TTFT p50/p99,
inter-token latency p50/p99, total output tokens/s, the planner's throughput bound), the cost frontier ($ per 1M
output tokens against inter-token latency, the runs that no other run beats on both), the provenance rows and the
HTML page. scripts/report/ draws the charts, asks Cost Explorer for actual spend and writes the files.

The page is static HTML with the charts inlined as PNG data URIs: it opens offline, from a file, with no
JavaScript and no CDN, and it can be mailed or attached to a ticket as one file.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from planner.benchmark import RECORD_KIND

# Provenance fields a record may carry in its plan summary (newer records) or endpoint; absent ones show as "-".
OPTIONAL_PLAN_FIELDS = ("target", "precision", "layout", "engine", "engine_version", "image")


class ReportInputError(ValueError):
    """A file that cannot be reported on: names the file and what is wrong, in one line."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass(frozen=True)
class Level:
    """One concurrency level of one run, as the report plots it (seconds, tokens/s, dollars)."""

    concurrency: int
    ok: int
    requests: int
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    itl_p50_s: float | None
    itl_p99_s: float | None
    tokens_per_s: float
    usd_per_million: float | None
    bound_tokens_per_s: float | None
    fraction_of_bound: float | None


@dataclass(frozen=True)
class Run:
    """One run record: where it came from, what it measured against which plan."""

    source: str
    label: str  # the stack, else the endpoint
    started_at: str
    record: dict
    levels: tuple[Level, ...]

    @property
    def plan(self) -> dict:
        return self.record.get("plan") or {}

    @property
    def stack(self) -> str | None:
        return self.plan.get("stack") or (self.record.get("settings") or {}).get("stack")


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_run(text: str, source: str) -> Run:
    """A run record from its JSON text; ReportInputError naming `source` when it is not one."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ReportInputError(source, f"not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict) or data.get("kind") != RECORD_KIND:
        raise ReportInputError(source, f"not a run record (no \"kind\": \"{RECORD_KIND}\"; write one with "
                                       "python -m scripts.bench)")
    raw_levels = data.get("levels")
    if not isinstance(raw_levels, list) or not raw_levels:
        raise ReportInputError(source, "a run record with no levels")
    costs = {c.get("concurrency"): c for c in data.get("cost") or () if isinstance(c, dict)}
    levels = []
    try:
        for lv in raw_levels:
            cost = costs.get(lv["concurrency"], {})
            levels.append(Level(
                concurrency=int(lv["concurrency"]), ok=int(lv["ok"]), requests=int(lv["requests"]),
                ttft_p50_s=_number(lv["ttft_s"]["p50"]), ttft_p99_s=_number(lv["ttft_s"]["p99"]),
                itl_p50_s=_number(lv["inter_token_latency_s"]["p50"]),
                itl_p99_s=_number(lv["inter_token_latency_s"]["p99"]),
                tokens_per_s=float(lv["total_output_tokens_per_s"]),
                usd_per_million=_number(cost.get("measured_usd_per_million")),
                bound_tokens_per_s=_number(cost.get("bound_tokens_per_s")),
                fraction_of_bound=_number(cost.get("fraction_of_bound"))))
    except (KeyError, TypeError, ValueError) as err:
        raise ReportInputError(source, f"a run record with a malformed level ({type(err).__name__}: {err})") from None
    endpoint = data.get("endpoint") or {}
    label = ((data.get("plan") or {}).get("stack") or endpoint.get("url") or endpoint.get("endpoint")
             or "endpoint")
    return Run(source, str(label), str(data.get("started_at") or "?"), data,
               tuple(sorted(levels, key=lambda lv: lv.concurrency)))


def run_names(runs: Sequence[Run]) -> list[str]:
    """A distinct name per run: the label, with the start time when two runs share it."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    return [run.label if counts[run.label] == 1 else f"{run.label} {run.started_at}" for run in runs]


# ---- the cost frontier ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrontierPoint:
    name: str
    concurrency: int
    itl_p50_s: float
    usd_per_million: float
    on_frontier: bool


def cost_frontier(runs: Sequence[Run]) -> list[FrontierPoint]:
    """Every priced level as ($ per 1M output tokens, inter-token latency p50); a point is on the frontier when
    no other point is at least as good on both and better on one (cheaper and no slower, or faster and no dearer).
    Sorted by latency."""
    points = [(name, lv) for run, name in zip(runs, run_names(runs), strict=True) for lv in run.levels
              if lv.usd_per_million is not None and lv.itl_p50_s is not None]
    out = []
    for name, lv in points:
        dominated = any(o.itl_p50_s <= lv.itl_p50_s and o.usd_per_million <= lv.usd_per_million
                        and (o.itl_p50_s < lv.itl_p50_s or o.usd_per_million < lv.usd_per_million)
                        for _, o in points)
        out.append(FrontierPoint(name, lv.concurrency, lv.itl_p50_s, lv.usd_per_million, not dominated))
    return sorted(out, key=lambda p: (p.itl_p50_s, p.usd_per_million))


# ---- provenance -----------------------------------------------------------------------------------------------

PROVENANCE_HEADERS = ("run", "file", "stack", "target", "instance type", "nodes", "precision", "layout", "engine",
                      "engine version", "image", "model", "date", "$/hour", "$ per 1M at bound")


def _text(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, dict):
        return str(value.get("description") or ", ".join(f"{k}={v}" for k, v in value.items()))
    return str(value)


def provenance_rows(runs: Sequence[Run]) -> list[tuple[str, ...]]:
    """One row per run, in PROVENANCE_HEADERS order; fields the record does not have are "-"."""
    rows = []
    for run, name in zip(runs, run_names(runs), strict=True):
        plan, endpoint = run.plan, run.record.get("endpoint") or {}
        target = plan.get("target") or {"sagemaker": "sagemaker endpoint", "openai": "OpenAI-compatible URL"}.get(
            endpoint.get("kind"), endpoint.get("kind"))
        usd_h, at_bound = _number(plan.get("usd_per_hour")), _number(plan.get("usd_per_million_output_tokens_at_bound"))
        rows.append((name, run.source, _text(run.stack), _text(target), _text(plan.get("instance_type")),
                     _text(plan.get("nodes")), _text(plan.get("precision")), _text(plan.get("layout")),
                     _text(plan.get("engine") or endpoint.get("engine")),
                     _text(plan.get("engine_version") or endpoint.get("engine_version")),
                     _text(plan.get("image") or endpoint.get("image")), _text(run.record.get("model")),
                     run.started_at, money(usd_h), money(at_bound)))
    return rows


# ---- actual spend ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ActualCost:
    """What Cost Explorer says a stack cost over the days of its runs, next to the plan's maximum for them."""

    stack: str
    start: str  # YYYY-MM-DD, inclusive
    end: str  # YYYY-MM-DD, exclusive
    usd: float | None
    planned_max_usd: float | None
    note: str = ""


def cost_window(runs: Iterable[Run]) -> tuple[str, str]:
    """Cost Explorer's day range covering the runs: first start date, inclusive, to the day after the last."""
    from datetime import date, timedelta
    days = [date.fromisoformat(str(r.record.get(k) or r.started_at)[:10]) for r in runs
            for k in ("started_at", "finished_at")]
    return min(days).isoformat(), (max(days) + timedelta(days=1)).isoformat()


def planned_max_usd(usd_per_hour: float | None, start: str, end: str) -> float | None:
    """The most the stack may cost over [start, end): its planned $/hour for every hour of those days."""
    from datetime import date
    if usd_per_hour is None:
        return None
    return usd_per_hour * 24 * (date.fromisoformat(end) - date.fromisoformat(start)).days


def sum_cost_results(response_pages: Iterable[dict], metric: str = "UnblendedCost") -> float:
    """The total of `metric` over get_cost_and_usage's ResultsByTime (one or more pages)."""
    return sum(float(period.get("Total", {}).get(metric, {}).get("Amount", 0) or 0)
               for page in response_pages for period in page.get("ResultsByTime", ()))


# ---- HTML -----------------------------------------------------------------------------------------------------

def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


LEVEL_HEADERS = ("concurrency", "ok/sent", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms",
                 "output tok/s", "$ per 1M output tokens", "planner bound tok/s", "% of bound")

CHARTS = (("latency", "Time to first token and inter-token latency against concurrency"),
          ("throughput", "Output tokens/s against concurrency, each run against the planner's throughput bound"),
          ("frontier", "Cost frontier: $ per 1M output tokens against inter-token latency p50"))

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1150px}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td.t,th.t{text-align:left}img{max-width:100%;border:1px solid #eee}.note{color:#666;font-size:0.9em}"""


def _table(table_id: str, headers: Sequence[str], rows: Iterable[Sequence[str]], text_columns: int = 1) -> str:
    def cell(tag: str, i: int, value: str) -> str:
        cls = ' class="t"' if i < text_columns else ""
        return f"<{tag}{cls}>{html.escape(value)}</{tag}>"
    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<table id="{html.escape(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def level_rows(run: Run) -> list[tuple[str, ...]]:
    return [(str(lv.concurrency), f"{lv.ok}/{lv.requests}", ms(lv.ttft_p50_s), ms(lv.ttft_p99_s), ms(lv.itl_p50_s),
             ms(lv.itl_p99_s), f"{lv.tokens_per_s:.2f}", money(lv.usd_per_million),
             "-" if lv.bound_tokens_per_s is None else f"{lv.bound_tokens_per_s:.2f}", share(lv.fraction_of_bound))
            for lv in run.levels]


def render_html(runs: Sequence[Run], charts: dict[str, str], actual: Sequence[ActualCost] = (),
                generated_at: str = "") -> str:
    """The report page. `charts` maps a CHARTS name to a PNG data URI (charts without one are left out)."""
    names = run_names(runs)
    generated = f", generated {html.escape(generated_at)}" if generated_at else ""
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             "<title>Nemotron deployment evaluation report</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>Evaluation report</h1>",
             f'<p class="note">{len(runs)} run record(s){generated}'
             ". Latencies in milliseconds; throughput in output tokens per second over each level's wall time; "
             "the planner's bound is the decode upper bound of the stack's plan at that concurrency.</p>"]
    for name, title in CHARTS:
        if name in charts:
            parts.append(f'<h2>{html.escape(title)}</h2><img id="chart-{name}" alt="{html.escape(title)}" '
                         f'src="{charts[name]}">')
    parts.append("<h2>Runs</h2>")
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.append(_table(f"levels-{i}", LEVEL_HEADERS, level_rows(run)))
    frontier = cost_frontier(runs)
    if frontier:
        parts.append("<h2>Cost frontier</h2><p class=\"note\">Priced levels, fastest first; "
                     "&#9733; = no other level is both cheaper and faster.</p>")
        parts.append(_table("frontier", ("run", "concurrency", "ITL p50 ms", "$ per 1M output tokens", "frontier"),
                            [(p.name, str(p.concurrency), ms(p.itl_p50_s), money(p.usd_per_million),
                              "\u2605" if p.on_frontier else "") for p in frontier]))
    if actual:
        parts.append("<h2>Actual spend (Cost Explorer)</h2><p class=\"note\">UnblendedCost of resources tagged "
                     "nemotron-deploy:stack over the days of the runs, next to the plan's $/hour for every hour "
                     "of those days.</p>")
        parts.append(_table("actual-cost", ("stack", "from", "to (exclusive)", "actual", "planned maximum", "note"),
                            [(a.stack, a.start, a.end, money(a.usd), money(a.planned_max_usd), a.note)
                             for a in actual], text_columns=3))
    parts.append("<h2>Provenance</h2>")
    parts.append(_table("provenance", PROVENANCE_HEADERS, provenance_rows(runs), text_columns=13))
    parts.append("</body></html>\n")
    return "\n".join(parts)
