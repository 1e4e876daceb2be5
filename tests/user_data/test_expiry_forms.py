"""One definition of an expiry (planner/expiry.py), read alike by the reaper, the stack schema and the boot script.

The shell side runs for real: the rendered script's own EXPIRY_FORM line and expiry_s function in bash, with GNU
date; then the whole dead-man for the time-relative cases (tests/user_data/test_boot_script.py).
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime

import pytest
import yaml
from pydantic import ValidationError

from planner.expiry import EXPIRY_FORM, parse_expiry
from planner.reaper import EXPIRED, FOREIGN, LIVE, MALFORMED, FoundResource, assess
from planner.stack_config import StackConfig
from planner.tags import TAG_EXPIRES_AT, TAG_OWNER, TAG_STACK
from tests.user_data.bootlab import render_node

FORMS = [
    # value, the UTC instant it names (None: refused everywhere)
    ("2026-12-01T18:00:00Z", datetime(2026, 12, 1, 18, tzinfo=UTC)),
    ("2026-12-01T18:00Z", datetime(2026, 12, 1, 18, tzinfo=UTC)),  # no seconds
    ("2026-12-01T18:00:00.5Z", datetime(2026, 12, 1, 18, 0, 0, 500000, tzinfo=UTC)),
    ("2026-12-01T18:00:00.123456Z", datetime(2026, 12, 1, 18, 0, 0, 123456, tzinfo=UTC)),
    ("2026-12-01T18:00:00+00:00", datetime(2026, 12, 1, 18, tzinfo=UTC)),
    ("2026-12-01T19:30:00+01:30", datetime(2026, 12, 1, 18, tzinfo=UTC)),
    ("2026-12-01T10:00:00-08:00", datetime(2026, 12, 1, 18, tzinfo=UTC)),
    ("2026-12-01T18:00+02:00", datetime(2026, 12, 1, 16, tzinfo=UTC)),
    ("2026-12-01T18:00:00.75-05:30", datetime(2026, 12, 1, 23, 30, 0, 750000, tzinfo=UTC)),
    ("2026-12-31T23:59:59+23:59", datetime(2026, 12, 31, 0, 0, 59, tzinfo=UTC)),
    ("2028-02-29T12:00:00Z", datetime(2028, 2, 29, 12, tzinfo=UTC)),  # a leap day
    ("2026-02-29T12:00:00Z", None),  # impossible dates
    ("2026-02-30T10:00:00Z", None),
    ("2026-04-31T00:00:00Z", None),
    ("2026-13-01T00:00:00Z", None),
    ("2026-12-00T00:00:00Z", None),
    ("2026-12-01T24:00:00Z", None),  # impossible times
    ("2026-12-01T18:60:00Z", None),
    ("2026-12-31T23:59:60Z", None),  # no leap second
    ("2026-12-01T18:00:00", None),  # no zone
    ("2026-12-01T18:00:00+0200", None),
    ("2026-12-01T18:00:00+02", None),
    ("2026-12-01T18:00:00+24:00", None),
    ("2026-12-01T18:00:00.1234567Z", None),  # more than microseconds
    ("2026-12-01T18:00:00,5Z", None),
    ("2026-12-01 18:00:00Z", None),
    ("2026-12-01t18:00:00z", None),
    ("2026-12-01", None),
    ("18:00:00Z", None),
    ("1780000000", None),
    ("tomorrow", None),
    ("", None),
    (" 2026-12-01T18:00:00Z", None),
    ("2026-12-01T18:00:00Z\n", None),
    ("2026-12-01T18:00:00Z; shutdown -h now", None),
    ("\u0662\u0660\u0662\u0666-12-01T18:00:00Z", None),  # Arabic-Indic digits
]
IDS = [repr(value) for value, _ in FORMS]


@pytest.fixture(scope="module")
def shell_expiry(tmp_path_factory):
    """Run the rendered script's own EXPIRY_FORM and expiry_s over many values in one bash, with GNU date."""
    script = next(f["content"] for f in yaml.safe_load(render_node("h100-pilot"))["write_files"]
                  if f["path"] == "/usr/local/sbin/nemotron-node")
    lines = [line for line in script.splitlines() if line.startswith(("EXPIRY_FORM=", "expiry_s()"))]
    assert len(lines) == 2, lines
    program = "\n".join(lines + ['for value in "$@"; do expiry_s "$value" || echo refused; done'])

    def run(values: list[str]) -> list[int | None]:
        done = subprocess.run(["bash", "-c", program, "bash", *values], capture_output=True, text=True, check=True,
                              env={"PATH": "/usr/bin:/bin", "TZ": "Asia/Kolkata", "LANG": "C.UTF-8"})
        return [None if out == "refused" else int(out) for out in done.stdout.splitlines()]

    return run


def test_every_form_names_the_same_instant_in_python_and_in_the_boot_script(shell_expiry):
    shell = shell_expiry([value for value, _ in FORMS])
    assert len(shell) == len(FORMS)
    for (value, instant), seconds in zip(FORMS, shell, strict=True):
        assert parse_expiry(value) == instant, value
        assert seconds == (None if instant is None else int(instant.timestamp())), value


@pytest.mark.parametrize(("value", "instant"), FORMS, ids=IDS)
def test_the_reaper_and_the_stack_schema_accept_exactly_these_forms(value, instant):
    tags = {TAG_STACK: "alpha", TAG_OWNER: "team", TAG_EXPIRES_AT: value}
    before = assess(FoundResource("ec2:volume", "vol-1", "us-east-1", tags), datetime(2026, 6, 1, tzinfo=UTC))
    after = assess(FoundResource("ec2:volume", "vol-1", "us-east-1", tags), datetime(2029, 1, 1, tzinfo=UTC))
    config = {"target": "ec2", "owner": "team", "instanceType": "p5.48xlarge", "precision": "fp8", "expiresAt": value}
    if instant is None:
        refused = FOREIGN if not value.strip() else MALFORMED  # a blank tag is no toolkit tag at all
        assert before.verdict == after.verdict == refused
        with pytest.raises(ValidationError, match="expiresAt"):
            StackConfig.model_validate(config)
    else:
        assert (before.verdict, after.verdict, before.expires_at) == (LIVE, EXPIRED, instant)
        assert StackConfig.model_validate(config).expires_at == instant


def test_the_pattern_reads_the_same_in_python_and_posix_extended_regex():
    # Only literals, [...] classes, groups, ? and {n,m}: nothing Python and bash's =~ read differently (\d, (?:, ...)
    assert re.fullmatch(r"[-0-9A-Z:.+()\[\]|?{},\\]*", EXPIRY_FORM), EXPIRY_FORM
    assert "\\d" not in EXPIRY_FORM and "(?" not in EXPIRY_FORM
