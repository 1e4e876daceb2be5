import sys

from planner.cli import run_main
from scripts.teardown.cli import main

sys.exit(run_main(main))
