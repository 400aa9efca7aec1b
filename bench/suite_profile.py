"""Where the test suite's time goes: wall time, the test process's own CPU and the whole host's CPU per test.

    PYTHONPATH=bench python -m pytest -q tests -p suite_profile     # writes test-output/suite-profile.json
    python bench/suite_profile.py [test-output/suite-profile.json] [--top 20]

As a pytest plugin (`-p suite_profile`) it records, for each test (set-up and tear-down included): its
wall time, the CPU time of the pytest process itself (the reference models, exports, clients), and the
CPU time of the whole host over that time (/proc/stat: the app processes and Chromium too, and anything
else running). Run as a script it prints the totals, the host's average busy cores (host CPU / wall)
and the modules and tests that take the most. A report, not a benchmark: nothing to compare against.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "test-output" / "suite-profile.json"
_records: dict = {}


def host_busy_seconds() -> float:
    """CPU seconds the host has spent busy (not idle or waiting for I/O) since boot, all cores."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


try:
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        own, host, wall = own_cpu_seconds(), host_busy_seconds(), time.perf_counter()
        yield
        _records[item.nodeid] = {"wall": time.perf_counter() - wall, "own_cpu": own_cpu_seconds() - own,
                                 "host_cpu": host_busy_seconds() - host}

    def pytest_sessionfinish(session):
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(_records))
except ImportError:  # the report below needs no pytest
    pass


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", nargs="?", type=Path, default=OUT)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    records = json.loads(args.profile.read_text())
    total = {k: sum(r[k] for r in records.values()) for k in ("wall", "own_cpu", "host_cpu")}
    print(f"{len(records)} tests: wall {total['wall']:.0f} s, pytest process CPU {total['own_cpu']:.0f} s, "
          f"host CPU {total['host_cpu']:.0f} s (average busy cores {total['host_cpu'] / total['wall']:.2f})")
    modules = defaultdict(lambda: defaultdict(float))
    for node, r in records.items():
        for k, v in r.items():
            modules[node.split("::")[0]][k] += v
    print(f"\n{'wall s':>7} {'own CPU':>8} {'host CPU':>9}  module")
    for name, r in sorted(modules.items(), key=lambda m: -m[1]["host_cpu"])[:args.top]:
        print(f"{r['wall']:7.1f} {r['own_cpu']:8.1f} {r['host_cpu']:9.1f}  {name}")
    print(f"\n{'wall s':>7} {'own CPU':>8} {'host CPU':>9}  test")
    for node, r in sorted(records.items(), key=lambda m: -m[1]["host_cpu"])[:args.top]:
        print(f"{r['wall']:7.1f} {r['own_cpu']:8.1f} {r['host_cpu']:9.1f}  {node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
