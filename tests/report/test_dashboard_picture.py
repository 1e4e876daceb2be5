"""python -m scripts.report.dashboard: the picture of a stack's planned CloudWatch dashboard. The real CLI writes a
real PNG of the promised size that is not blank; what it draws holds every widget title, metric, annotation and
alarm of the plan; a stack without a dashboard (unknown, Spark, unresolved JumpStart) is one line, exit 2, and then
nothing is written."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from scripts.report import dashboard

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PICTURED = ("h100-pilot", "eks-vllm")
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
UNRESOLVED_JUMPSTART = """config:
  aws:region: us-east-1
  nemotron-deploy:target: jumpstart
  nemotron-deploy:owner: platform-team
  nemotron-deploy:ttlHours: 8
  nemotron-deploy:instanceType: ml.p5en.48xlarge
  nemotron-deploy:nodes: 1
  nemotron-deploy:precision: nvfp4
  nemotron-deploy:contextTokens: 131072
  nemotron-deploy:concurrency: 16
  nemotron-deploy:jumpstart:
    modelName: nemotron-3-ultra
    modelVersion: "*"
    acceptEula: false
"""


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.report.dashboard", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    out = tmp_path_factory.mktemp("dashboards")
    done = cli(*PICTURED, "--out-dir", out, "--now", NOW.isoformat())
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == len(PICTURED)
    return out


@pytest.mark.parametrize("stack", PICTURED)
def test_the_cli_writes_a_real_png_of_the_promised_size_that_is_not_blank(pictures, stack):
    path = pictures / f"dashboard-{stack}.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = imread(path)
    assert pixels.shape[:2] == (dashboard.HEIGHT_PX, dashboard.WIDTH_PX)
    rgb = pixels[..., :3]
    inked = (rgb < 0.95).any(axis=-1).mean()
    assert 0.02 < inked < 0.5, inked  # text and frames, on white
    packed = (rgb * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    assert len(np.unique(packed)) > 50  # antialiased text and the legend colours


@pytest.mark.parametrize("stack", PICTURED)
def test_the_drawing_holds_every_widget_metric_annotation_and_alarm(tmp_path, stack):
    obs = dashboard.load_observability(dashboard.STACKS_DIR, stack, NOW)
    drawn = dashboard.draw_dashboard(obs, tmp_path / "d.png")
    text = "\n".join(drawn)
    assert drawn[0] == dashboard.title_line(obs)
    assert "no data: drawn offline, not a CloudWatch screenshot" in drawn[0] and obs.dashboard_name in drawn[0]
    for widget in obs.body()["widgets"]:
        props = widget["properties"]
        assert props["title"] in drawn
        for row in props["metrics"]:
            named = row[0].get("expression") if isinstance(row[0], dict) else row[1]
            assert named in text
        for line in props.get("annotations", {}).get("horizontal", []):
            assert f"{line['label']} {line['value']:g}" in text
    for alarm in obs.alarms:
        assert alarm.name in drawn and alarm.derivation in drawn and alarm.description in drawn
        assert dashboard.alarm_condition(alarm) in drawn
    assert any(line.startswith("horizontal line: budget limit ") for line in drawn)


def test_a_metric_row_reads_as_namespace_name_dimensions_and_stat():
    row = ["ContainerInsights", "node_gpu_utilization", "ClusterName", "c", {"stat": "Average", "yAxis": "right"}]
    assert dashboard.metric_line(row) == ("ContainerInsights  node_gpu_utilization  ClusterName=c  (Average, right "
                                          "axis)", True)
    hidden = ["ns", "m", {"stat": "Sum", "id": "tokens", "visible": False}]
    assert dashboard.metric_line(hidden) == ("ns  m  (Sum, id tokens, hidden)", False)
    assert dashboard.metric_line([{"expression": "tokens / 60", "label": "tokens/s", "id": "tps"}]) == (
        "tps = tokens / 60  (tokens/s)", True)
    long = "x" * 60
    assert dashboard.metric_line(["ns", "m", "EndpointName", long, {"stat": "p90"}])[0] == (
        f"ns  m  EndpointName={'x' * 12}…{'x' * 12}  (p90)")


def assert_one_line_exit_2(done: subprocess.CompletedProcess, *says: str) -> None:
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("python -m scripts.report.dashboard: ")
    for word in says:
        assert word in done.stderr, done.stderr


def test_an_unknown_stack_is_one_line_naming_it_and_the_stacks_and_nothing_is_written(tmp_path):
    done = cli("h100-pilot", "h100-pilott", "--out-dir", tmp_path)
    assert_one_line_exit_2(done, "'h100-pilott'", "h100-pilot, h200-pilot")
    assert list(tmp_path.iterdir()) == []  # the good stack is not drawn either


def test_spark_is_not_a_stack_with_a_dashboard(tmp_path):
    assert_one_line_exit_2(cli("spark", "--out-dir", tmp_path), "'spark'", "eks-nim")
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.spark.yaml").write_text("config:\n  aws:region: us-east-1\n  nemotron-deploy:target: spark\n"
                                              "  nemotron-deploy:owner: platform-team\n")
    assert_one_line_exit_2(cli("spark", "--stacks-dir", stacks, "--out-dir", tmp_path), "target", "'spark'",
                           "ec2, jumpstart or eks")
    assert [p.name for p in tmp_path.iterdir()] == ["stacks"]


def test_an_unresolved_jumpstart_stack_has_no_dashboard_yet(tmp_path, capsys):
    (tmp_path / "Pulumi.js.yaml").write_text(UNRESOLVED_JUMPSTART)
    code = dashboard.main(["js", "--stacks-dir", str(tmp_path), "--out", str(tmp_path / "js.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'js'" in err and "python -m scripts.jumpstart resolve js" in err
    assert not (tmp_path / "js.png").exists()


@pytest.mark.parametrize("argv, says", [
    (["h100-pilot"], "one of the arguments --out-dir --out is required"),
    (["h100-pilot", "eks-vllm", "--out", "x.png"], "--out: names one file; 2 stacks given"),
    (["h100-pilot", "--out", "x.jpg"], "--out: 'x.jpg' is not valid; allowed: a path ending in .png"),
    (["h100-pilot", "--out-dir", "nowhere/at/all"], "--out-dir: 'nowhere/at/all' is not a directory"),
    (["h100-pilot", "--out", "nowhere/x.png"], "--out: 'nowhere' is not a directory"),
    (["h100-pilot", "--out-dir", ".", "--now", "2026-12-01T12:00"], "--now: '2026-12-01T12:00' is not valid"),
])
def test_bad_flags_are_one_line_and_exit_2(capsys, argv, says):
    try:
        code = dashboard.main(argv)
    except SystemExit as exit_:  # argparse's own complaints
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and says in err, err
