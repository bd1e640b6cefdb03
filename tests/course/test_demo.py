"""The fixture-submission helpers the course tests and `labsupport grade --demo` rely on."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labsupport.instructor import cells, demo


def _cell(grade_id, source="", *, solution=False, grade=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution,
            "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return new_code_cell(source, metadata={"nbgrader": meta})


def _notebook():
    return new_notebook(cells=[
        _cell("predict", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION", solution=True),
        _cell("test_predict_visible", "assert x", grade=True, points=1),
        _cell("predict_batch", "### BEGIN SOLUTION\ny = 2\n### END SOLUTION", solution=True),
        _cell("test_predict_batch_visible", "assert y", grade=True, points=2),
        _cell("test_predict_batch_hidden", "assert y", grade=True, points=3),
    ])


def test_task_points_use_the_longest_task_prefix():
    assert cells.task_points(_notebook()) == {
        "predict": {"test_predict_visible": 1.0},
        "predict_batch": {"test_predict_batch_visible": 2.0, "test_predict_batch_hidden": 3.0},
    }


def test_perfect_fills_answers_without_markers():
    source = _notebook()
    release = nbformat.from_dict(source)
    release.cells[0].source = "raise NotImplementedError()"
    filled = demo.perfect(source, release)
    assert filled.cells[0].source == "x = 1"
    assert release.cells[0].source == "raise NotImplementedError()"  # not modified


def test_with_bug_requires_the_old_text():
    notebook = demo.perfect(_notebook(), _notebook())
    assert demo.with_bug(notebook, "predict", "x = 1", "x = 0").cells[0].source == "x = 0"
    with pytest.raises(ValueError, match="does not occur"):
        demo.with_bug(notebook, "predict", "z = 3", "z = 0")


def test_pack_bugs_puts_at_most_one_bug_per_task_in_a_submission():
    bugs = {"a": ("t1", "x", "y"), "b": ("t1", "u", "v"), "c": ("t2", "p", "q")}
    assert demo.pack_bugs(bugs) == [{"a": bugs["a"], "c": bugs["c"]}, {"b": bugs["b"]}]


def test_tamper_plan_loops_in_the_last_task_and_tampers_the_others():
    assert demo.tamper_plans(_notebook()) == [
        {"loop": "predict_batch", "edit": "test_predict_visible"}]
    one_task = new_notebook(cells=_notebook().cells[2:])
    assert demo.tamper_plans(one_task) == [
        {"loop": "predict_batch"},
        {"edit": "test_predict_batch_visible", "delete": "test_predict_batch_hidden"}]


def test_tampered_edits_deletes_and_loops():
    notebook = demo.tampered(_notebook(), edit="test_predict_visible",
                                    delete="test_predict_batch_hidden", loop="predict_batch")
    ids = [cells.grade_id(c) for c in notebook.cells]
    assert "test_predict_batch_hidden" not in ids
    assert notebook.cells[1].source == demo.TAMPERED_TEST
    assert notebook.cells[2].source.startswith(demo.ENDLESS_LOOP)


def test_load_planted_checks_the_format(tmp_path):
    assert demo.load_planted(tmp_path / "missing.py") == {}
    good = tmp_path / "good.py"
    good.write_text("BUGS = {'b': ('task', 'old', 'new')}\n")
    assert demo.load_planted(good) == {"b": ("task", "old", "new")}
    bad = tmp_path / "bad.py"
    bad.write_text("BUGS = {'b': ('task', 'old')}\n")
    with pytest.raises(ValueError, match="must be"):
        demo.load_planted(bad)
