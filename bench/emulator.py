"""What the benchmarks read about DynamoDB Local itself (shared by bench/notify.py and
bench/statements.py)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds() -> float:
    """CPU seconds used so far by DynamoDB Local (the child process ``dynamodb_local.running``
    started in this process), from /proc; 0.0 where there is no /proc. On a 2-core machine the
    emulator shares the CPUs with the code measured, so its CPU per operation is part of what a
    ratio against a storage-free limit pays for."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and b"DynamoDBLocal" in (stat.parent / "cmdline").read_bytes():
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total
