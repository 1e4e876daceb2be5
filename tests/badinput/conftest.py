"""The Spark tasks live under ansible-like/ (not an identifier): put it on the path, as fabfile.py does."""

import sys
from pathlib import Path

ANSIBLE_LIKE = Path(__file__).resolve().parents[2] / "ansible-like"
if str(ANSIBLE_LIKE) not in sys.path:
    sys.path.insert(0, str(ANSIBLE_LIKE))
