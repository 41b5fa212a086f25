"""The command line as a user runs it: a fresh interpreter, from the repository root."""

from __future__ import annotations

import subprocess
import sys

from helpers.paths import ROOT

CLI = [sys.executable, "-m", "circuitspec.cli"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``circuitspec ARGS`` in a subprocess started in the repository root, output captured."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
