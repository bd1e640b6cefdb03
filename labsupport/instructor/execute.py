"""The notebook executor that runs *inside* the grading sandbox.

    python -m labsupport.instructor.execute BOX --timeout SECONDS

``BOX/in.ipynb`` is read and deleted before the kernel starts (the kernel never finds the
tests it has not run yet on disk). The kernel runs in ``BOX/work``. Cells run one by one:

- before every graded test cell the guard (:mod:`labsupport.instructor.guard`) undoes
  changes student code made to what tests rely on, and reports them;
- a cell that runs past ``--timeout`` is interrupted; a kernel that ignores the interrupt
  (or dies) is stopped, and the cells after it are marked as not run, so tests that ran
  before keep their scores;
- after every cell, the outputs so far go to ``BOX/results.json`` (written atomically):
  ``{"outputs": {index: [...]}, "counts": {index: n}, "tamper": [...], "stopped": reason}``.

The trusted parent takes only outputs from there, never cell sources.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

GUARD = "__import__('labsupport.instructor.guard', fromlist=['guard']).{}()"
#: Seconds a kernel gets to answer after an interrupt before it is stopped.
GRACE = 10


def _error(name: str, value: str) -> dict[str, Any]:
    return {"output_type": "error", "ename": name, "evalue": value,
            "traceback": [f"{name}: {value}"]}


class Results:
    """What the executor has produced so far, saved after every cell."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"outputs": {}, "counts": {}, "tamper": [], "stopped": None}

    def cell(self, index: int, cell: Any) -> None:
        self.data["outputs"][str(index)] = cell.get("outputs", [])
        self.data["counts"][str(index)] = cell.get("execution_count")
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


def _is_test(cell: Any) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
    return bool(meta.get("grade")) and not meta.get("solution")


def _reply(client: Any, msg_id: str, timeout: float) -> dict[str, Any] | None:
    """The kernel's reply to the request ``msg_id``, or None when none comes in time."""
    from queue import Empty

    from nbclient.util import run_sync

    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = run_sync(client.kc.shell_channel.get_msg)(timeout=min(left, 1.0))
        except Empty:
            if not run_sync(client.kc.is_alive)():
                return None
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
    return None


def _expression(client: Any, code: str, timeout: float) -> str | None:
    """Evaluate ``code`` as a user expression in the kernel; its text, or None if no answer."""
    msg_id = client.kc.execute("", silent=True, store_history=False,
                               user_expressions={"value": code})
    reply = _reply(client, msg_id, timeout)
    value = (reply or {}).get("content", {}).get("user_expressions", {}).get("value", {})
    if reply is None:
        return None
    if value.get("status") != "ok":
        return f"guard failed: {value.get('ename')}: {value.get('evalue')}"
    return str(value.get("data", {}).get("text/plain", "")).strip("'\"")


def _responsive(client: Any, timeout: float = GRACE) -> bool:
    return _reply(client, client.kc.kernel_info(), timeout) is not None


def execute(box: Path, timeout: int) -> dict[str, Any]:
    """Execute ``box/in.ipynb`` cell by cell; return (and save) the results."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import run_sync

    source = box / "in.ipynb"
    notebook = nbformat.read(source, as_version=4)
    source.unlink()
    work = box / "work"
    work.mkdir(exist_ok=True)
    results = Results(box / "results.json")
    results.save()
    client = NotebookClient(
        notebook, timeout=timeout, interrupt_on_timeout=True, allow_errors=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": f"over {timeout} s",
                          "traceback": [f"CellTimeoutError: no reply within {timeout} s"]},
        kernel_name="python3", resources={"metadata": {"path": str(work)}},
        iopub_timeout=4, raise_on_iopub_timeout=False, shutdown_kernel="immediate",
        extra_arguments=["--HistoryManager.hist_file=:memory:"])
    code_cells = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    stopped = None
    with client.setup_kernel():
        if _expression(client, GUARD.format("snapshot"), 120) != "ok":
            results.data["tamper"].append({"cell": None, "found": "the guard did not start"})
        for position, (index, cell) in enumerate(code_cells):
            if stopped:
                cell.outputs = [_error("NotRun", stopped)]
                results.cell(index, cell)
                continue
            if _is_test(cell):
                found = _expression(client, GUARD.format("restore"), GRACE + 20)
                if found is None:
                    stopped = f"not run: the kernel stopped answering before cell {index}"
                    cell.outputs = [_error("NotRun", stopped)]
                    results.cell(index, cell)
                    continue
                if found:
                    grade_id = cell.metadata["nbgrader"].get("grade_id")
                    results.data["tamper"].append({"cell": grade_id, "found": found})
            started = time.monotonic()
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                cell.outputs = [*cell.get("outputs", []),
                                _error("DeadKernelError", "the kernel died in this cell")]
                stopped = f"not run: the kernel died in cell {index}"
            else:
                timed_out = any(o.get("ename") == "CellTimeoutError" for o in cell.outputs)
                if time.monotonic() - started >= timeout and not timed_out:
                    timed_out = True
                    cell.outputs.append(_error("CellTimeoutError", f"over {timeout} s"))
                if timed_out and not _responsive(client):
                    stopped = (f"not run: cell {index} ran past {timeout} s and the kernel "
                               f"ignored the interrupt, so it was stopped")
            results.cell(index, cell)
            if stopped and position + 1 < len(code_cells):
                results.data["stopped"] = stopped
                with contextlib.suppress(Exception):  # already gone
                    run_sync(client.km.shutdown_kernel)(now=True)
    results.save()
    return results.data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("box", type=Path)
    parser.add_argument("--timeout", type=int, default=120)
    args = parser.parse_args(argv)
    execute(args.box, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
