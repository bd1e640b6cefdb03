"""The feedback redaction step and the hidden-text scan on a small notebook (fast; the
real pages are checked in test_roundtrip)."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from labsupport.instructor import feedback

SECRET = "assert secret_reference(x) == 42, 'x must be the answer'"


def _graded(grade_id, source, *, points, score, outputs=(), solution=False):
    meta = {"grade": True, "grade_id": grade_id, "locked": not solution, "points": points,
            "schema_version": 3, "solution": solution, "score": score}
    return new_code_cell(source, metadata={"nbgrader": meta}, outputs=list(outputs))


def _error(message, *, quoting=""):
    return new_output("error", ename="AssertionError", evalue=message,
                      traceback=["Traceback (most recent call last)", quoting,
                                 f"AssertionError: {message}"])


def _autograded():
    return new_notebook(cells=[
        _graded("answer", "x = 41", points=0, score=0, solution=True),
        _graded("test_x_visible", "assert isinstance(x, int), 'x must be an int'", points=1,
                score=1),
        _graded("test_y_visible", "assert x > 100, 'x is too small'", points=1, score=0,
                outputs=[_error("x is too small", quoting="----> 1 assert x > 100")]),
        _graded("test_x_hidden", f"# Hidden tests.\n### BEGIN HIDDEN TESTS\nprint(x)\n{SECRET}\n"
                                 "### END HIDDEN TESTS", points=3, score=0,
                outputs=[new_output("stream", name="stdout", text="41\n"),
                         _error("x must be the answer", quoting=f"----> 3 {SECRET}")]),
    ])


def test_hidden_tests_keep_their_name_points_and_result_only():
    notebook, _ = feedback.RedactHiddenTests().preprocess(
        _autograded(), {"nbgrader": {"assignment": "lab0", "student": "s", "score": 1,
                                     "max_score": 5}})
    summary, _, _, visible, hidden = notebook.cells
    assert hidden.source == "# Hidden tests.\n" + feedback.HIDDEN_NOTE
    assert [o["text"] for o in hidden.outputs] == [
        "Hidden tests: FAILED: AssertionError: x must be the answer\n"]
    assert visible.outputs[0]["traceback"][1] == "----> 1 assert x > 100"  # visible: kept
    assert "| `test_x_hidden` | hidden test | 0 / 3 | failed: AssertionError: x must be the " \
           "answer |" in summary.source
    assert "| `test_x_visible` | test | 1 / 1 | passed |" in summary.source
    assert "| `test_y_visible` | test | 0 / 1 | failed: AssertionError: x is too small |" \
        in summary.source
    assert SECRET not in nbformat.writes(notebook) and "print(x)" not in nbformat.writes(notebook)


def test_the_scan_finds_hidden_lines_in_text_and_markup():
    lines = feedback.hidden_lines(_autograded())
    assert lines == ["print(x)", SECRET]
    page = ("<pre><span class='k'>assert</span> secret_reference(x) == 42, "
            "&#39;x must be the answer&#39;</pre>")
    assert feedback.leaks(page, lines) == [SECRET]
    assert feedback.leaks("<p>Hidden tests: FAILED: x must be the answer</p>", [SECRET]) == []
