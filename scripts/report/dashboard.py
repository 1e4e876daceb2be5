"""`python -m scripts.report.dashboard STACK... --out-dir DIR`: each stack's CloudWatch dashboard as planned.

Why a drawing and not a screenshot: a real dashboard needs an AWS account and a running stack, and its graphs would
be one evaluation's data. What the plan decides, and what a reader should check before `pulumi up`, is the layout,
the metrics each widget reads and the alarms with their thresholds: `planner.observability.plan_observability`
computes all of that offline, from the same StackPlan `make plan` builds (`plan_stack(load_stack(...))`). This
draws exactly that body (widgets at their x, y, width, height on CloudWatch's 24-column grid, one line per metric
row, the horizontal annotations) and the alarms below it, and says on the picture that it holds no data.

Stacks without a dashboard: a JumpStart stack whose hub content is not resolved, a plan that does not fit (nothing
is deployed), and DGX Spark clusters, which are not Pulumi stacks (`fab spark.metrics` reads their nodes).

Exit 0 when every picture was written; 2 on bad input, one line per stack or flag, and then nothing is written.
"""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first
from matplotlib.patches import Rectangle  # noqa: E402

from planner.cli import OneLineParser, run_main  # noqa: E402
from planner.errors import PlanInputError  # noqa: E402
from planner.observability import ObservabilityPlan, plan_observability  # noqa: E402
from planner.plan import StackPlan, plan_stack  # noqa: E402
from planner.stack_config import load_stack  # noqa: E402

PROG = "python -m scripts.report.dashboard"
STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
GRID_COLUMNS = 24  # CloudWatch's dashboard grid is 24 units wide
WIDTH_PX, HEIGHT_PX, DPI = 1600, 1000, 100  # readable at README width
MARGIN_PX, GRID_TOP_PX, GRID_HEIGHT_PX, GAP_PX = 24, 70, 650, 6
LINE_PX = 19
MIN_FONT = 7.5  # points; a line longer than its room shrinks down to this, then is clipped
WRAP_AT = 1.2  # a metric line this much wider than its widget goes on two lines rather than shrink further
SHORT_VALUE = 26  # dimension values longer than this are cut in the middle
COMPARISON = {"LessThanThreshold": "<", "LessThanOrEqualToThreshold": "<=", "GreaterThanThreshold": ">",
              "GreaterThanOrEqualToThreshold": ">="}
INK, GREY, FRAME, BAND, ANNOTATION = "#16191f", "#687078", "#aab7b8", "#f2f3f3", "#b0413e"


def title_line(obs: ObservabilityPlan) -> str:
    return (f"{obs.dashboard_name} — the dashboard as planned by make plan (layout and metrics; no data: drawn "
            "offline, not a CloudWatch screenshot)")


def _short(value: str) -> str:
    """Dimension values (cluster, endpoint names) cut in the middle, so a metric line fits its widget."""
    if len(value) <= SHORT_VALUE:
        return value
    half = (SHORT_VALUE - 1) // 2
    return f"{value[:half]}…{value[-half:]}"


def metric_line(row: list) -> tuple[str, bool]:
    """One metric row as `namespace  name  key=value  (stat, options)`, or `id = expression  (label)`; and whether
    the row is drawn on the graph (hidden rows only feed an expression)."""
    if len(row) == 1 and "expression" in row[0]:
        spec = row[0]
        return f"{spec.get('id', '')} = {spec['expression']}  ({spec.get('label', 'expression')})", True
    options = row[-1] if isinstance(row[-1], dict) else {}
    names = row[:-1] if options else row
    namespace, name, dims = names[0], names[1], names[2:]
    shown = [f"{key}={_short(str(value))}" for key, value in zip(dims[::2], dims[1::2], strict=True)]
    extra = [options.get("stat", "")]
    extra += [f"id {options['id']}"] if "id" in options else []
    extra += [f"label {options['label']}"] if "label" in options else []
    extra += ["right axis"] if options.get("yAxis") == "right" else []
    visible = options.get("visible", True)
    extra += [] if visible else ["hidden"]
    return "  ".join([namespace, name, *shown, f"({', '.join(e for e in extra if e)})"]), visible


def split_line(line: str) -> list[str]:
    """A long metric line in two, at the field gap (two spaces) nearest its middle."""
    gaps = [i for i in range(len(line) - 1) if line[i:i + 2] == "  "]
    if not gaps:
        return [line]
    cut = min(gaps, key=lambda i: abs(i - len(line) / 2))
    return [line[:cut], line[cut:].strip()]


def annotation_lines(properties: dict) -> list[str]:
    return [f"horizontal line: {a.get('label', '')} {a['value']:g}"
            for a in properties.get("annotations", {}).get("horizontal", [])]


def alarm_condition(alarm) -> str:
    return f"{COMPARISON.get(alarm.comparison, alarm.comparison)} {alarm.threshold:g}"


def alarm_window(alarm) -> str:
    return f"{alarm.evaluation_periods} x {alarm.period_s} s; missing data: {alarm.treat_missing_data}"


class _Canvas:
    """One axes over the whole figure in pixels (y down); every string drawn is kept, for the tests."""

    def __init__(self):
        self.fig = plt.figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set(xlim=(0, WIDTH_PX), ylim=(HEIGHT_PX, 0))
        self.ax.axis("off")
        self.drawn: list[str] = []

    def text(self, x: float, y: float, text: str, clip=None, room: float | None = None, **style):
        """Draw `text` with its top left at (x, y); `room` (px) shrinks it to fit that width."""
        self.drawn.append(text)
        artist = self.ax.text(x, y, text, va="top", color=style.pop("color", INK), parse_math=False, **style)
        if clip is not None:
            artist.set_clip_path(clip)
        if room is not None:
            self.fit([artist], room)
        return artist

    def width(self, text: str, **style) -> float:
        """How many pixels `text` takes in this style (drawn, measured, removed)."""
        artist = self.ax.text(0, 0, text, parse_math=False, **style)
        width = artist.get_window_extent(self.fig.canvas.get_renderer()).width
        artist.remove()
        return width

    def fit(self, artists: list, room: float) -> None:
        """Shrink the artists alike (one font size per widget) until the widest fits `room` pixels."""
        renderer = self.fig.canvas.get_renderer()
        widest = max(a.get_window_extent(renderer).width for a in artists)
        if widest > room:
            for artist in artists:
                artist.set_fontsize(max(MIN_FONT, artist.get_fontsize() * room / widest))

    def box(self, x, y, w, h, **style) -> Rectangle:
        return self.ax.add_patch(Rectangle((x, y), w, h, **style))


def _draw_widget(canvas: _Canvas, widget: dict, unit_w: float, unit_h: float) -> None:
    props = widget["properties"]
    x = MARGIN_PX + widget["x"] * unit_w + GAP_PX / 2
    y = GRID_TOP_PX + widget["y"] * unit_h + GAP_PX / 2
    w, h = widget["width"] * unit_w - GAP_PX, widget["height"] * unit_h - GAP_PX
    frame = canvas.box(x, y, w, h, facecolor="white", edgecolor=FRAME, lw=1)
    canvas.box(x, y, w, 28, facecolor=BAND, edgecolor=FRAME, lw=1)
    canvas.text(x + 10, y + 6, props["title"], clip=frame, room=w - 20, fontsize=12, weight="bold")
    line_y, colour, lines = y + 38, 0, []
    for row in props["metrics"]:
        line, visible = metric_line(row)
        if visible:  # a legend swatch, as CloudWatch colours each plotted line; hidden rows get none
            canvas.box(x + 10, line_y + 4, 11, 11, facecolor=f"C{colour}", edgecolor="none")
            colour += 1
        parts = [line] if canvas.width(line, fontsize=10.5) <= WRAP_AT * (w - 36) else split_line(line)
        for index, part in enumerate(parts):  # a continuation is indented
            lines.append(canvas.text(x + 28 + 16 * bool(index), line_y, part, clip=frame, fontsize=10.5,
                                     color=INK if visible else GREY))
            line_y += LINE_PX
    for line in annotation_lines(props):
        canvas.ax.plot([x + 8, x + 23], [line_y + 9, line_y + 9], color=ANNOTATION, lw=2)
        lines.append(canvas.text(x + 28, line_y, line, clip=frame, fontsize=10.5, color=ANNOTATION))
        line_y += LINE_PX
    if lines:
        canvas.fit(lines, w - 52)
    canvas.text(x + 10, y + h - 20, f"{props.get('view', 'timeSeries')}, period {props.get('period', '-')} s, "
                f"{props.get('region', '')}: no data drawn", clip=frame, fontsize=8.5, color=GREY, style="italic")


ALARM_COLUMNS = (("alarm", 0), ("threshold", 370), ("evaluated over", 470), ("threshold derived from the plan", 780))


def _draw_alarms(canvas: _Canvas, obs: ObservabilityPlan, top: float) -> float:
    """The alarms as a table under the grid: each alarm's row, then its description in grey; returns the next y."""
    lefts = [MARGIN_PX + offset for _, offset in ALARM_COLUMNS]
    rooms = [right - left - 10 for left, right in zip(lefts, [*lefts[1:], WIDTH_PX - MARGIN_PX], strict=True)]
    for (head, _), left in zip(ALARM_COLUMNS, lefts, strict=True):
        canvas.text(left, top, head, fontsize=10.5, weight="bold")
    canvas.ax.plot([MARGIN_PX, WIDTH_PX - MARGIN_PX], [top + 20, top + 20], color=FRAME, lw=1)
    y = top + 28
    for alarm in obs.alarms:
        cells = (alarm.name, alarm_condition(alarm), alarm_window(alarm), alarm.derivation)
        for cell, left, room in zip(cells, lefts, rooms, strict=True):
            canvas.text(left, y, cell, room=room, fontsize=10)
        canvas.text(MARGIN_PX + 16, y + LINE_PX, alarm.description, room=WIDTH_PX - 2 * MARGIN_PX - 16, fontsize=9,
                    color=GREY)
        y += 2 * LINE_PX + 4
    return y


def draw_dashboard(obs: ObservabilityPlan, out: Path) -> list[str]:
    """Draw the planned dashboard and its alarms into `out` (PNG, WIDTH_PX x HEIGHT_PX); return every string drawn."""
    canvas = _Canvas()
    canvas.text(MARGIN_PX, 14, title_line(obs), room=WIDTH_PX - 2 * MARGIN_PX, fontsize=12.5, weight="bold")
    emails = ", ".join(obs.alert_emails) or "none (the stack's alertEmails is empty)"
    canvas.text(MARGIN_PX, 40, f"{len(obs.widgets)} widgets on CloudWatch's {GRID_COLUMNS}-column grid, region "
                f"{obs.region}; alarm notifications to: {emails}", fontsize=10.5, color=GREY)
    rows = max(w["y"] + w["height"] for w in obs.widgets)
    unit_w, unit_h = (WIDTH_PX - 2 * MARGIN_PX) / GRID_COLUMNS, GRID_HEIGHT_PX / rows
    for widget in obs.widgets:
        _draw_widget(canvas, widget, unit_w, unit_h)
    y = _draw_alarms(canvas, obs, GRID_TOP_PX + GRID_HEIGHT_PX + 14)
    for note in obs.notes:
        for part in textwrap.wrap(f"note: {note}", 190):
            canvas.text(MARGIN_PX, y, part, fontsize=9.5, color=GREY)
            y += LINE_PX
    canvas.fig.savefig(out, format="png", dpi=DPI)
    plt.close(canvas.fig)
    return canvas.drawn


# ---- command line ---------------------------------------------------------------------------------------------

def why_no_dashboard(plan: StackPlan) -> str:
    """Why plan_observability refuses a stack, in words a person can act on."""
    if not plan.fit.fits:
        return f"the plan does not fit, so nothing is deployed (`python -m scripts.plan {plan.stack}` says why)"
    if plan.target == "jumpstart" and plan.jumpstart is None:
        return (f"the JumpStart hub content is not resolved; run `python -m scripts.jumpstart resolve {plan.stack}` "
                "first")
    return f"no {plan.target} plan to watch"


def load_observability(stacks_dir: Path, name: str, now: datetime) -> ObservabilityPlan:
    """The stack's dashboard as `make plan` decides it; PlanInputError (one line) when it has none."""
    plan = plan_stack(load_stack(stacks_dir, name), now)
    try:
        return plan_observability(plan, ec2=plan.ec2, eks=plan.eks, jumpstart=plan.jumpstart)
    except PlanInputError:
        raise PlanInputError("stack", name, f"a stack with a dashboard; it has none: {why_no_dashboard(plan)}",
                             plan.source) from None


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", nargs="+", help="stack names (stacks/Pulumi.<stack>.yaml)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out-dir", type=Path, metavar="DIR", help="write DIR/dashboard-<stack>.png for each stack")
    where.add_argument("--out", type=Path, metavar="FILE.png", help="write this FILE.png (one stack only)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, metavar="DIR", help="default stacks/")
    parser.add_argument("--now", help="plan as of this ISO 8601 UTC time (default: now), as scripts.plan does; "
                        "the spend widget's planned start follows it")
    return parser


def _bad_flags(args) -> str | None:
    """The one-line complaint about the output flags, or None."""
    if args.out is not None and len(args.stacks) > 1:
        return f"--out: names one file; {len(args.stacks)} stacks given; allowed: one stack, or --out-dir DIR"
    if args.out is not None and args.out.suffix.lower() != ".png":
        return f"--out: {str(args.out)!r} is not valid; allowed: a path ending in .png"
    folder = args.out_dir if args.out_dir is not None else args.out.parent
    if not folder.is_dir():
        flag = "--out-dir" if args.out_dir is not None else "--out"
        return f"{flag}: {str(folder)!r} is not a directory; allowed: an existing folder"
    return None


def parse_now(text: str | None) -> datetime | None:
    try:
        now = datetime.fromisoformat(text) if text else datetime.now(UTC)
    except ValueError:
        return None
    return now if now.tzinfo is not None else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    now = parse_now(args.now)
    problem = _bad_flags(args) or (None if now else f"--now: {args.now!r} is not valid; allowed: an ISO 8601 time "
                                                    "with a zone, e.g. 2026-12-01T18:00:00Z")
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    planned, status = [], 0
    for name in args.stacks:  # every stack planned before anything is written
        try:
            planned.append((name, load_observability(args.stacks_dir, name, now)))
        except PlanInputError as err:
            print(f"{PROG}: {err}", file=sys.stderr)
            status = 2
    if status:
        return status
    for name, obs in planned:
        out = args.out or args.out_dir / f"dashboard-{name}.png"
        try:
            draw_dashboard(obs, out)
        except OSError as err:
            print(f"{PROG}: {out}: cannot write: {err.strerror or err}", file=sys.stderr)
            return 2
        print(f"dashboard: {out} ({name}: {len(obs.widgets)} widgets, {len(obs.alarms)} alarms; drawn from the plan)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
