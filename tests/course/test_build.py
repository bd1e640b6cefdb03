"""Every lab source converts to a valid notebook whose nbgrader metadata is complete, and its
release holds no solution and no hidden test (conventions: notebooks/README.md)."""

from __future__ import annotations

import ast
import re

import pytest

from labsupport.instructor import cells
from labsupport.instructor.colab import PLACEHOLDER, bundle_url, colab_cell
from labsupport.instructor.labs import to_notebook
from labsupport.instructor.wheel import student_wheel

from .conftest import LABS, REPO, lab_params, planted_bugs

GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
REQUIRED = ("grade", "grade_id", "locked", "schema_version", "solution")
SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
HIDDEN_REGION = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def test_labs_are_discovered():
    assert LABS, "no notebooks/labN_<slug>.py found"
    assert [lab.number for lab in LABS] == sorted({lab.number for lab in LABS})


@pytest.mark.parametrize("lab", lab_params())
def test_source_converts_with_complete_nbgrader_metadata(lab):
    notebook = to_notebook(lab)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    seen: set[str] = set()
    for index, cell in enumerate(notebook.cells):
        meta = cells.nbgrader_meta(cell)
        where = f"{lab.source.name}, cell {index} ({cell.source[:40]!r})"
        if not meta:
            assert cell.cell_type == "markdown" or "parameters" in cell.metadata.get("tags", []), (
                f"{where}: a code cell without nbgrader metadata; lock it (notebooks/README.md)")
            continue
        missing = [key for key in REQUIRED if key not in meta]
        assert not missing, f"{where}: nbgrader metadata lacks {missing}"
        assert meta["schema_version"] == 3, where
        assert GRADE_ID.match(meta["grade_id"]), f"{where}: bad grade_id {meta['grade_id']!r}"
        assert meta["grade_id"] not in seen, f"{where}: duplicate grade_id {meta['grade_id']!r}"
        seen.add(meta["grade_id"])
        if meta["grade"]:
            assert float(meta.get("points", 0)) > 0, f"{where}: a graded cell needs points > 0"
        if not meta["solution"] and cell.cell_type == "code":
            assert meta["locked"], f"{where}: code cells students do not write must be locked"
        if cells.is_task(cell):
            assert SOLUTION_REGION.search(cell.source), (
                f"{where}: an answer cell needs ### BEGIN SOLUTION / ### END SOLUTION")
        if "BEGIN HIDDEN TESTS" in cell.source:
            assert cells.is_test(cell) and HIDDEN_REGION.search(cell.source), (
                f"{where}: hidden tests belong in a test cell, between both markers")


@pytest.mark.parametrize("lab", lab_params())
def test_tasks_and_tests_follow_the_naming_convention(lab):
    notebook = to_notebook(lab)
    tasks = cells.tasks(notebook)
    assert tasks, f"{lab.name} has no answer cells"
    points = cells.task_points(notebook)
    for test_id in cells.test_cells(notebook):
        assert cells.task_of(test_id, tasks), (
            f"{lab.name}: test cell {test_id!r} is not named test_<task>_<suffix> for a task "
            f"among {tasks}")
    for task in tasks:
        assert points[task], f"{lab.name}: task {task!r} has no test cell test_{task}_*"
    # Test cells follow their task's answer cell.
    order = [cells.grade_id(c) for c in notebook.cells]
    for task, tests in points.items():
        for test_id in tests:
            assert order.index(test_id) > order.index(task), (task, test_id)


@pytest.mark.parametrize("lab", lab_params())
def test_test_cells_do_not_end_in_a_value(lab):
    """nbgrader reads a test cell's displayed value as partial credit: never end in one."""
    for cell in to_notebook(lab).cells:
        if cells.is_test(cell):
            code = "\n".join(line for line in cell.source.splitlines()
                             if not line.lstrip().startswith("%"))
            body = ast.parse(code).body
            if body and isinstance(body[-1], ast.Expr):
                assert isinstance(body[-1].value, ast.Call), (
                    f"{lab.name} {cells.grade_id(cell)}: ends in an expression whose value "
                    "nbgrader would take as a partial score")


@pytest.mark.parametrize("lab", lab_params())
def test_parameters_cell(lab):
    notebook = to_notebook(lab)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{lab.name}: exactly one cell tagged 'parameters'"
    names = {t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    assert {"profile", "dataset", "seed"} <= names, names


@pytest.mark.parametrize("lab", lab_params())
def test_first_code_cell_is_the_colab_cell(lab, course):
    """The source holds the placeholder; the release, the generated, pinned Colab cell."""
    code = [c for c in to_notebook(lab).cells if c.cell_type == "code"]
    assert code[0].source == PLACEHOLDER
    released = [c for c in course.released(lab).release.cells if c.cell_type == "code"]
    assert released[0].source == colab_cell(bundle_url(REPO), student_wheel())


@pytest.mark.parametrize("lab", lab_params())
def test_planted_bugs_name_a_task_and_text_in_it(lab):
    notebook = to_notebook(lab)
    answers = {cells.grade_id(c): c.source for c in notebook.cells if cells.is_task(c)}
    bugs = planted_bugs(lab)
    assert bugs, f"{lab.name}: no planted bugs in tests/planted/{lab.stem}.py"
    for name, (task, old, new) in bugs.items():
        assert task in answers, f"{name}: {task!r} is not an answer cell of {lab.name}"
        assert answers[task].count(old) == 1, f"{name}: {old!r} must occur once in {task}"
        assert old != new, name


@pytest.mark.parametrize("lab", lab_params())
def test_release_has_no_solution_and_no_hidden_test(lab, course):
    released = course.released(lab)
    text = {cells.grade_id(c): c.source for c in released.release.cells}
    whole = "\n".join(c.source for c in released.release.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in whole, f"{lab.name} release contains {marker!r}"
    for cell in released.source.cells:
        gid = cells.grade_id(cell)
        regions = SOLUTION_REGION.findall(cell.source) + HIDDEN_REGION.findall(cell.source)
        for region in regions:
            lines = [line.strip() for line in region.splitlines()]
            secret = [line for line in lines if len(line) > 12 and not line.startswith("#")]
            assert region.strip() not in whole, f"{lab.name} {gid}: a region leaked"
            for line in secret:
                assert line not in text.get(gid, ""), (
                    f"{lab.name} {gid}: release still holds {line!r}")
    # Each answer cell of the release is a stub.
    for cell in released.release.cells:
        if cells.is_task(cell):
            assert "NotImplementedError" in cell.source, cells.grade_id(cell)


@pytest.mark.parametrize("lab", lab_params())
def test_release_parameters_cell_is_editable(lab, course):
    """Students may edit the parameters cell (e.g. the profile): it is editable in the
    release and has no checksum (Validate would report it as changed); grading restores the
    lab's own text (the graded batch's perfect submission edits it, tests/course/conftest.py)."""
    cells_ = [c for c in course.released(lab).release.cells
              if "parameters" in c.metadata.get("tags", [])]
    assert len(cells_) == 1
    cell = cells_[0]
    assert cell.metadata.get("editable") is True, cell.metadata
    assert cell.metadata["nbgrader"]["locked"] and "checksum" not in cell.metadata["nbgrader"]


@pytest.mark.parametrize("lab", lab_params())
def test_release_stubs_say_what_to_do(lab, course):
    """An answer cell says what to write, and an unfilled task's error says what to do."""
    for cell in course.released(lab).release.cells:
        if not cells.is_answer(cell):
            continue
        if cell.cell_type == "code":
            assert 'raise NotImplementedError("not written yet:' in cell.source, cell.source
        else:
            assert cell.source.startswith("YOUR ANSWER HERE: double-click"), cell.source
