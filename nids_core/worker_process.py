"""Where a process runs, as one text, and whether the process it names is gone.

`<boot id>/<pid namespace>/<pid>/<start time>`: the start time tells a process from a later
one that reuses its PID. Read by the dead-run sensor, written by every run on start.
"""

from __future__ import annotations

import os
from pathlib import Path


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        import socket

        return socket.gethostname()


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "pid:[?]"


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(process.create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _place() -> str:
    return f"{_boot_id()}/{_pid_namespace()}"


def worker_tag_value(pid: int | None = None) -> str:
    """`<boot id>/<pid namespace>/<pid>/<start time>` of a process (default: this one)."""
    pid = pid or os.getpid()
    return f"{_place()}/{pid}/{_start_time(pid)}"


def worker_gone(tag: str) -> bool | None:
    """True when the tagged process is known dead, False when it runs, None when it lives
    where this process cannot see (another host or PID namespace)."""
    place, _, rest = tag.rpartition("/")
    place, _, pid = place.rpartition("/")
    if place != _place() or not pid.isdigit():
        return None
    started = _start_time(int(pid))
    return started is None or f"{started}" != rest
