"""`python -m scripts.report RUN.json... --out report.html`: compare benchmark runs across stacks and targets.

Writes one self-contained HTML page and, beside it, the PNG charts it embeds: TTFT and inter-token latency
against concurrency, output tokens/s against concurrency with each stack's planner bound, and $ per 1M output tokens
against inter-token latency (the cost frontier), then a table per run and a provenance table. With --actual-cost it
asks Cost Explorer what each stack really cost (resources tagged nemotron-deploy:stack) over the days of its runs.

Why matplotlib, drawn to static PNGs (Agg backend) and inlined as data URIs: the page must open offline, from a
file or an attachment, with no JavaScript and no CDN, and look the same in any browser or mail client; the PNGs
beside it go into slides and tickets as they are. An interactive library (Plotly, Bokeh, Vega) needs JavaScript
in the page (megabytes inlined, or a CDN) for charts that are read, not explored.

Exit 0 when the page was written; 1 when Cost Explorer could not be asked; 2 on bad input (one line naming the
file or flag).
"""

from __future__ import annotations

import base64
import sys
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first

from planner.cli import OneLineParser, run_main  # noqa: E402
from planner.estimates import iso_utc  # noqa: E402
from planner.report import (  # noqa: E402
    ActualCost,
    ReportInputError,
    Run,
    cost_frontier,
    cost_window,
    parse_run,
    planned_max_usd,
    render_html,
    run_names,
    sum_cost_results,
)
from planner.tags import TAG_STACK  # noqa: E402

PROG = "python -m scripts.report"


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="*", type=Path, help="run records written by python -m scripts.bench")
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="the page (default report.html); "
                        "the charts go beside it as <name>-<chart>.png")
    parser.add_argument("--actual-cost", action="store_true",
                        help="add each stack's actual spend from Cost Explorer next to the planned maximum")
    parser.add_argument("--region", default="us-east-1", help="Cost Explorer's region (default us-east-1)")
    return parser


def load_runs(paths: list[Path]) -> list[Run]:
    if not paths:
        raise ReportInputError("records", "no run records given (e.g. bench-runs/*.json)")
    runs = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ReportInputError(str(path), f"cannot read: {err.strerror or err}") from None
        except UnicodeDecodeError:
            raise ReportInputError(str(path), "not JSON (not UTF-8 text)") from None
        runs.append(parse_run(text, str(path)))
    return sorted(runs, key=lambda r: (r.label, r.started_at))


# ---- charts ---------------------------------------------------------------------------------------------------

def _ms(values):
    return [None if v is None else v * 1000 for v in values]


def _concurrency_ticks(ax, runs: list[Run]) -> None:
    """Ticks at the measured concurrencies, written as numbers (not 10^0, 10^1)."""
    levels = sorted({lv.concurrency for run in runs for lv in run.levels})
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.minorticks_off()


def draw_latency(runs: list[Run], names: list[str]):
    fig, (ttft, itl) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for run, name in zip(runs, names, strict=True):
        x = [lv.concurrency for lv in run.levels]
        line, = ttft.plot(x, _ms(lv.ttft_p50_s for lv in run.levels), marker="o", label=f"{name} p50")
        ttft.plot(x, _ms(lv.ttft_p99_s for lv in run.levels), marker="^", ls="--", color=line.get_color(),
                  label=f"{name} p99")
        itl.plot(x, _ms(lv.itl_p50_s for lv in run.levels), marker="o", color=line.get_color(), label=f"{name} p50")
        itl.plot(x, _ms(lv.itl_p99_s for lv in run.levels), marker="^", ls="--", color=line.get_color(),
                 label=f"{name} p99")
    for ax, title in ((ttft, "time to first token"), (itl, "inter-token latency")):
        ax.set(title=title, xlabel="concurrency", ylabel="ms", xscale="log")
        _concurrency_ticks(ax, runs)
        ax.grid(alpha=0.3)
    fig.legend(*ttft.get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    return fig


def draw_throughput(runs: list[Run], names: list[str]):
    fig, ax = plt.subplots(figsize=(11, 4.2), layout="constrained")
    for run, name in zip(runs, names, strict=True):
        x = [lv.concurrency for lv in run.levels]
        line, = ax.plot(x, [lv.tokens_per_s for lv in run.levels], marker="o", label=f"{name} measured")
        bound = [(lv.concurrency, lv.bound_tokens_per_s) for lv in run.levels if lv.bound_tokens_per_s is not None]
        if bound:
            ax.plot(*zip(*bound, strict=True), ls=":", marker="x", color=line.get_color(),
                    label=f"{name} planner bound")
    ax.set(title="output tokens/s (all requests of a level)", xlabel="concurrency", ylabel="tokens/s",
           xscale="log", yscale="log")
    _concurrency_ticks(ax, runs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def draw_frontier(runs: list[Run], names: list[str]):
    points = cost_frontier(runs)
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(11, 4.2), layout="constrained")
    for index, name in enumerate(names):  # in run order: each run keeps its colour from the other charts
        mine = [p for p in points if p.name == name]
        ax.scatter([p.itl_p50_s * 1000 for p in mine], [p.usd_per_million for p in mine], label=name,
                   color=f"C{index}")
        for p in mine:
            ax.annotate(f"c={p.concurrency}", (p.itl_p50_s * 1000, p.usd_per_million), fontsize="x-small",
                        textcoords="offset points", xytext=(4, 4))
    best = [p for p in points if p.on_frontier]
    ax.plot([p.itl_p50_s * 1000 for p in best], [p.usd_per_million for p in best], color="black", lw=1,
            marker="o", markersize=12, markerfacecolor="none", drawstyle="steps-post", label="frontier")
    ax.set(title="$ per 1M output tokens against inter-token latency p50", xlabel="inter-token latency p50 (ms)",
           ylabel="$ per 1M output tokens", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def write_charts(runs: list[Run], out: Path) -> dict[str, str]:
    """Draw the charts, write each as <out stem>-<name>.png, return name -> PNG data URI."""
    names = run_names(runs)
    figures = {"latency": draw_latency(runs, names), "throughput": draw_throughput(runs, names),
               "frontier": draw_frontier(runs, names)}
    uris = {}
    for name, fig in figures.items():
        if fig is None:
            continue
        path = out.with_name(f"{out.stem}-{name}.png")
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)
        uris[name] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return uris


# ---- actual spend ---------------------------------------------------------------------------------------------

def actual_costs(runs: list[Run], ce_client) -> list[ActualCost]:
    """Each priced stack's UnblendedCost over the days of its runs (Cost Explorer, filtered by the stack tag)."""
    out = []
    for stack in sorted({r.stack for r in runs if r.stack}):
        mine = [r for r in runs if r.stack == stack]
        start, end = cost_window(mine)
        pages, token = [], None
        while True:
            request = {"TimePeriod": {"Start": start, "End": end}, "Granularity": "DAILY",
                       "Metrics": ["UnblendedCost"],
                       "Filter": {"Tags": {"Key": TAG_STACK, "Values": [stack], "MatchOptions": ["EQUALS"]}}}
            if token:
                request["NextPageToken"] = token
            page = ce_client.get_cost_and_usage(**request)
            pages.append(page)
            token = page.get("NextPageToken")
            if not token:
                break
        usd_h = mine[-1].plan.get("usd_per_hour")
        note = "" if usd_h is not None else "the record has no planned $/hour"
        out.append(ActualCost(stack, start, end, sum_cost_results(pages), planned_max_usd(usd_h, start, end), note))
    return out


def cost_explorer_client(region: str):
    import boto3
    return boto3.client("ce", region_name=region)


def main(argv: list[str] | None = None, ce_client=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = load_runs(args.records)
    except ReportInputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    if not args.out.parent.is_dir():
        print(f"{PROG}: --out: {args.out.parent} is not a directory", file=sys.stderr)
        return 2
    actual = []
    if args.actual_cost:
        from scripts.aws import CALL_FAILURES, describe_error
        try:
            actual = actual_costs(runs, ce_client or cost_explorer_client(args.region))
        except CALL_FAILURES as err:
            print(f"{PROG}: --actual-cost: Cost Explorer: {describe_error(err)}", file=sys.stderr)
            return 1
    try:
        charts = write_charts(runs, args.out)
        args.out.write_text(render_html(runs, charts, actual, iso_utc(datetime.now(UTC))), encoding="utf-8")
    except OSError as err:
        print(f"{PROG}: --out: cannot write {err.filename or args.out}: {err.strerror}", file=sys.stderr)
        return 2
    print(f"report: {args.out} ({len(runs)} runs; charts {', '.join(sorted(charts))} beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
