"""bench/load.py in miniature: the production gunicorn stack, one portal, 5 locust users for a few seconds."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402


def test_load_bench_runs_every_request_kind_without_errors(capsys):
    args = argparse.Namespace(users=5, spawn_rate=5, seconds=5, portals=1, frames=1, wait=(0.1, 0.3), keep=False)
    figures = load.measure(args)
    try:
        stats = figures["stats"]
        assert set(load.KINDS) <= set(stats)  # each kind was requested at least once
        assert stats["Aggregated"]["failures"] == 0, figures["failures"]
        assert sum(stats[kind]["requests"] for kind in load.KINDS) == stats["Aggregated"]["requests"]
        assert figures["locked"] == 0
        load.report(args, figures)
        printed = capsys.readouterr().out
        assert "errors: 0   'database is locked' in the app log: 0" in printed
    finally:
        shutil.rmtree(figures["workdir"], ignore_errors=True)
