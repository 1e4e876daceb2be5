"""What an expiry may look like: the one definition the reaper, the stack schema and the node's dead-man switch share.

An expiry (the `nemotron-deploy:expires-at` tag, the stack's `expiresAt`) is an ISO 8601 date and time of day with
a zone, in one of these forms:

    2026-12-01T18:00:00Z            what the toolkit writes (planner/estimates.py iso_utc)
    2026-12-01T18:00Z               no seconds
    2026-12-01T18:00:00.5Z          fractions of a second, 1 to 6 digits
    2026-12-01T19:00:00+01:00       an offset, +HH:MM or -HH:MM (+00:00 is UTC)

with an upper-case T and Z, a real calendar date (no 2026-02-30) and a real time (hours 00-23, no leap second).
Anything else (no zone, a space for the T, a date alone, a comma, a named zone) is refused everywhere alike: the
reaper reports the resource as malformed and leaves it, the schema stops the stack, the dead-man ignores the tag.

EXPIRY_FORM is written in the part of regex syntax that Python's `re` and POSIX extended regexes (bash's `=~`) read
the same way, so the boot script tests a tag with the very same pattern; there, GNU `date -d` then refuses an
impossible date exactly as `datetime.fromisoformat` does (tests/user_data checks both sides on one table).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

EXPIRY_FORM = (r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
               r"T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
               r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")
EXPIRY_EXAMPLE = "2026-12-01T18:00:00Z"
EXPIRY_FORMS = (f"an ISO 8601 time with a zone, e.g. {EXPIRY_EXAMPLE} (seconds optional; a fraction of a second "
                "and an offset such as +01:00 accepted)")

_EXPIRY = re.compile(EXPIRY_FORM)


def parse_expiry(value: object) -> datetime | None:
    """The UTC instant an expiry names; None when it is not one of the accepted forms or not a real date."""
    if not isinstance(value, str) or not _EXPIRY.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:  # a day the month does not have
        return None
