"""`python -m scripts.teardown`: end a deployment, and reap whatever a destroy left behind, by tag.

The package: cli.py (flags, report, main), gather.py with listings_ec2.py, listings_services.py and links.py (what
is there, and who holds what), delete.py and waits.py (acting on the plan), common.py (what they share). The
decisions are planner/reaper.py's (what goes, in what order) and planner/reaper_links.py's (who holds what); every
AWS client comes from scripts/aws.
"""

from scripts.teardown.cli import Request, build_parser, main, pulumi_destroy, validate
from scripts.teardown.common import Inventory, RetryPolicy
from scripts.teardown.delete import Outcome, act, with_retries
from scripts.teardown.gather import gather
from scripts.teardown.waits import wait_until_gone

__all__ = ["Inventory", "Outcome", "Request", "RetryPolicy", "act", "build_parser", "gather", "main",
           "pulumi_destroy", "validate", "wait_until_gone", "with_retries"]
