"""Check your lab notebook before you hand it in: which visible tests pass.

Runs a copy of your notebook from top to bottom in a fresh kernel, as the autograder does
(the lab picks its quick ``smoke`` profile, as under grading), and prints, for each test
cell, whether it passes and, if not, its error message. Your notebook file is not changed.
Hidden tests run only when your instructor grades: passing every visible test is necessary,
not sufficient, for full marks.

    python -m labsupport.selfcheck lab1.ipynb          # a terminal (or `!python ...` in Colab)

    from labsupport.selfcheck import check             # a notebook cell
    check("lab1.ipynb")                                 # Colab: check() finds the notebook

It needs ``nbclient`` and ``nbformat`` (JupyterLab and Colab have both), not nbgrader. It
checks the notebook as last *saved*: save first (Colab: ``check()`` takes the open one).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Set inside the kernel of a self-check, so a ``check()`` cell in the notebook does nothing.
INSIDE = "LABSUPPORT_SELFCHECK"
MESSAGE_LIMIT = 300


class SelfCheckError(RuntimeError):
    """The notebook could not be checked (the message says why and what to do)."""


@dataclass(frozen=True)
class TestResult:
    """One test cell: its name, points, whether it passed, and its error message."""

    name: str
    points: float
    passed: bool
    message: str = ""
    changed: bool = False  # the test cell's text differs from the one handed out


@dataclass
class CheckReport:
    """What :func:`check` found: test results in notebook order, answers still to write,
    and how long the run took."""

    notebook: str
    tests: list[TestResult] = field(default_factory=list)
    not_done: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every visible test passes (and there is at least one)."""
        return bool(self.tests) and all(t.passed for t in self.tests)

    def summary(self) -> str:
        """The report as text."""
        lines = [f"{self.notebook}: ran every cell in {self.seconds:.0f} s "
                 "(smoke profile, as the autograder runs it)"]
        for test in self.tests:
            state = "PASS" if test.passed else "FAIL"
            line = f"  {state}  {test.name} ({test.points:g} point{'s' * (test.points != 1)})"
            if test.message and not test.passed:
                line += f": {test.message}"
            lines.append(line)
            if test.changed:
                lines.append("        you changed this test cell: grading uses the original")
        for task in self.not_done:
            lines.append(f"  TODO  {task}: still raises NotImplementedError")
        passing = sum(t.passed for t in self.tests)
        points = sum(t.points for t in self.tests if t.passed)
        total = sum(t.points for t in self.tests)
        lines.append(f"Visible tests: {passing} of {len(self.tests)} pass ({points:g} of "
                     f"{total:g} points). Hidden tests run when your notebook is graded.")
        if not self.tests:
            lines.append("No test cells found: is this a lab notebook handed out by the course?")
        return "\n".join(lines)


def _require() -> tuple[Any, Any]:
    try:
        import nbclient
        import nbformat
    except ImportError as error:
        raise SelfCheckError(
            f"The self-check needs nbclient and nbformat ({error.name} is missing): "
            "`pip install nbclient nbformat` (JupyterLab and Colab already have them)."
        ) from error
    return nbclient, nbformat


def _meta(cell: Any) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _is_test(cell: Any) -> bool:
    meta = _meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) \
        and not meta.get("solution")


def _checksum(cell: Any) -> str:
    """nbgrader's checksum of a locked test cell (``nbgrader.utils.compute_checksum``)."""
    meta = _meta(cell)
    digest = hashlib.md5()  # noqa: S324 (nbgrader's format, not security)
    for part in (cell.source, cell.cell_type, "True", "False", "True", meta["grade_id"],
                 str(float(meta.get("points", 0)))):
        digest.update(part.encode("utf-8"))
    return digest.hexdigest()


def _error(cell: Any) -> tuple[str, str] | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", "Error"), str(output.get("evalue", ""))
    return None


def _colab_notebook() -> Any:
    """The notebook open in Colab (its frontend's current contents), or None elsewhere."""
    try:
        from google.colab import _message  # type: ignore[import-not-found]
    except ImportError:
        return None
    reply = _message.blocking_request("get_ipynb", timeout_sec=30)
    return reply.get("ipynb") if isinstance(reply, dict) else None


def _find_notebook() -> Path | None:
    """The notebook this kernel belongs to, when Jupyter says (``JPY_SESSION_NAME``)."""
    name = os.environ.get("JPY_SESSION_NAME", "")
    if not name.endswith(".ipynb"):
        return None
    # An absolute path, or one relative to the server's root: the kernel runs beside it.
    found = [p for p in (Path(name), Path.cwd() / Path(name).name) if p.is_file()]
    return found[0] if found else None


def check(path: str | os.PathLike[str] | None = None, *, timeout: int = 120,
          kernel_name: str | None = None, show: bool = True) -> CheckReport | None:
    """Run a copy of the notebook at ``path`` and report its visible tests (printed when
    ``show``). Without ``path``: the notebook open in Colab, or the one Jupyter names.

    ``timeout`` is seconds per cell. Returns None when called inside a self-check's own run.
    """
    if os.environ.get(INSIDE):
        return None  # the check() cell of a notebook being checked
    nbclient, nbformat = _require()
    if path is None:
        data = _colab_notebook()
        found = _find_notebook()
        if data is not None:
            notebook, folder, label = nbformat.from_dict(data), Path.cwd(), "this notebook"
        elif found is not None:
            path = found
        else:
            raise SelfCheckError("Which notebook? Pass its path, e.g. check('lab1.ipynb').")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SelfCheckError(f"No notebook at {path}.")
        try:
            notebook = nbformat.read(path, as_version=4)
        except Exception as error:  # noqa: BLE001 (not JSON, not a notebook)
            raise SelfCheckError(f"{path} is not a readable notebook ({error}); download it "
                                 "again from Jupyter or Colab (File > Download .ipynb).") from error
        folder, label = path.resolve().parent, path.name
    original = copy.deepcopy(notebook)
    env = dict(os.environ, NBGRADER_EXECUTION="validate", LABSUPPORT_PROGRESS="0")
    env[INSIDE] = "1"
    kernel = kernel_name or notebook.metadata.get("kernelspec", {}).get("name") or "python3"
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name=kernel,
                                     allow_errors=True, interrupt_on_timeout=True,
                                     resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except Exception as error:  # noqa: BLE001 (the kernel would not start or died)
        raise SelfCheckError(f"Could not run {label}: {type(error).__name__}: {error}") from error
    report = CheckReport(label, seconds=time.perf_counter() - start)
    for before, cell in zip(original.cells, notebook.cells, strict=True):
        meta = _meta(cell)
        error = _error(cell)
        if _is_test(cell):
            message = f"{error[0]}: {error[1]}".strip().rstrip(":") if error else ""
            if len(message) > MESSAGE_LIMIT:
                message = message[:MESSAGE_LIMIT] + " [...]"
            changed = bool(meta.get("checksum")) and _checksum(before) != meta["checksum"]
            report.tests.append(TestResult(meta.get("grade_id", "?"),
                                           float(meta.get("points", 0)), error is None,
                                           message, changed))
        elif meta.get("solution") and error and error[0] == "NotImplementedError":
            report.not_done.append(meta.get("grade_id", "?"))
    if show:
        print(report.summary())
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m labsupport.selfcheck NOTEBOOK...``: 0 when every visible test passes."""
    parser = argparse.ArgumentParser(prog="python -m labsupport.selfcheck",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="your lab notebook(s), e.g. lab1.ipynb")
    parser.add_argument("--timeout", type=int, default=120, help="seconds a cell may run")
    args = parser.parse_args(argv)
    status = 0
    for name in args.notebooks:
        try:
            report = check(name, timeout=args.timeout)
        except SelfCheckError as error:
            print(f"selfcheck: {error}", file=sys.stderr)
            return 2
        if report is not None and not report.passed:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
