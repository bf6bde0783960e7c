"""The extension example is not part of the installed distribution: make the repository root
importable for the tests of ``examples/`` (the entry point runs from the root, so it is)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
