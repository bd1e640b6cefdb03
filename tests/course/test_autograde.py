"""Autograding fixture submissions of every lab, in one nbgrader batch per lab (slow).

source -> full marks; untouched release -> 0 without a crash; each planted bug -> exactly
its task's points lost; a tampered test cell -> restored and graded; a deleted test cell ->
flagged (and restored); an endless loop in an answer -> that cell times out, the rest is
graded. Also: the source passes all its tests and the release none (nbgrader's Validator).
"""

from __future__ import annotations

import shutil

import nbformat
import pytest

from labsupport.instructor import cells, grading

from .conftest import LABS, lab_params, planted_bugs, zero_tasks

pytestmark = [
    pytest.mark.slow,
    # nbgrader's own gradebook code trips SQLAlchemy's autoflush warnings; not ours to fix.
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),
]


def _bug_params():
    return [pytest.param(lab, name, id=f"{lab.name}-{name}")
            for lab in LABS for name in planted_bugs(lab)]


def _summary(scores, max_scores):
    return ", ".join(f"{cell}={score}/{max_scores[cell]:g}" for cell, score in scores.items())


@pytest.mark.parametrize("lab", lab_params()[:1])
def test_source_passes_all_its_tests(lab, course, tmp_path):
    """nbgrader's Validator on the instructor's version, for one lab: a full notebook run
    each. Every lab's source answers are graded in full by its autograde batch below
    (``test_perfect_submission_gets_full_marks``), which runs the same cells."""
    released = course.released(lab)
    copy = tmp_path / released.source_path.name  # run in a scratch folder: outputs land there
    shutil.copy(released.source_path, copy)
    result = grading.validate(copy, config=released.config)
    failed = {key: [(c["source"][:80], c.get("raw_error", "")[-1500:]) for c in cells]
              for key, cells in result.items()}
    assert result == {}, f"{lab.name} source fails its tests: {failed}"


@pytest.mark.parametrize("lab", lab_params()[:1])
def test_release_passes_none_of_its_tests(lab, course, tmp_path):
    """nbgrader's Validator (the student's Validate button) on the untouched release of one
    lab reports every test failing. Every lab's untouched release scores 0 on every test
    cell in its autograde batch below (``test_untouched_release_gets_zero``), which runs the
    same cells with the hidden tests restored.

    Checksums are ignored: a test cell that held hidden tests differs from the source.

    A test cell made only of hidden tests is empty (comments) in the release and "passes"
    trivially; the untouched-release autograde below shows it fails once restored."""
    released = course.released(lab)
    copy = tmp_path / released.release_path.name
    shutil.copy(released.release_path, copy)
    result = grading.validate(copy, config=released.config, invert=True, ignore_checksums=True)
    empty_in_release = {c.source.strip() for c in released.release.cells
                        if cells.is_test(c)
                        and all(not line.strip() or line.lstrip().startswith("#")
                                for line in c.source.splitlines())}
    passed = [c["source"][:80] for c in result.get("passed", [])
              if c["source"].strip() not in empty_in_release]
    assert set(result) <= {"passed"}, result
    assert not passed, f"{lab.name} release: these tests pass without an answer: {passed}"


@pytest.mark.parametrize("lab", lab_params())
def test_perfect_submission_gets_full_marks(lab, course):
    graded = course.graded(lab)
    scores = graded.scores("perfect")
    tests = cells.test_cells(graded.released.release)
    assert set(tests) <= set(scores), f"missing test cells in the grades: {scores}"
    wrong = {cell: scores[cell] for cell in tests if scores[cell] != tests[cell]}
    assert not wrong, (f"{lab.name}: the instructor's answers lose points: {wrong}\n"
                       f"{graded.log[-3000:]}")


@pytest.mark.parametrize("lab", lab_params())
def test_untouched_release_gets_zero(lab, course):
    graded = course.graded(lab)
    scores = graded.scores("untouched")
    tests = cells.test_cells(graded.released.release)
    assert {cell: scores[cell] for cell in tests} == dict.fromkeys(tests, 0.0), scores
    # Written answers left as the stub score 0 as well (nbgrader: unchanged answer cell).
    assert all(score in (0.0, None) for score in scores.values()), scores


def _unexpected_scores(graded, student):
    """Cells of ``student``'s packed submission that did not score what its changes imply:
    0 on every task it breaks (:func:`zero_tasks`), full marks everywhere else."""
    points = cells.task_points(graded.released.source)
    zero = {cell for task in zero_tasks(graded.students[student]) for cell in points[task]}
    scores = graded.scores(student)
    return {cell: (scores[cell], 0.0 if cell in zero else max_score)
            for cell, max_score in cells.test_cells(graded.released.release).items()
            if scores[cell] != (0.0 if cell in zero else max_score)}


def _described(graded, student):
    content = graded.students[student]
    return (f"{student} (bugs {sorted(content.get('bugs', {}))}, package wrappers for "
            f"{sorted(content.get('wrappers', {}))}, tampering {content.get('tamper') or None})")


@pytest.mark.parametrize(("lab", "bug"), _bug_params())
def test_planted_bug_loses_exactly_its_task(lab, bug, course):
    graded = course.graded(lab)
    student = next(s for s, content in graded.students.items()
                   if bug in content.get("bugs", {}))
    task = graded.students[student]["bugs"][bug][0]
    assert cells.task_points(graded.released.source)[task], f"{task} has no test cells"
    wrong = _unexpected_scores(graded, student)
    assert not wrong, (f"{lab.name}, {_described(graded, student)}: cell: (score, expected) "
                       f"{wrong}. All: {_summary(graded.scores(student), graded.max_scores)}")


@pytest.mark.parametrize("lab", lab_params())
def test_every_task_has_a_planted_bug(lab, course):
    tasks = [t for t, cells in cells.task_points(course.released(lab).source).items()
             if cells]
    covered = {task for task, _, _ in planted_bugs(lab).values()}
    assert set(tasks) <= covered, (
        f"{lab.name}: no planted bug for {sorted(set(tasks) - covered)} "
        f"(tests/planted/{lab.stem}.py)")


@pytest.mark.parametrize("lab", lab_params())
def test_alternative_solution_gets_full_marks(lab, course):
    """An independently written correct answer to every task (tests/alternatives/)."""
    graded = course.graded(lab)
    if "alternative" not in graded.students:
        pytest.fail(f"no tests/alternatives/{lab.stem}.py (SOLUTIONS: task -> answer)")
    scores = graded.scores("alternative")
    wrong = {cell: scores[cell] for cell, points in
             cells.test_cells(graded.released.release).items() if scores[cell] != points}
    assert not wrong, f"{lab.name}: a correct alternative answer loses points: {wrong}"


@pytest.mark.parametrize("lab", lab_params())
def test_answers_that_only_call_the_package_score_zero(lab, course):
    """A task answered by wrapping the package's own implementation earns nothing."""
    graded = course.graded(lab)
    students = [s for s, content in graded.students.items() if content.get("wrappers")]
    if not students:
        pytest.skip(f"{lab.name}: no package implementation of any task to wrap")
    for student in students:
        wrong = _unexpected_scores(graded, student)
        assert not wrong, (f"{lab.name}, {_described(graded, student)}: cell: (score, "
                           f"expected) {wrong}")


def _tampered(graded, key):
    for student, content in graded.students.items():
        plan = content.get("tamper") or {}
        if plan.get(key):
            return student, plan
    pytest.skip(f"{graded.released.lab.name} has no test cell to {key}")


@pytest.mark.parametrize("lab", lab_params())
def test_tampered_test_cell_is_restored_and_graded(lab, course):
    graded = course.graded(lab)
    student, plan = _tampered(graded, "edit")
    cell = plan["edit"]
    assert graded.scores(student)[cell] == graded.max_scores[cell], (
        f"{cell}, replaced by a passing stub, must be restored from the source and graded "
        f"(the answers are right): {_summary(graded.scores(student), graded.max_scores)}")
    assert any(f.student == student and f.cell == cell and "changed" in f.problem
               for f in graded.flags), graded.flags


@pytest.mark.parametrize("lab", lab_params())
def test_deleted_test_cell_is_flagged_and_graded(lab, course):
    graded = course.graded(lab)
    student, plan = _tampered(graded, "delete")
    cell = plan["delete"]
    assert any(f.student == student and f.cell == cell and "missing" in f.problem
               for f in graded.flags), f"deleted {cell} is not flagged: {graded.flags}"
    assert graded.scores(student)[cell] == graded.max_scores[cell], (
        f"deleted {cell} must be restored and graded: "
        f"{_summary(graded.scores(student), graded.max_scores)}")


@pytest.mark.parametrize("lab", lab_params())
def test_endless_loop_times_out_and_the_rest_is_graded(lab, course):
    graded = course.graded(lab)
    student, plan = _tampered(graded, "loop")
    wrong = _unexpected_scores(graded, student)
    assert not wrong, (f"endless loop in {plan['loop']}, {_described(graded, student)}: "
                       f"cell: (score, expected) {wrong}")
    lab_name = lab.name
    autograded = nbformat.read(graded.released.root / "autograded" / student / lab_name
                               / f"{lab_name}.ipynb", as_version=4)
    loop_cell = next(c for c in autograded.cells if cells.grade_id(c) == plan["loop"])
    errors = [o.get("ename") for o in loop_cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert "CellTimeoutError" in errors, f"the looping answer cell was not timed out: {errors}"


@pytest.mark.parametrize("lab", lab_params())
def test_grades_export_one_row_per_cell(lab, course, tmp_path):
    graded = course.graded(lab)
    rows = grading.cell_grades(graded.released.root, graded.released.config)
    path = grading.write_csv(tmp_path / "grades.csv", rows, grading.CellGrade)
    header, *lines = path.read_text().splitlines()
    assert header == "student,lab,cell,score,max_score,kind,needs_grading"
    graded_cells = [c for c in graded.released.release.cells
                    if cells.nbgrader_meta(c).get("grade")]
    assert len(lines) == len(graded.students) * len(graded_cells)
