"""Put a submission's grading metadata back in order before nbgrader sees it.

nbgrader trusts the metadata a student's notebook carries. A submission whose metadata was
edited, duplicated or lost makes it abort the batch (unsupported ``schema_version``), drop
the whole notebook (a repeated ``grade_id``) or restore tests in the wrong place (metadata
lost when the cells were pasted into a new notebook). The release is the authority:

- a cell with a known ``grade_id`` gets the release's nbgrader metadata back;
- a repeated ``grade_id`` stays on its first cell; the copies become ordinary cells (they
  still run, in the order the student had them);
- an unknown ``grade_id`` or malformed metadata is dropped;
- cells without metadata are matched to the release: a cell whose text equals a released
  locked cell gets that cell's metadata, and a released answer cell that is still missing
  goes to the student's cell between the same neighbours.

Every change is returned as a problem for ``flags.csv``.
"""

from __future__ import annotations

import copy
from typing import Any

from .cells import grade_id, nbgrader_meta


def _release_metadata(release: Any) -> dict[str, tuple[int, Any]]:
    return {grade_id(c): (i, c) for i, c in enumerate(release.cells) if grade_id(c)}


def repair(submission: Any, release: Any) -> tuple[Any, list[tuple[str, str]]]:
    """A repaired copy of ``submission`` and the list of (cell, problem) it fixed."""
    notebook = copy.deepcopy(submission)
    known = _release_metadata(release)
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, cell in enumerate(notebook.cells):
        raw = cell.get("metadata", {}).get("nbgrader")
        if raw is None:
            continue
        gid = grade_id(cell) if isinstance(raw, dict) else None
        if gid in known and gid not in seen:
            reference = nbgrader_meta(known[gid][1])
            if dict(raw) != dict(reference):
                problems.append((gid, "grading metadata edited (restored from the release)"))
            cell.metadata["nbgrader"] = copy.deepcopy(reference)
            if known[gid][1].cell_type != cell.cell_type:
                cell.cell_type = known[gid][1].cell_type
                problems.append((gid, "cell type changed (restored from the release)"))
                _normalise(cell)
            seen.add(gid)
            continue
        del cell.metadata["nbgrader"]
        if gid in seen:
            problems.append((gid, f"cell duplicated (the copy at position {index} is graded "
                                  f"as an ordinary cell)"))
        else:
            problems.append((str(gid or f"cell {index}"),
                             "unknown or malformed grading metadata (removed)"))
    problems += _reattach(notebook, release, seen)
    return notebook, problems


def _normalise(cell: Any) -> None:
    if cell.cell_type == "code":
        cell.setdefault("outputs", [])
        cell.setdefault("execution_count", None)
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def _reattach(notebook: Any, release: Any, present: set[str]) -> list[tuple[str, str]]:
    """Give cells without metadata the metadata of the released cell they stand for."""
    problems = []
    missing = [(i, c) for i, c in enumerate(release.cells)
               if grade_id(c) and grade_id(c) not in present]
    if not missing:
        return problems
    by_text: dict[str, list[tuple[int, Any]]] = {}  # identical texts are taken in order
    for i, c in missing:
        if not nbgrader_meta(c).get("solution"):
            by_text.setdefault(c.source.strip(), []).append((i, c))
    # Anchor every student cell to a release position where one is known.
    anchors: list[int | None] = []
    release_ids = {grade_id(c): i for i, c in enumerate(release.cells) if grade_id(c)}
    release_text = {c.source.strip(): i for i, c in enumerate(release.cells)}
    for cell in notebook.cells:
        gid = grade_id(cell)
        if gid:
            anchors.append(release_ids.get(gid))
            continue
        queue = by_text.get(cell.source.strip())
        match = queue.pop(0) if queue else None
        if match is not None and grade_id(match[1]) not in present:
            cell.metadata["nbgrader"] = copy.deepcopy(nbgrader_meta(match[1]))
            present.add(grade_id(match[1]))
            problems.append((grade_id(match[1]), "grading metadata lost (re-attached by "
                                                 "matching the cell to the release)"))
            anchors.append(match[0])
        else:
            anchors.append(release_text.get(cell.source.strip()))
    for position, cell in missing:
        if not nbgrader_meta(cell).get("solution") or grade_id(cell) in present:
            continue
        before = max((i for i, a in enumerate(anchors) if a is not None and a < position),
                     default=-1)
        after = min((i for i, a in enumerate(anchors) if a is not None and a > position),
                    default=len(anchors))
        gap = [i for i in range(before + 1, after)
               if anchors[i] is None and notebook.cells[i].cell_type == cell.cell_type
               and not nbgrader_meta(notebook.cells[i])]
        if not gap or before < 0:
            continue
        target = notebook.cells[gap[0]]
        target.metadata["nbgrader"] = copy.deepcopy(nbgrader_meta(cell))
        anchors[gap[0]] = position
        present.add(grade_id(cell))
        problems.append((grade_id(cell), "grading metadata lost (answer cell re-attached by "
                                         "its place between the released cells)"))
    return problems
