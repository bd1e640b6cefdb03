"""Course tests, generic over every ``notebooks/lab*.py``: build, validate, autograde, run.

Every autograde costs a kernel run of the whole notebook, so each lab is released once, its
fixture submissions (see :mod:`labsupport.instructor.demo`) are autograded in one grading run,
and the tests read the per-cell grades of that batch. Grading works in a private course
root (a copy of ``grading/nbgrader_config.py`` in a temporary folder), sandboxed as a real
grading run is, with a shorter per-cell timeout than the course's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

from labsupport.instructor import demo, grading
from labsupport.instructor.labs import Lab, discover_labs

REPO = Path(__file__).resolve().parents[2]
LABS = discover_labs(REPO / "notebooks")
PLANTED = REPO / "tests" / "planted"
ALTERNATIVES = REPO / "tests" / "alternatives"
#: Per-cell timeout in the course tests: a smoke experiment cell takes seconds; an endless
#: loop costs this much once per lab.
TEST_TIMEOUT = 20
#: Submissions graded at once in the course tests (the CI machine has 2 cores).
GRADING_JOBS = 2


def lab_params() -> list[Any]:
    """One pytest param per lab, with the lab's name as its id (``-k lab1``)."""
    return [pytest.param(lab, id=lab.name) for lab in LABS]


def planted_bugs(lab: Lab) -> dict[str, tuple[str, str, str]]:
    """The lab's planted bugs (``tests/planted/<stem>.py``)."""
    return demo.load_planted(PLANTED / f"{lab.stem}.py")


def alternative_solutions(lab: Lab) -> dict[str, str]:
    """task -> an independently written correct answer (``tests/alternatives/<stem>.py``)."""
    return demo.load_answers(ALTERNATIVES / f"{lab.stem}.py", "SOLUTIONS")


def package_wrappers(lab: Lab) -> dict[str, str]:
    """task -> an answer that only calls the package (``WRAPPERS`` in the planted file)."""
    return demo.load_answers(PLANTED / f"{lab.stem}.py", "WRAPPERS")


@dataclass
class Released:
    """A lab released into a private course root."""

    lab: Lab
    root: Path
    config: Any
    source: Any  # the source notebook (instructor's version)
    release: Any  # the student version

    @property
    def source_path(self) -> Path:
        return self.root / "source" / self.lab.name / f"{self.lab.name}.ipynb"

    @property
    def release_path(self) -> Path:
        return self.root / "release" / self.lab.name / f"{self.lab.name}.ipynb"


@dataclass
class Graded:
    """The batch of fixture submissions of one lab, autograded."""

    released: Released
    students: dict[str, dict[str, Any]]  # student -> what the submission holds
    grades: dict[str, dict[str, float | None]]  # student -> cell -> score
    max_scores: dict[str, float]
    flags: list[grading.Flag]
    log: str
    success: bool = field(default=True)

    def scores(self, student: str) -> dict[str, float | None]:
        assert student in self.grades, (
            f"no grades for {student}: autograding failed.\n{self.log[-4000:]}")
        return self.grades[student]


def make_root(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "grading" / grading.CONFIG_FILE, tmp / grading.CONFIG_FILE)
    return tmp


class CourseCache:
    """Releases and autograded batches, computed at most once per lab per session."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self._released: dict[str, Released] = {}
        self._graded: dict[str, Graded] = {}

    def released(self, lab: Lab) -> Released:
        if lab.name not in self._released:
            root = make_root(self.factory.mktemp(f"course-{lab.name}"))
            config = grading.load_config(root, Execute__timeout=TEST_TIMEOUT)
            grading.release([lab], root, config)
            released = Released(lab, root, config, None, None)
            released.source = nbformat.read(released.source_path, as_version=4)
            released.release = nbformat.read(released.release_path, as_version=4)
            self._released[lab.name] = released
        return self._released[lab.name]

    def graded(self, lab: Lab) -> Graded:
        if lab.name not in self._graded:
            self._graded[lab.name] = self._grade(self.released(lab))
        return self._graded[lab.name]

    def _grade(self, released: Released) -> Graded:
        lab, root = released.lab.name, released.root
        # A student may edit the (editable) parameters cell; grading restores the lab's own,
        # so the perfect submission keeps full marks although its edit names no dataset.
        good = edited_parameters(demo.perfect(released.source, released.release))
        notebooks = {"perfect": good, "untouched": released.release}
        contents: dict[str, dict[str, Any]] = {"perfect": {}, "untouched": {}}
        for i, group in enumerate(demo.pack_bugs(planted_bugs(released.lab)), 1):
            notebook = good
            for task, old, new in group.values():
                notebook = demo.with_bug(notebook, task, old, new)
            notebooks[f"bugs-{i}"] = notebook
            contents[f"bugs-{i}"] = {"bugs": group}
        alternatives = alternative_solutions(released.lab)
        if alternatives:
            notebooks["alternative"] = demo.with_answers(good, alternatives)
            contents["alternative"] = {"answers": alternatives}
        wrappers = package_wrappers(released.lab)
        if wrappers:
            notebooks["wrappers"] = demo.with_answers(good, wrappers)
            contents["wrappers"] = {"answers": wrappers}
        for i, plan in enumerate(demo.tamper_plans(released.source), 1):
            notebooks[f"tampered-{i}"] = demo.tampered(good, **plan)
            contents[f"tampered-{i}"] = plan
        for student, notebook in notebooks.items():
            demo.write_notebook(
                notebook, root / "submitted" / student / lab / f"{lab}.ipynb")
        report = grading.grade_all(root, [lab], jobs=GRADING_JOBS, timeout=TEST_TIMEOUT,
                                   force=True, release_first=False)
        grades: dict[str, dict[str, float | None]] = {}
        for row in report.grades:
            grades.setdefault(row.student, {})[row.cell] = row.score
        logs = "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}"
                         for path in sorted((root / "logs" / lab).glob("*.log")))
        return Graded(released, contents, grades,
                      {row.cell: row.max_score for row in report.grades}, report.flags,
                      logs, not report.failed)


#: What a student's edit of the parameters cell adds (grading must not run it).
PARAMETERS_EDIT = '\nprofile, dataset = "full", "no-such-dataset.npz"  # a student\'s edit\n'


def edited_parameters(notebook: Any) -> Any:
    """A copy of ``notebook`` whose ``parameters`` cell a student edited (:data:`PARAMETERS_EDIT`)."""
    import copy

    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source += PARAMETERS_EDIT
    return notebook


@pytest.fixture(scope="session")
def course(tmp_path_factory: pytest.TempPathFactory) -> CourseCache:
    """Per-lab releases and autograded batches, shared by the whole session."""
    return CourseCache(tmp_path_factory)
