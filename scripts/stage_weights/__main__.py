import sys

from planner.cli import run_main
from scripts.stage_weights.cli import main

sys.exit(run_main(main))
