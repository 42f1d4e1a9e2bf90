"""Measure one size of a benchmark in a fresh process, so that its peak memory is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def measure(script: str, arg: str, flag: str = "--one") -> tuple[dict[str, Any], float]:
    """Run ``python SCRIPT FLAG ARG``; return the JSON figures it prints and its peak MiB."""
    proc = subprocess.Popen([sys.executable, script, flag, arg], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{script} {flag} {arg} failed")
    return json.loads(output), usage.ru_maxrss / 1024
