import sys

from planner.cli import run_main
from scripts.preflight.cli import main

sys.exit(run_main(main))
