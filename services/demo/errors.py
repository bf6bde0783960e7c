"""What stops the demo before or while it plays; each names what to do about it."""

from __future__ import annotations


class DemoError(Exception):
    """The demo cannot run or could not finish; the message is for the person running it."""


class PortBusy(DemoError):
    """A port the demo needs is taken by another process."""


class StepFailed(DemoError):
    """A step of the script did not have its expected outcome."""

    def __init__(self, step: str, problem: str) -> None:
        super().__init__(f"{step}: {problem}")
        self.step = step
        self.problem = problem
