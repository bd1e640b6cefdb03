"""The one accessor for nbgrader's cell metadata: what a cell is, and a notebook's tasks.

nbgrader keeps its metadata under ``cell.metadata.nbgrader``: ``grade_id``, ``solution``
(an answer cell), ``grade`` (graded), ``locked``, ``points``. A *task* is a code answer
cell; its test cells are named ``test_<task>_<suffix>``.
"""

from __future__ import annotations

from typing import Any


def nbgrader_meta(cell: Any) -> dict[str, Any]:
    """A cell's nbgrader metadata (empty when it has none)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: Any) -> str | None:
    """A cell's nbgrader grade_id, if any."""
    return nbgrader_meta(cell).get("grade_id")


def is_answer(cell: Any) -> bool:
    """An answer cell (code or written): nbgrader ``solution``."""
    return bool(nbgrader_meta(cell).get("solution"))


def is_graded(cell: Any) -> bool:
    """A cell that carries points (test cells and written answers)."""
    return bool(nbgrader_meta(cell).get("grade"))


def is_task(cell: Any) -> bool:
    """A code cell a student writes code in (nbgrader solution cell)."""
    return cell.get("cell_type") == "code" and is_answer(cell)


def is_test(cell: Any) -> bool:
    """An autograded test cell (graded code cell that is not an answer cell)."""
    return cell.get("cell_type") == "code" and is_graded(cell) and not is_answer(cell)


def by_grade_id(notebook: Any) -> dict[str, Any]:
    """grade_id -> cell, for every cell that has one (the first, if one is repeated)."""
    out: dict[str, Any] = {}
    for cell in notebook.cells:
        gid = grade_id(cell)
        if gid and gid not in out:
            out[gid] = cell
    return out


def find(notebook: Any, gid: str) -> Any:
    """The cell with grade_id ``gid`` (KeyError when there is none)."""
    try:
        return by_grade_id(notebook)[gid]
    except KeyError:
        raise KeyError(f"No cell with grade_id {gid!r}.") from None


def order(notebook: Any) -> dict[str, int]:
    """grade_id -> position among the notebook's cells."""
    return {gid: i for i, gid in enumerate(grade_id(c) for c in notebook.cells) if gid}


def tasks(notebook: Any) -> list[str]:
    """The grade_ids of the notebook's code answer cells, in order."""
    return [grade_id(c) for c in notebook.cells if is_task(c)]


def test_cells(notebook: Any) -> dict[str, float]:
    """grade_id -> points of every autograded test cell, in order."""
    return {grade_id(c): float(nbgrader_meta(c)["points"]) for c in notebook.cells if is_test(c)}


def task_of(test_id: str, task_ids: list[str]) -> str | None:
    """The task a test cell belongs to: the longest task ``t`` with ``test_<t>_`` as prefix."""
    owners = [t for t in task_ids if test_id.startswith(f"test_{t}_")]
    return max(owners, key=len) if owners else None


def task_points(notebook: Any) -> dict[str, dict[str, float]]:
    """task -> {test cell grade_id: points}."""
    task_ids = tasks(notebook)
    out: dict[str, dict[str, float]] = {t: {} for t in task_ids}
    for test_id, points in test_cells(notebook).items():
        owner = task_of(test_id, task_ids)
        if owner is not None:
            out[owner][test_id] = points
    return out
