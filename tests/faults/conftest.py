"""The fault-injection suite (issue 13.1): real processes killed, starved of disk, fed corrupt shards
or a lost tracking server. Every test here is marked ``faults`` and records, per case, how many faults
it injected, how many the platform recovered from and how much data was lost (``fault_record``); the
table is printed at the end of the session and written to ``fault_table.json`` under pytest's base
temporary folder."""
from __future__ import annotations

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))           # tests/: test_train_support (shards, tiny recipes)

_ROWS: list[dict] = []
_TABLE: list[str] = []


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def fault_record(request, tmp_path_factory):
    """``fault_record(case, tried=1, recovered=1, lost=0, note="")``: one row of the suite's table."""
    def record(case: str, tried: int = 1, recovered: int = 1, lost: int = 0, note: str = "") -> None:
        row = {"case": case, "test": request.node.nodeid, "tried": tried, "recovered": recovered,
               "lost": lost, "note": note}
        _ROWS.append(row)
        path = tmp_path_factory.getbasetemp() / "fault_table.json"
        path.write_text(json.dumps(_ROWS, indent=1))
        if not _TABLE:
            _TABLE.append(str(path))
    return record


def table(rows: list[dict]) -> str:
    """Markdown table: case | injections tried | recovered | data lost (rows of one case summed)."""
    merged: dict[str, list[int]] = {}
    for r in rows:
        m = merged.setdefault(r["case"], [0, 0, 0])
        m[0] += r["tried"]
        m[1] += r["recovered"]
        m[2] += r["lost"]
    lines = ["| case | injections tried | recovered | data lost |", "|---|---:|---:|---:|"]
    lines += [f"| {case} | {t} | {rec} | {lost} |" for case, (t, rec, lost) in merged.items()]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    terminalreporter.section("fault-injection table (issue 13.1)")
    terminalreporter.write_line(table(_ROWS))
    terminalreporter.write_line(f"(rows per test: {_TABLE[0]})")
