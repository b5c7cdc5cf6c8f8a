"""Prints what the kill loops survived at the end of the session (CI's log keeps it)."""

from __future__ import annotations

from faults.harness import REPORT


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("faults: kills survived per command")
        for line in REPORT:
            terminalreporter.write_line(line)
