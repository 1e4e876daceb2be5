import sys

from planner.cli import run_main
from scripts.report.cli import main

sys.exit(run_main(main))
