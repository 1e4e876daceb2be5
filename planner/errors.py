"""The one error type the planner raises for bad input, and its one-line rendering."""

from __future__ import annotations

from datetime import date, datetime


class PlanInputError(ValueError):
    """Bad input: names the field, the value given and what is allowed.

    Every front end (CLI, stack loader, Pulumi program) turns this into one line and exit status 2.
    """

    def __init__(self, field: str, value: object, allowed: str, source: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {shown(value)} is not valid; allowed: {allowed}")

    def with_source(self, source: str) -> PlanInputError:
        """The same error, located in a file (a stack config or model spec)."""
        return PlanInputError(self.field, self.value, self.allowed, source)


class Hidden:
    """A value never shown: a plaintext secret the user put where a secret reference belongs."""

    def __repr__(self) -> str:
        return "(a plaintext value, not shown)"


HIDDEN = Hidden()
MAX_SHOWN = 80


def shown(value: object) -> str:
    """A value as the user typed it, short: text quoted, times in ISO 8601, number flags as typed, long values cut."""
    typed = getattr(value, "typed", None)  # planner.cli.number / whole
    if isinstance(typed, str):
        text = typed
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    elif isinstance(value, float) and value != value:
        text = ".nan"
    elif isinstance(value, float) and value in (float("inf"), float("-inf")):
        text = ".inf" if value > 0 else "-.inf"
    else:
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def one_of(values) -> str:
    """Allowed values as a person reads them: `a, b, c`."""
    return ", ".join(str(v) for v in values)


class PlanInputNote(PlanInputError):
    """Bad input whose value is not shown (an unknown key, a plaintext secret): `FILE: field: text`."""

    def __init__(self, field: str, text: str, source: str | None = None):
        self.field, self.value, self.allowed, self.source, self.text = field, HIDDEN, text, source, text
        where = f"{source}: " if source else ""
        ValueError.__init__(self, f"{where}{field}: {text}")

    def with_source(self, source: str) -> PlanInputNote:
        return PlanInputNote(self.field, self.text, source)
