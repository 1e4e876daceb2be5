import sys

from planner.cli import run_main
from scripts.check_references.cli import main

sys.exit(run_main(main))
