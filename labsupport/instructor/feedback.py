"""Feedback for students: one HTML file per student and lab that never shows hidden tests.

nbgrader's ``generate_feedback`` renders the *autograded* notebook, and that notebook holds
the hidden tests (grading restores every test cell from the gradebook), with tracebacks that
quote them: handing it out leaks the hidden tests to the next class (nbgrader issues #917
and #1156: by design, no option to hide them). Here nbgrader's own
feedback converter runs (scores and comments from the gradebook through ``GetGrades``, HTML
through nbconvert and nbgrader's feedback template) with one more step,
:class:`RedactHiddenTests`: a cell holding hidden tests keeps its name, points and score,
shows its visible part only, and its outputs become one line, passed or failed with the
error's message (no traceback, no printed output); a task's mark scheme is cut as well.
A summary table opens the page. The
course configuration (``grading/nbgrader_config.py``) puts the same step into nbgrader's
feedback, so the formgrader's feedback button redacts too.

After writing, every file is scanned for the lines between the hidden-test markers of the
lab's source notebook; a file that holds one is deleted and the run fails.
"""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, NbGraderPreprocessor

from .cells import grade_id, nbgrader_meta

#: nbgrader's feedback steps with the redaction after GetGrades (which fills in the scores).
FEEDBACK_STEPS = ["nbgrader.preprocessors.GetGrades",
                  "labsupport.instructor.feedback.RedactHiddenTests",
                  "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"]
HIDDEN_NOTE = "# Hidden tests: not shown (their result is below)."
#: The longest error message shown for a test (characters).
MESSAGE_LIMIT = 600


def _markers(parent: Any) -> ClearHiddenTests:
    return ClearHiddenTests(parent=parent)


def has_hidden_tests(cell: Any, markers: ClearHiddenTests | None = None) -> bool:
    """Whether a cell's source holds a hidden-test region."""
    markers = markers or ClearHiddenTests()
    return markers.begin_test_delimeter in cell.get("source", "")


def visible_part(cell: Any, markers: ClearHiddenTests | None = None) -> str:
    """A cell's source without its hidden-test regions (as the release shows it)."""
    import copy

    markers = markers or ClearHiddenTests()
    cell = copy.deepcopy(cell)
    markers._remove_hidden_test_region(cell)
    return cell.source


def hidden_lines(notebook: Any, markers: ClearHiddenTests | None = None) -> list[str]:
    """The non-blank lines between the hidden-test (and mark-scheme) markers of
    ``notebook``, stripped."""
    markers = markers or ClearHiddenTests()
    scheme = ClearMarkScheme()
    pairs = [(markers.begin_test_delimeter, markers.end_test_delimeter),
             (scheme.begin_mark_scheme_delimeter, scheme.end_mark_scheme_delimeter)]
    lines = []
    for cell in notebook.cells:
        inside = False
        for line in cell.get("source", "").splitlines():
            if any(begin in line for begin, _ in pairs):
                inside = True
            elif any(end in line for _, end in pairs):
                inside = False
            elif inside and line.strip():
                lines.append(line.strip())
    return lines


def error_message(cell: Any) -> str:
    """``Name: message`` of the cell's error output (empty when it raised nothing)."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            text = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
            text = text.rstrip(":")
            return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " [...]"
    return ""


class RedactHiddenTests(NbGraderPreprocessor):
    """Feedback step after ``GetGrades``: hidden-test cells reduced to their name, points,
    score and result (passed, or failed with the error's message); a summary table first.

    A cell is redacted when its source holds the hidden-test marker, or when the lab's
    source notebook (``source/<lab>/<lab>.ipynb`` of the course) has hidden tests in the
    cell of that grade_id.
    """

    def _source_hidden_ids(self, resources: Any) -> set[str]:
        import nbformat

        owner = self.parent
        while owner is not None and not hasattr(owner, "coursedir"):
            owner = getattr(owner, "parent", None)
        info = resources.get("nbgrader", {})
        if owner is None or not info.get("assignment"):
            return set()
        coursedir = owner.coursedir
        folder = coursedir.format_path(coursedir.source_directory, ".", info["assignment"])
        path = Path(folder) / f"{info.get('notebook')}.ipynb"
        if not path.is_file():
            return set()
        markers = _markers(self)
        return {grade_id(c) for c in nbformat.read(path, as_version=4).cells
                if grade_id(c) and has_hidden_tests(c, markers)}

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        import nbformat

        markers = _markers(self)
        hidden_ids = self._source_hidden_ids(resources)
        pending = _pending(resources)
        scheme = ClearMarkScheme(parent=self)
        rows = []
        for cell in nb.cells:
            meta = nbgrader_meta(cell)
            hidden = cell.cell_type == "code" and (has_hidden_tests(cell, markers)
                                                   or grade_id(cell) in hidden_ids)
            with contextlib.suppress(RuntimeError):  # unbalanced markers: nothing cut
                scheme._remove_mark_scheme_region(cell)  # a task's mark scheme, if any
            message = error_message(cell)
            if hidden:
                # Without markers to cut at (the source says hidden): show none of it.
                visible = (visible_part(cell, markers).rstrip()
                           if has_hidden_tests(cell, markers) else "")
                cell.source = f"{visible}\n{HIDDEN_NOTE}".strip()
                cell.outputs = [nbformat.v4.new_output(
                    "stream", name="stdout", text=_result_line(meta, message) + "\n")]
            if meta.get("grade"):
                rows.append(_summary_row(cell, meta, hidden, message,
                                         grade_id(cell) in pending))
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(_summary(rows, resources)))
        return nb, resources


def _passed(meta: dict[str, Any]) -> bool | None:
    score, points = meta.get("score"), meta.get("points")
    if score is None or points is None:
        return None
    return float(score) >= float(points)


def _result_line(meta: dict[str, Any], message: str) -> str:
    passed = _passed(meta)
    if passed:
        return "Hidden tests: passed."
    if passed is None:
        return "Hidden tests: not scored yet."
    return "Hidden tests: FAILED" + (f": {message}" if message else ".")


def _pending(resources: Any) -> set[str]:
    """grade_ids of this submission's cells still to be graded by hand (gradebook)."""
    from nbgrader.api import Gradebook

    info = resources.get("nbgrader", {})
    if not info.get("db_url"):
        return set()
    with Gradebook(info["db_url"]) as gradebook:
        notebook = gradebook.find_submission_notebook(info["notebook"], info["assignment"],
                                                      info["student"])
        return {g.name for g in notebook.grades if g.needs_manual_grade}


def _summary_row(cell: Any, meta: dict[str, Any], hidden: bool, message: str, pending: bool
                 ) -> dict[str, Any]:
    test = cell.cell_type == "code" and not meta.get("solution")
    kind = ("hidden test" if hidden else "test") if test else "graded by hand"
    passed = _passed(meta)
    if not test:
        result = "not graded yet" if pending else "graded"
    else:
        result = "passed" if passed else "not scored" if passed is None else "failed"
        if message and not passed:
            result += f": {message.splitlines()[0]}"
    score = meta.get("score")
    return {"cell": grade_id(cell), "kind": kind, "result": result,
            "score": "–" if score is None or pending else f"{float(score):g}",
            "points": f"{float(meta.get('points') or 0):g}"}


def _summary(rows: list[dict[str, Any]], resources: Any) -> str:
    info = resources.get("nbgrader", {})
    score, max_score = info.get("score"), info.get("max_score")
    lines = [f"## Feedback: {info.get('assignment', '')}, {info.get('student', '')}", ""]
    if score is not None and max_score is not None:
        lines += [f"**Score: {float(score):g} / {float(max_score):g}**"
                  + (f" (late penalty {float(info['late_penalty']):g})"
                     if info.get("late_penalty") else ""), ""]
    lines += ["| cell | kind | score | result |", "| --- | --- | --- | --- |"]
    for row in rows:
        result = html.escape(row["result"]).replace("|", "&#124;")
        lines.append(f"| `{row['cell']}` | {row['kind']} | {row['score']} / {row['points']} "
                     f"| {result} |")
    lines += ["", "Hidden tests show their result only. Comments from your grader are under "
              "your answers."]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Generating and checking


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(markup: str) -> str:
    """The text of an HTML page (tags dropped, entities decoded)."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def leaks(page: str, secret: Iterable[str]) -> list[str]:
    """The lines of ``secret`` that occur in the HTML ``page`` (its text or its markup)."""
    text = html_text(page)
    return [line for line in dict.fromkeys(secret) if line in text or line in page]


@dataclass
class FeedbackReport:
    """What :func:`generate` wrote: the HTML files, and the submissions it skipped (not
    autograded) with the reason."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


def secret_lines(root: Path, lab: str, public: Iterable[str] = ()) -> list[str]:
    """Hidden-test lines of ``source/<lab>/<lab>.ipynb`` that are nowhere public: not in the
    release notebook, nor in ``public`` (e.g. the student's own notebook)."""
    import nbformat

    source = root / "source" / lab / f"{lab}.ipynb"
    if not source.is_file():
        from .grading import GradingError

        raise GradingError(f"No source notebook {source}; run `labsupport release {lab}`.")
    known = set(public)
    release = root / "release" / lab / f"{lab}.ipynb"
    if release.is_file():
        known |= {line.strip() for c in nbformat.read(release, as_version=4).cells
                  for line in c.source.splitlines()}
    return [line for line in hidden_lines(nbformat.read(source, as_version=4))
            if line not in known]


def _public_lines(notebook_path: Path) -> set[str]:
    """Lines of a student's autograded notebook outside its hidden-test cells."""
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    markers = ClearHiddenTests()
    return {line.strip() for c in notebook.cells
            for line in (visible_part(c, markers) if has_hidden_tests(c, markers)
                         else c.source).splitlines()}


def feedback_config(root: str | os.PathLike[str]) -> Any:
    """The course configuration with the redacting feedback steps (whatever it said)."""
    from .grading import load_config

    config = load_config(root)
    config.GenerateFeedback.preprocessors = list(FEEDBACK_STEPS)
    return config


def _jupyter_data_dir() -> None:
    """Put the Jupyter data folder of nbconvert's own environment on ``JUPYTER_PATH``.

    nbgrader's feedback template extends nbconvert's ``classic`` template, which nbconvert
    looks for under ``sys.prefix``: an environment layered on the course one (``.venv-peers``)
    does not have it there.
    """
    import nbconvert
    from jupyter_core.paths import jupyter_path

    data = Path(nbconvert.__file__).resolve().parents[4] / "share" / "jupyter"
    if (data / "nbconvert" / "templates").is_dir() and str(data) not in jupyter_path():
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            p for p in (os.environ.get("JUPYTER_PATH", ""), str(data)) if p)


def generate(root: str | os.PathLike[str], labs: Sequence[str], *,
             students: Sequence[str] | None = None) -> FeedbackReport:
    """Write ``feedback/<student>/<lab>/<lab>.html`` for every autograded submission of
    ``labs`` (or of ``students`` only), with nbgrader's feedback converter and
    :class:`RedactHiddenTests`; scan each file for hidden-test text (see :func:`leaks`)."""
    from .grading import GradingError, _check, api

    root = Path(root).resolve()
    if not (root / "gradebook.db").is_file():
        raise GradingError(f"No gradebook in {root}; grade first (`labsupport grade`).")
    _jupyter_data_dir()
    grader = api(root, feedback_config(root))
    report = FeedbackReport()
    for lab in labs:
        graded = sorted(p.parent.parent.name
                        for p in (root / "autograded").glob(f"*/{lab}/{lab}.ipynb"))
        wanted = graded if students is None else [s for s in students if s in graded]
        for student in students or []:
            if student not in graded:
                report.skipped.append((student, lab, "not autograded"))
        for student in sorted((root / "submitted").glob(f"*/{lab}")) if students is None else []:
            if student.parent.name not in graded:
                report.skipped.append((student.parent.name, lab, "not autograded"))
        for student in wanted:
            _check(grader.generate_feedback(lab, student, force=True),
                   f"generate_feedback {lab} {student}")
            path = root / "feedback" / student / lab / f"{lab}.html"
            if not path.is_file():
                raise GradingError(f"generate_feedback {lab} {student} wrote no {path}.")
            notebook = root / "autograded" / student / lab / f"{lab}.ipynb"
            found = leaks(path.read_text(encoding="utf-8"),
                          secret_lines(root, lab, _public_lines(notebook)))
            if found:
                path.unlink()
                raise GradingError(f"Feedback for {student} ({lab}) showed hidden-test text "
                                   f"(deleted): {found[:3]}")
            report.files.append(path)
    return report
