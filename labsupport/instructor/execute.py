"""The notebook executor that runs *inside* the grading sandbox.

    python -m labsupport.instructor.execute BOX --timeout SECONDS

``BOX/in.ipynb`` is read and deleted before the kernel starts (the kernel never finds the
tests it has not run yet on disk). The kernel runs in ``BOX/work``, its standard streams
closed, and this process makes itself non-dumpable, so student code can neither read its
memory nor write to its standard output. Cells run one by one:

- before the first cell a student wrote, the guard (:mod:`labsupport.instructor.guard`)
  records what tests rely on; before every graded test cell it undoes changes student code
  made to that, and reports them;
- a cell that runs past ``--timeout`` is interrupted; a kernel that ignores the interrupt
  (or dies) is stopped, and the cells after it are marked as not run, so tests that ran
  before keep their scores;
- after every cell, one JSON line goes to standard output (which the trusted parent sends
  to a file outside the sandbox): ``{"cell": index, "outputs": [...], "count": n}``,
  ``{"tamper": {...}}`` or ``{"stopped": reason}``.

The parent takes only outputs from there, never cell sources.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
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
    """What the executor produces, one JSON line per event on a stream (standard output)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def _emit(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()

    def cell(self, index: int, cell: Any) -> None:
        self._emit({"cell": index, "outputs": cell.get("outputs", []),
                    "count": cell.get("execution_count")})

    def tamper(self, cell: str | None, found: str) -> None:
        self._emit({"tamper": {"cell": cell, "found": found}})

    def stopped(self, reason: str) -> None:
        self._emit({"stopped": reason})


def read_results(text: str) -> dict[str, Any]:
    """The executor's event lines, gathered (a cut-off last line is ignored)."""
    data: dict[str, Any] = {"outputs": {}, "counts": {}, "tamper": [], "stopped": None,
                            "events": 0}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        data["events"] += 1
        if "cell" in record:
            data["outputs"][str(record["cell"])] = record.get("outputs") or []
            data["counts"][str(record["cell"])] = record.get("count")
        elif "tamper" in record:
            data["tamper"].append(record["tamper"])
        elif "stopped" in record:
            data["stopped"] = record["stopped"]
    return data


def _not_dumpable() -> None:
    """No ptrace and no /proc access to this process for the (same-user) kernel (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass


def _is_locked(cell: Any) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
    return bool(meta.get("locked")) and not meta.get("solution")


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


def execute(box: Path, timeout: int, out: Any = None) -> None:
    """Execute ``box/in.ipynb`` cell by cell, reporting to ``out`` (default: stdout)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import run_sync

    source = box / "in.ipynb"
    notebook = nbformat.read(source, as_version=4)
    source.unlink()
    work = box / "work"
    work.mkdir(exist_ok=True)
    results = Results(out or sys.stdout)
    client = NotebookClient(
        notebook, timeout=timeout, interrupt_on_timeout=True, allow_errors=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": f"over {timeout} s",
                          "traceback": [f"CellTimeoutError: no reply within {timeout} s"]},
        kernel_name="python3", resources={"metadata": {"path": str(work)}},
        iopub_timeout=4, raise_on_iopub_timeout=False, shutdown_kernel="immediate",
        extra_arguments=["--HistoryManager.hist_file=:memory:"])
    code_cells = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    stopped = None
    kernel_log = open(box / "kernel.log", "wb")  # noqa: SIM115 (closed below)
    with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=kernel_log,
                             stdin=subprocess.DEVNULL):
        guarded = False
        for position, (index, cell) in enumerate(code_cells):
            if not guarded and not stopped and (_is_test(cell) or not _is_locked(cell)):
                guarded = True  # before any student code: the lab's setup has run
                if _expression(client, GUARD.format("snapshot"), 120) != "ok":
                    results.tamper(None, "the guard did not start")
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
                    results.tamper(cell.metadata["nbgrader"].get("grade_id"), found)
            elif _is_locked(cell):
                _expression(client, GUARD.format("mark"), GRACE + 20)
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
            if not stopped and _is_locked(cell) and not _is_test(cell):
                _expression(client, GUARD.format("trust"), GRACE + 20)
            if stopped and position + 1 < len(code_cells):
                results.stopped(stopped)
                with contextlib.suppress(Exception):  # already gone
                    run_sync(client.km.shutdown_kernel)(now=True)
    kernel_log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("box", type=Path)
    parser.add_argument("--timeout", type=int, default=120)
    args = parser.parse_args(argv)
    _not_dumpable()
    execute(args.box, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
