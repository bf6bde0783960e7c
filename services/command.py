"""How a person calls ``wxkf`` from their shell, for the commands the tools print as hints.

``make install`` puts ``wxkf`` in ``.venv/bin``, which is on nobody's PATH until they activate
the virtualenv; a hint that says ``wxkf`` would then fail with "command not found".
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def wxkf_command() -> str:
    """``wxkf`` when the shell finds this very program under that name; else its path
    (relative to the current directory when it is below it: ``.venv/bin/wxkf``)."""
    ours = Path(sys.executable).with_name("wxkf")
    found = shutil.which("wxkf")
    if found is not None and Path(found).resolve() == ours.resolve():
        return "wxkf"
    try:
        return os.path.relpath(ours) if ours.is_relative_to(Path.cwd()) else str(ours)
    except ValueError:  # another drive (Windows)
        return str(ours)
