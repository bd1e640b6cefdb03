"""The student's self-check (labsupport.selfcheck): visible tests of a tiny notebook, run
without nbgrader."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labsupport import selfcheck


def _cell(grade_id, source, *, solution=False, grade=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution,
            "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    cell = new_code_cell(source, metadata={"nbgrader": meta})
    if grade and not solution:
        cell.metadata.nbgrader["checksum"] = selfcheck._checksum(cell)
    return cell


def _student_notebook(tmp_path: Path) -> Path:
    notebook = new_notebook(cells=[
        _cell("setup", "import os\nmode = os.environ['NBGRADER_EXECUTION']"),
        _cell("double", "def double(x):\n    return 2 * x", solution=True),
        _cell("test_double_visible", "assert double(2) == 4\nassert mode == 'validate'",
              grade=True, points=1),
        _cell("triple", "def triple(x):\n    return 2 * x  # wrong", solution=True),
        _cell("test_triple_visible", "assert triple(2) == 6, f'triple(2) is {triple(2)}'",
              grade=True, points=2),
        _cell("square", "raise NotImplementedError()", solution=True),
        _cell("test_square_visible", "assert square(3) == 9", grade=True, points=1),
        _cell("selfcheck", "from labsupport.selfcheck import check\ncheck()"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    notebook.cells[6].source += "\n# edited by the student"
    path = tmp_path / "lab0.ipynb"
    nbformat.write(notebook, path)
    return path


def test_selfcheck_reports_each_visible_test_without_nbgrader(tmp_path, monkeypatch, capsys):
    path = _student_notebook(tmp_path)
    before = path.read_bytes()
    monkeypatch.setitem(sys.modules, "nbgrader", None)  # importing nbgrader now fails
    report = selfcheck.check(path, timeout=30)
    assert [(t.name, t.passed, t.points) for t in report.tests] == [
        ("test_double_visible", True, 1.0), ("test_triple_visible", False, 2.0),
        ("test_square_visible", False, 1.0)]
    assert report.tests[1].message == "AssertionError: triple(2) is 4"
    assert report.tests[2].message.startswith("NameError") and report.tests[2].changed
    assert report.not_done == ["square"] and not report.passed
    out = capsys.readouterr().out
    assert "PASS  test_double_visible (1 point)" in out
    assert "FAIL  test_triple_visible (2 points): AssertionError: triple(2) is 4" in out
    assert "TODO  square" in out and "Visible tests: 1 of 3 pass (1 of 4 points)" in out
    assert "you changed this test cell" in out
    assert path.read_bytes() == before  # the student's file is not touched


def test_selfcheck_command_exit_codes(tmp_path, monkeypatch, capsys):
    results = {"good.ipynb": [selfcheck.TestResult("t", 1.0, True)],
               "bad.ipynb": [selfcheck.TestResult("t", 1.0, False, "AssertionError")]}
    real = selfcheck.check

    def fake(path, **kwargs):
        name = Path(path).name
        if name not in results:
            return real(path, **kwargs)
        return selfcheck.CheckReport(name, results[name])

    monkeypatch.setattr(selfcheck, "check", fake)
    assert selfcheck.main(["good.ipynb"]) == 0
    assert selfcheck.main(["good.ipynb", "bad.ipynb"]) == 1
    assert selfcheck.main([str(tmp_path / "missing.ipynb")]) == 2
    assert "No notebook at" in capsys.readouterr().err
    (tmp_path / "broken.ipynb").write_text("{ not json")
    with pytest.raises(selfcheck.SelfCheckError, match="not a readable notebook"):
        selfcheck.check(tmp_path / "broken.ipynb")


def test_selfcheck_needs_no_nbgrader_and_no_instructor_code():
    tree = ast.parse(Path(selfcheck.__file__).read_text())
    names = {alias.name for node in ast.walk(tree)
             if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names}
    modules = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not [n for n in names | modules if "nbgrader" in n or "instructor" in n]


def test_selfcheck_without_nbclient_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nbclient", None)
    with pytest.raises(selfcheck.SelfCheckError, match="pip install nbclient"):
        selfcheck.check("whatever.ipynb")
