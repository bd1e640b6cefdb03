"""The Colab cell: first code cell of every lab; a no-op outside Colab; pip on Colab."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from labsupport.colab import COLAB_CELL, PACKAGE_SOURCE
from labsupport.instructor.labs import discover_labs, find_root, to_notebook

LABS = discover_labs(find_root(__file__) / "notebooks")


@pytest.mark.parametrize("lab", LABS, ids=[lab.name for lab in LABS])
def test_first_code_cell_of_every_lab_is_the_colab_cell(lab):
    first = next(c for c in to_notebook(lab).cells if c.cell_type == "code")
    assert first.source == COLAB_CELL


def _run_cell(monkeypatch):
    calls = []

    def fake_run(*args, **kwargs):
        calls.append((args, kwargs))
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("Popen called"))
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("call called"))
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: pytest.fail("check_call"))
    exec(compile(COLAB_CELL, "<colab cell>", "exec"), {})
    return calls


def test_colab_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert _run_cell(monkeypatch) == []


def test_colab_cell_installs_the_package_on_colab(monkeypatch):
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    calls = _run_cell(monkeypatch)
    assert len(calls) == 1
    (command,), kwargs = calls[0]
    assert command == [sys.executable, "-m", "pip", "install", "-q", PACKAGE_SOURCE]
    assert kwargs.get("check") is True
    assert "nbgrader" not in " ".join(command)
