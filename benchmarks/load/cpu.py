"""Where the cores went during a load phase: CPU time by role (app, database, load generator).

Everything runs on one machine, so a latency figure means little without knowing who had the
cores: a saturated app, a starved database or a load generator eating the box look alike from
the client. Process CPU times are read with psutil (a dependency of locust) at the start and end
of a phase; processes that exit during the phase (a worker killed by a fault) are counted up to
their last reading, which makes the app's share a lower bound in fault runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil

ROLES = ("app", "database", "proxy", "load generator", "other")


def _role(process: psutil.Process) -> str:
    try:
        name = process.name()
        command = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "other"
    if "gunicorn" in command:
        return "app"
    if name.startswith(("postgres", "postmaster")):
        return "database"
    if name.startswith("nginx"):
        return "proxy"
    if "benchmarks.load.loadgen" in command or "locust" in command:
        return "load generator"
    return "other"


def _readings() -> dict[int, tuple[str, float]]:
    found = {}
    for process in psutil.process_iter():
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        found[process.pid] = (_role(process), times.user + times.system)
    return found


@dataclass
class CpuMeter:
    """Call :meth:`sample` now and then during a phase and :meth:`stop` at its end."""

    started: float = field(default_factory=time.monotonic)
    first: dict[int, tuple[str, float]] = field(default_factory=_readings)
    last: dict[int, tuple[str, float]] = field(default_factory=dict)
    # After stop(): CPU seconds used by each role, and the seconds measured.
    used: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def sample(self) -> None:
        self.last.update(_readings())

    def stop(self) -> dict[str, float]:
        """Cores used on average by each role, and idle, over the phase."""
        self.sample()
        seconds = max(time.monotonic() - self.started, 1e-9)
        used = dict.fromkeys(ROLES, 0.0)
        for pid, (role, total) in self.last.items():
            before = self.first.get(pid, (role, 0.0))[1]
            used[role] += max(0.0, total - before)
        self.used, self.seconds = {role: round(value, 3) for role, value in used.items()}, seconds
        cores = {role: round(value / seconds, 2) for role, value in used.items()}
        cores["idle"] = round(max(0.0, (os.cpu_count() or 1) - sum(cores.values())), 2)
        return cores


def cpu_line(cores: dict[str, float]) -> str:
    """'CPU (cores, of N): app 1.33, database 0.29, …'."""
    parts = ", ".join(f"{role} {value:.2f}" for role, value in cores.items())
    return f"  CPU (cores used on average, of {os.cpu_count()}): {parts}"
