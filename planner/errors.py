"""The one error type the planner raises for bad input, and its one-line rendering."""

from __future__ import annotations


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
        super().__init__(f"{where}{field}: {value!r} is not valid; allowed: {allowed}")

    def with_source(self, source: str) -> PlanInputError:
        """The same error, located in a file (a stack config or model spec)."""
        return PlanInputError(self.field, self.value, self.allowed, source)


def one_of(values) -> str:
    """Allowed values as a person reads them: `a, b, c`."""
    return ", ".join(str(v) for v in values)
