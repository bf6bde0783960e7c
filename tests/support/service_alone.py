"""A service started on its own (``python -m services.<name>``) that is expected to stop at
once, before it binds a port: its exit code and what it printed."""

from __future__ import annotations

import subprocess
import sys


def start_alone(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m services.<service>`` with exactly ``env``; bounded, never checked."""
    return subprocess.run(  # noqa: S603 - this interpreter, a module of the project
        [sys.executable, "-m", f"services.{service}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
