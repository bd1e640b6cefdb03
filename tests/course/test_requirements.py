"""Every task lists its requirements, and every requirement has a planted bug (every lab).

A lab's notebook states, for each task, what a solution must satisfy: a bullet list under a
line ``**Requirements**`` in the markdown before the task's answer cell (after the previous
task's), one sentence a bullet. ``tests/planted/<lab stem>.py`` defines ``REQUIREMENTS``:
task grade_id -> {planted bug name: the requirement it breaks, word for word as in the
notebook}. So the requirements a student reads are exactly those the planted bugs (and the
tests that catch them, ``test_autograde.py``) cover. Whitespace does not count: a bullet may
wrap over several lines.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

import pytest

from labsupport.instructor import cells
from labsupport.instructor.labs import Lab, to_notebook

from .conftest import PLANTED, lab_params, planted_bugs

HEADING = "**Requirements**"
BULLET = ("- ", "* ")


def normalise(text: str) -> str:
    return " ".join(text.split())


def requirement_lists(markdown: str) -> list[list[str]]:
    """The bullet lists that follow a ``**Requirements**`` line in ``markdown``, each bullet
    with its continuation lines joined and whitespace normalised."""
    lists: list[list[str]] = []
    lines = markdown.splitlines()
    for start, line in enumerate(lines):
        if line.strip() != HEADING:
            continue
        bullets: list[str] = []
        for follow in lines[start + 1:]:
            if not follow.strip():
                if bullets:
                    break
                continue
            if follow.lstrip() == follow and follow.startswith(BULLET):
                bullets.append(follow[2:])
            elif bullets and follow[:1].isspace():
                bullets[-1] += " " + follow.strip()
            else:
                break
        lists.append([normalise(b) for b in bullets])
    return lists


@cache
def _notebook(lab: Lab) -> Any:
    return to_notebook(lab)


def notebook_requirements(lab: Lab) -> dict[str, list[list[str]]]:
    """task -> the requirement lists in the markdown cells between the previous task's answer
    cell and its own."""
    found: dict[str, list[list[str]]] = {}
    pending: list[list[str]] = []
    for cell in _notebook(lab).cells:
        if cell.get("cell_type") == "markdown":
            pending += requirement_lists(cell.source)
        elif cells.is_task(cell):
            found[cells.grade_id(cell)] = pending
            pending = []
    return found


def planted_requirements(lab: Lab) -> dict[str, dict[str, str]]:
    """``REQUIREMENTS`` of the lab's planted-bugs file (empty when there is none)."""
    path = PLANTED / f"{lab.stem}.py"
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location(f"_requirements_{lab.stem}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    requirements = getattr(module, "REQUIREMENTS", {})
    assert isinstance(requirements, dict) and all(
        isinstance(bugs, dict) and all(isinstance(k, str) and isinstance(v, str)
                                       for k, v in bugs.items())
        for bugs in requirements.values()), (
        f"{path}: REQUIREMENTS must map task -> {{bug name: requirement}}")
    return requirements


def graded_tasks(lab: Lab) -> list[str]:
    """The lab's tasks that have test cells."""
    return [task for task, tests in cells.task_points(_notebook(lab)).items() if tests]


def test_requirement_lists_are_parsed_as_written():
    markdown = ("**Task.** Write it.\n\n**Requirements**\n\n- One sentence\n  that wraps.\n"
                "- Another `one`.\n\nAfter the list.\n- not a requirement")
    assert requirement_lists(markdown) == [["One sentence that wraps.", "Another `one`."]]
    assert requirement_lists("No list here.\n- a bullet") == []


@pytest.mark.parametrize("lab", lab_params())
def test_every_task_lists_its_requirements(lab):
    found = notebook_requirements(lab)
    problems = []
    for task in graded_tasks(lab):
        lists = found.get(task, [])
        if len(lists) != 1 or not lists[0]:
            problems.append(f"{task}: {len(lists)} {HEADING} lists before its answer cell "
                            f"(expected one, with bullets)")
        elif len(set(lists[0])) != len(lists[0]):
            problems.append(f"{task}: a requirement is listed twice")
    assert not problems, f"{lab.name}: " + "; ".join(problems)


@pytest.mark.parametrize("lab", lab_params())
def test_requirements_match_the_planted_bugs(lab):
    requirements = planted_requirements(lab)
    assert requirements, f"no REQUIREMENTS in tests/planted/{lab.stem}.py"
    found = notebook_requirements(lab)
    bugs = planted_bugs(lab)
    problems = []
    for task in graded_tasks(lab):
        listed = {b for lst in found.get(task, []) for b in lst}
        planted = requirements.get(task, {})
        sentences = {normalise(s) for s in planted.values()}
        for missing in sorted(listed - sentences):
            problems.append(f"{task}: the notebook's requirement {missing!r} has no planted bug "
                            f"in REQUIREMENTS")
        for extra in sorted(sentences - listed):
            problems.append(f"{task}: REQUIREMENTS has {extra!r}, which is not a bullet under "
                            f"{HEADING} in the notebook")
        for name in planted:
            if name not in bugs:
                problems.append(f"{task}: REQUIREMENTS names the bug {name!r}, which BUGS lacks")
            elif bugs[name][0] != task:
                problems.append(f"{task}: REQUIREMENTS lists {name!r}, a bug of {bugs[name][0]}")
    for task in sorted(set(requirements) - set(graded_tasks(lab))):
        problems.append(f"REQUIREMENTS has a task {task!r} the notebook does not grade")
    listed_bugs = {name for planted in requirements.values() for name in planted}
    for name, (task, _, _) in bugs.items():
        if name not in listed_bugs:
            problems.append(f"the planted bug {name!r} ({task}) breaks no listed requirement")
    assert not problems, f"{lab.name}:\n  " + "\n  ".join(problems)
