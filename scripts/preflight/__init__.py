"""`python -m scripts.preflight STACK` (cli.py): can this AWS account take the stack, before `pulumi up`? The
checks: offline.py (plan, EULA, secrets), quotas.py (credentials, vCPU and endpoint quotas), capacity.py (offering,
capacity reservation, Deep Learning AMI); results.py holds what they return. AWS clients come from scripts/aws."""

from scripts.preflight.cli import main, preflight, print_table
from scripts.preflight.results import FAIL, PASS, SKIP, CheckResult

__all__ = ["FAIL", "PASS", "SKIP", "CheckResult", "main", "preflight", "print_table"]
