"""`python -m scripts.check_references` (cli.py): does every external name in planner/references.py still exist, and
is a newer version out? web.py holds the HTTP client and its time budget, http_checks.py and aws_checks.py ask the
sources; the verdicts are planner/reference_checks.py's."""

from scripts.check_references.aws_checks import AWS_CHECKS, aws_clients_from_environment, check_aws
from scripts.check_references.cli import PROG, check_all, main, notes, print_table
from scripts.check_references.http_checks import HTTP_CHECKS
from scripts.check_references.web import Budget, BudgetSpent, Registry, Unreachable, Web

__all__ = ["AWS_CHECKS", "HTTP_CHECKS", "PROG", "Budget", "BudgetSpent", "Registry", "Unreachable", "Web",
           "aws_clients_from_environment", "check_all", "check_aws", "main", "notes", "print_table"]
