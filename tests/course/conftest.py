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

from labsupport.instructor import cells, demo, grading
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
        alternatives = alternative_solutions(released.lab)
        if alternatives:
            notebooks["alternative"] = demo.with_answers(good, alternatives)
            contents["alternative"] = {"answers": alternatives}
        for i, plan in enumerate(pack_submissions(released), 1):
            notebook = good
            for task, old, new in plan["bugs"].values():
                notebook = demo.with_bug(notebook, task, old, new)
            notebook = demo.with_answers(notebook, plan["wrappers"])
            if plan["tamper"]:
                notebook = demo.tampered(notebook, **plan["tamper"])
            notebooks[f"planted-{i}"] = notebook
            contents[f"planted-{i}"] = plan
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


def pack_submissions(released: Released) -> list[dict[str, Any]]:
    """The lab's planted bugs, package wrappers and tamperings, packed into as few
    submissions as possible (every autograde costs a kernel run of the whole notebook).

    Each submission is ``{"bugs": {name: (task, old, new)}, "wrappers": {task: answer},
    "tamper": plan}`` (see :func:`demo.pack_bugs`, :func:`demo.tamper_plans`). Tests of
    different tasks are independent, so one submission may break several tasks, at most
    one way each: a wrapper (an answer that only calls the package) is one more way to
    score zero on its task, and a tampering touches tasks none of the other changes touch.
    """
    points = cells.task_points(released.source)
    task_of = {cell: task for task, cell_ids in points.items() for cell in cell_ids}
    plans: list[dict[str, Any]] = [{"bugs": group, "wrappers": {}, "tamper": {}}
                                   for group in demo.pack_bugs(planted_bugs(released.lab))]

    def busy(plan: dict[str, Any]) -> set[str]:
        tamper = plan["tamper"]
        return zero_tasks(plan) | {task_of[tamper[key]] for key in ("edit", "delete")
                                   if key in tamper}

    for task, answer in package_wrappers(released.lab).items():
        plan = next((p for p in plans if task not in busy(p)), None)
        if plan is None:
            plan = {"bugs": {}, "wrappers": {}, "tamper": {}}
            plans.append(plan)
        plan["wrappers"][task] = answer
    for reference in demo.tamper_plans(released.source):
        # The tampering of demo.tamper_plans, moved onto tasks a submission leaves intact.
        for plan in reversed(plans):  # the last submissions break the fewest tasks
            if plan["tamper"]:
                continue
            tamper = tamper_within(points, set(points) - busy(plan), set(reference))
            if tamper is not None:
                plan["tamper"] = tamper
                break
        else:
            plans.append({"bugs": {}, "wrappers": {}, "tamper": reference})
    return plans


def tamper_within(points: dict[str, list[str]], free: set[str],
                  keys: set[str]) -> dict[str, str] | None:
    """A tampering with ``keys`` (among loop, edit, delete) on the ``free`` tasks only, as
    :func:`demo.tamper_plans` lays it out (the loop in the last task, the edited and
    deleted test cells in the others); None when the free tasks cannot hold it."""
    tasks = [task for task, cell_ids in points.items() if cell_ids and task in free]
    plan: dict[str, str] = {}
    if "loop" in keys:
        if not tasks:
            return None
        plan["loop"] = tasks.pop()
    others = [cell for task in tasks for cell in points[task]]
    if len(others) < len(keys & {"edit", "delete"}):
        return None
    if "edit" in keys:
        plan["edit"] = others[0]
    if "delete" in keys:
        plan["delete"] = others[-1]
    return plan


def zero_tasks(content: dict[str, Any]) -> set[str]:
    """The tasks a packed submission (:func:`pack_submissions`) must score zero on."""
    tamper = content.get("tamper") or {}
    return ({task for task, _, _ in content.get("bugs", {}).values()}
            | set(content.get("wrappers", {})) | ({tamper["loop"]} if "loop" in tamper else set()))


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
