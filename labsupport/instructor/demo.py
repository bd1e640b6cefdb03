"""Fixture submissions: what students could hand in, built from a lab's source and release.

The course tests and ``labsupport grade --demo`` autograde these to prove the grading works:

- :func:`perfect`: the release with every answer cell filled from the instructor's source
  (a student who got everything right);
- the untouched release (a student who handed in nothing);
- :func:`with_bug`: a perfect submission with one planted bug (``tests/planted/<stem>.py``);
- :func:`tampered`: test cells edited or deleted and an endless loop in an answer.

Planted bugs: ``tests/planted/<lab stem>.py`` defines
``BUGS: dict[str, tuple[str, str, str]]``, bug name -> (task grade_id, text in that task's
solution cell, replacement). A task's points are those of its test cells, whose grade_ids
are ``test_<task>_<suffix>``; a bug must cost exactly its task's points.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

from .cells import find, grade_id, is_answer, task_points

SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
#: Prepended to an answer cell to make it loop forever.
ENDLESS_LOOP = "while True:  # an endless loop in the answer\n    pass\n"
TAMPERED_TEST = "# The student replaced this test cell.\nprint('all tests passed')\n"


def strip_markers(source: str) -> str:
    """An answer as a student would write it: the solution markers removed."""
    return "\n".join(line for line in source.splitlines() if not SOLUTION_MARKERS.match(line))


def perfect(source: Any, release: Any) -> Any:
    """The release with every answer cell (code and written) filled from the source."""
    notebook = copy.deepcopy(release)
    answers = {grade_id(c): c.source for c in source.cells if is_answer(c)}
    for cell in notebook.cells:
        gid = grade_id(cell)
        if gid in answers and is_answer(cell):
            cell.source = strip_markers(answers[gid])
    return notebook


def with_bug(notebook: Any, task: str, old: str, new: str) -> Any:
    """A copy of ``notebook`` with ``old`` replaced by ``new`` in the answer cell ``task``."""
    notebook = copy.deepcopy(notebook)
    cell = find(notebook, task)
    if old not in cell.source:
        raise ValueError(f"Planted bug: {old!r} does not occur in the answer cell {task!r}.")
    cell.source = cell.source.replace(old, new)
    return notebook


def with_answers(notebook: Any, answers: dict[str, str]) -> Any:
    """A copy of ``notebook`` with the answer cells named in ``answers`` (grade_id -> source)
    replaced."""
    notebook = copy.deepcopy(notebook)
    for gid, source in answers.items():
        find(notebook, gid).source = source
    return notebook


def tampered(notebook: Any, *, edit: str | None = None, delete: str | None = None,
             loop: str | None = None) -> Any:
    """A copy of ``notebook`` with the test cell ``edit`` rewritten, the test cell ``delete``
    removed and an endless loop at the top of the answer cell ``loop``."""
    notebook = copy.deepcopy(notebook)
    if edit:
        find(notebook, edit).source = TAMPERED_TEST
    if delete:
        notebook.cells = [c for c in notebook.cells if grade_id(c) != delete]
    if loop:
        cell = find(notebook, loop)
        cell.source = ENDLESS_LOOP + cell.source
    return notebook


def _load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_course_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def load_planted(path: str | os.PathLike[str]) -> dict[str, tuple[str, str, str]]:
    """The ``BUGS`` dict of a planted-bugs file (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    bugs = getattr(_load_module(path), "BUGS", None)
    if not isinstance(bugs, dict):
        raise ValueError(f"{path} must define BUGS: dict[str, tuple[str, str, str]].")
    for name, value in bugs.items():
        if not (isinstance(value, tuple) and len(value) == 3
                and all(isinstance(v, str) for v in value)):
            raise ValueError(f"{path}: BUGS[{name!r}] must be (task grade_id, old, new).")
    return bugs


def load_answers(path: str | os.PathLike[str], name: str) -> dict[str, str]:
    """The dict ``name`` (task grade_id -> answer cell source) of a Python file; empty when
    the file or the name does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    answers = getattr(_load_module(path), name, {})
    if not (isinstance(answers, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in answers.items())):
        raise ValueError(f"{path}: {name} must be a dict of task grade_id -> answer source.")
    return answers


def pack_bugs(bugs: dict[str, tuple[str, str, str]]) -> list[dict[str, tuple[str, str, str]]]:
    """Group bugs into as few submissions as possible, at most one bug per task in each.

    Tests of different tasks are independent, so one submission can carry bugs in several
    tasks; each bug's task must then lose exactly its points and every other task keep them.
    """
    groups: list[dict[str, tuple[str, str, str]]] = []
    for name, bug in bugs.items():
        for group in groups:
            if all(other[0] != bug[0] for other in group.values()):
                group[name] = bug
                break
        else:
            groups.append({name: bug})
    return groups


def tamper_plans(notebook: Any) -> list[dict[str, str]]:
    """The tampered submissions that cover a lab with as few kernel runs as possible.

    Each plan has keys among ``loop`` (the task whose answer loops forever), ``edit`` (a test
    cell rewritten) and ``delete`` (a test cell removed), for :func:`tampered`. The loop goes
    in the last task; the edited and deleted test cells are taken from the other tasks, so
    one submission covers all three. A one-task lab needs two submissions.
    """
    points = task_points(notebook)
    task_ids = [t for t in points if points[t]]
    if not task_ids:
        return []
    loop = task_ids[-1]
    others = [test for t in task_ids[:-1] for test in points[t]]
    if others:
        plan = {"loop": loop, "edit": others[0]}
        if len(others) >= 2:
            plan["delete"] = others[-1]
        return [plan]
    own = list(points[loop])
    plan = {"edit": own[0]}
    if len(own) >= 2:
        plan["delete"] = own[-1]
    return [{"loop": loop}, plan]


def write_notebook(notebook: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``notebook`` to ``path`` (folders created)."""
    import nbformat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def demo_submissions(root: str | os.PathLike[str], lab: str,
                     planted: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write the fixture submissions of ``lab`` into ``<root>/submitted/demo-*/<lab>/``:
    perfect, untouched, planted bugs (packed), edited and deleted test cells.

    Needs ``source/<lab>/<lab>.ipynb`` and ``release/<lab>/<lab>.ipynb`` (``labsupport
    release``). ``planted`` is the lab's planted-bugs file. Returns student -> path.
    """
    import nbformat

    root = Path(root)
    source = nbformat.read(root / "source" / lab / f"{lab}.ipynb", as_version=4)
    release = nbformat.read(root / "release" / lab / f"{lab}.ipynb", as_version=4)
    good = perfect(source, release)
    students = {"demo-perfect": good, "demo-untouched": release}
    for i, group in enumerate(pack_bugs(load_planted(planted) if planted else {}), 1):
        notebook = good
        for task, old, new in group.values():
            notebook = with_bug(notebook, task, old, new)
        students[f"demo-bugs-{i}"] = notebook
    # Edited and deleted test cells; no endless loop: it would cost the course timeout.
    plans = [{k: v for k, v in plan.items() if k != "loop"} for plan in tamper_plans(source)]
    for i, plan in enumerate([p for p in plans if p], 1):
        students[f"demo-tampered-{i}"] = tampered(good, **plan)
    return {student: write_notebook(nb, root / "submitted" / student / lab / f"{lab}.ipynb")
            for student, nb in students.items()}
