"""Checks on processes the tests start (POSIX /proc)."""
from __future__ import annotations

import time
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Running (zombies count as dead: a container's PID 1 may never reap them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until_gone(pids, timeout: float) -> bool:
    """True when none of `pids` runs any more, waiting up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
