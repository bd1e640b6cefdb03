"""Sandboxed, parallel, incremental autograding with nbgrader.

One *job* is one submission (a student's notebook of one lab). Worker processes (``python -m
labsupport.instructor.autograde --serve``, one per parallel job) grade each job on a private
scratch copy of the course: the configuration, the lab's ``source/`` and ``release/``, a
gradebook holding only the assignments (no student), and the submission's notebook,
repaired (:mod:`.repair`) and scanned (:mod:`.scan`) first. nbgrader's real autograde
runs there, with its ``Execute`` step replaced by :class:`SandboxedExecute`: the notebook
executes in the sandbox (:mod:`.sandbox`, :mod:`.execute`), which reaches neither the
gradebook nor ``source/``/``release/`` nor other students. The worker writes a result
(per-cell scores, comments, flags, the autograded notebook, the log) and the trusted
parent merges results into the course gradebook one by one, keeping manual grades.

The same results are how grading shards across machines: ``grade --shard i/n`` writes the
results of every n-th submission to a folder, ``grade --merge FOLDER...`` merges them.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Float, Integer, Unicode

from . import sandbox

CONFIG_FILE = "nbgrader_config.py"
STATE_FILE = "grading-state.json"
#: nbgrader's autograde steps after sanitizing, with Execute replaced by the sandbox.
AUTOGRADE_STEPS = ("labsupport.instructor.autograde.SandboxedExecute",
                   "nbgrader.preprocessors.IgnorePattern",
                   "nbconvert.preprocessors.ClearMetadataPreprocessor",
                   "nbgrader.preprocessors.LimitOutput",
                   "nbgrader.preprocessors.SaveAutoGrades",
                   "nbgrader.preprocessors.AssignLatePenalties",
                   "nbgrader.preprocessors.CheckCellMetadata")


# --------------------------------------------------------------------------------------
# The sandboxed execution step inside nbgrader's autograde


class SandboxedExecute(NbGraderPreprocessor):
    """nbgrader's Execute step, run in the grading sandbox. The notebook's cells and
    metadata stay in this (trusted) process; only outputs come back from the sandbox."""

    timeout = Integer(None, allow_none=True,
                      help="Seconds a cell may run (default: Execute.timeout, else 120)."
                      ).tag(config=True)
    slot = Integer(0, help="Grading slot (its own unprivileged user id).").tag(config=True)
    mode = Unicode("", help="bwrap, unshare or none (default: the best available)."
                   ).tag(config=True)
    memory_gib = Float(12.0, help="Address-space limit of the sandbox, GiB.").tag(config=True)
    report = Unicode("", help="Where to write the sandbox's findings (JSON).").tag(config=True)

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        import nbformat

        current = self.mode or sandbox.mode()
        timeout = int(self.timeout or self.config.Execute.get("timeout", None) or 120)
        code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
        limits = sandbox.Limits(memory_bytes=int(self.memory_gib * sandbox.GIB),
                                wall_seconds=timeout * (code_cells + 2) + 120)
        from .execute import read_results

        with tempfile.TemporaryDirectory(prefix="labsupport-run-") as tmp:
            box = Path(tmp) / "box"  # all the sandbox sees; its reports stay beside it
            box.mkdir()
            os.chmod(tmp, 0o711)  # the unprivileged sandbox user may pass through to box/
            nbformat.write(nb, box / "in.ipynb")
            for folder in ("work", "home", "mpl", "ipython", "runtime"):
                (box / folder).mkdir()
            _seed_matplotlib(box / "mpl")
            inside = "/box" if current == "bwrap" else str(box)
            status = sandbox.run(
                box, [sys.executable, "-m", "labsupport.instructor.execute", inside,
                      "--timeout", str(timeout)],
                current=current, env=_sandbox_env(box, current), limits=limits,
                slot=self.slot, readonly=_readonly(), hide=_hidden(),
                stdout=Path(tmp) / "results.jsonl", log=Path(tmp) / "sandbox.log")
            results = read_results(_read_text(Path(tmp) / "results.jsonl"))
            sandbox_log = (_read_text(Path(tmp) / "sandbox.log")
                           + _read_text(box / "kernel.log", 20000))
        outputs, counts = results.get("outputs", {}), results.get("counts", {})
        stopped = results.get("stopped")
        if not results["outputs"]:
            stopped = f"not run: the sandbox ended (status {status}) before any cell ran"
        elif status != 0 and not stopped:
            stopped = f"not run: the sandbox ended (status {status})"
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if str(index) in outputs:
                cell.outputs = [nbformat.from_dict(o) for o in outputs[str(index)]]
                cell.execution_count = counts.get(str(index))
            else:
                cell.outputs = [nbformat.v4.new_output(
                    "error", ename="NotRun", evalue=stopped or "not run",
                    traceback=[f"NotRun: {stopped or 'not run'}"])]
        if self.report:
            Path(self.report).write_text(json.dumps({
                "mode": current, "status": status, "tamper": results.get("tamper", []),
                "stopped": stopped, "log": sandbox_log[-20000:]}))
        return nb, resources


def _seed_matplotlib(folder: Path) -> None:
    """Copy this machine's matplotlib font cache into the box (saves a rebuild per run)."""
    try:
        import matplotlib

        for cached in Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
            shutil.copy(cached, folder / cached.name)
    except Exception:  # noqa: BLE001 (no cache yet: matplotlib builds one)
        pass


def _cache() -> Path:
    from ..paths import cache_dir

    return cache_dir()


def _readonly() -> list[Path]:
    cache = _cache()
    return [cache] if cache.is_dir() else []


def _hidden() -> list[Path]:
    from .labs import find_root

    try:
        return [find_root(), _cache().parent]
    except Exception:  # noqa: BLE001 (no checkout: installed package)
        return [_cache().parent]


def _sandbox_env(box: Path, current: str) -> dict[str, str]:
    inside = Path("/box") if current == "bwrap" else box
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(inside / "home"),
        "TMPDIR": "/tmp", "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(inside / "mpl"), "IPYTHONDIR": str(inside / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(inside / "runtime"), "NBGRADER_EXECUTION": "autograde",
        "LABSUPPORT_CACHE": str(_cache()), "LABSUPPORT_PROGRESS": "0",
        "LABSUPPORT_DEVICE": "cpu", "PYTHONHASHSEED": "0", "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for key in ("PYTHONPATH", "OMP_NUM_THREADS"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def _read_text(path: Path, limit: int = 200_000) -> str:
    """The end of a text file the sandbox wrote (empty when missing; never a link)."""
    if path.is_symlink() or not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - limit))
        return handle.read().decode("utf-8", errors="replace")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------
# Jobs and their results


@dataclass(frozen=True)
class Job:
    """One submission to grade."""

    lab: str
    student: str
    notebook: str  # path of submitted/<student>/<lab>/<lab>.ipynb

    @property
    def key(self) -> str:
        return f"{self.lab}/{self.student}"


@dataclass
class Result:
    """What grading one submission produced (the interchange format of shards)."""

    lab: str
    student: str
    graded: bool
    submission_sha256: str
    lab_sha256: str
    timestamp: str | None = None
    grades: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[str, str | None] = field(default_factory=dict)
    late_penalty: float | None = None
    flags: list[dict[str, str]] = field(default_factory=list)
    error: str = ""

    @property
    def key(self) -> str:
        return f"{self.lab}/{self.student}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lab_fingerprint(root: Path, lab: str) -> str:
    """A hash of what grading a lab depends on: its source notebook and the configuration."""
    digest = hashlib.sha256()
    for path in (root / "source" / lab / f"{lab}.ipynb", root / CONFIG_FILE):
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def _flag(cell: str, problem: str) -> dict[str, str]:
    return {"cell": cell, "problem": problem}


def template_gradebook(root: Path, out: Path) -> Path:
    """A copy of the course gradebook with every student removed (assignments only)."""
    from nbgrader.api import Gradebook

    with sqlite3.connect(root / "gradebook.db") as source, sqlite3.connect(out) as target:
        source.backup(target)
    with Gradebook(f"sqlite:///{out}") as gradebook:
        for student in list(gradebook.students):
            gradebook.remove_student(student.id)
    return out


def prepare_scratch(job: Job, root: Path, template: Path, scratch: Path) -> list[dict[str, str]]:
    """Lay out the private course copy for ``job``; return the flags found on the way."""
    import nbformat

    from .repair import repair
    from .scan import scan_notebook

    shutil.copy(root / CONFIG_FILE, scratch / CONFIG_FILE)
    shutil.copy(template, scratch / "gradebook.db")
    for kind in ("source", "release"):
        shutil.copytree(root / kind / job.lab, scratch / kind / job.lab)
    release = nbformat.read(root / "release" / job.lab / f"{job.lab}.ipynb", as_version=4)
    target = scratch / "submitted" / job.student / job.lab
    target.mkdir(parents=True)
    flags = []
    timestamp = Path(job.notebook).parent / "timestamp.txt"
    if timestamp.is_file():
        from nbgrader.utils import parse_utc

        try:
            parse_utc(timestamp.read_text().strip())
            shutil.copy(timestamp, target / "timestamp.txt")
        except Exception:  # noqa: BLE001 (graded as if it had no timestamp)
            flags.append(_flag("", "timestamp.txt unreadable (graded without a timestamp)"))
    submission = nbformat.read(job.notebook, as_version=4)
    repaired, problems = repair(submission, release)
    flags += [_flag(cell, problem) for cell, problem in problems]
    flags += [_flag(f.cell, f"for review: line {f.line} {f.reason}")
              for f in scan_notebook(repaired, release)]
    nbformat.write(repaired, target / f"{job.lab}.ipynb")
    return flags


def grade_job(job: Job, root: Path, template: Path, out: Path, *, slot: int = 0,
              timeout: int | None = None) -> Result:
    """Grade one submission on a scratch copy; write ``out/<lab>/<student>/`` (result.json,
    the autograded notebook, grading.log) and return the result. Never raises."""
    import nbformat

    folder = out / job.lab / job.student
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = Path(job.notebook).read_bytes() if Path(job.notebook).is_file() else b""
    result = Result(job.lab, job.student, False, sha256_bytes(data),
                    lab_fingerprint(root, job.lab))
    log_lines: list[str] = []
    try:
        try:
            nbformat.reads(data.decode("utf-8"), as_version=4)
        except Exception as error:  # noqa: BLE001 (not JSON, not a notebook)
            raise GradingFailure(f"unreadable notebook ({type(error).__name__}: "
                                 f"{str(error)[:200]})") from error
        with tempfile.TemporaryDirectory(prefix="labsupport-grade-") as tmp:
            scratch = Path(tmp)
            result.flags += prepare_scratch(job, root, template, scratch)
            report = scratch / "sandbox.json"
            overrides = {"SandboxedExecute__slot": slot, "SandboxedExecute__report": str(report),
                         "Autograde__autograde_preprocessors": list(AUTOGRADE_STEPS)}
            if timeout:
                overrides["SandboxedExecute__timeout"] = timeout
            from .grading import api, load_config

            config = load_config(scratch, **overrides)
            outcome = api(scratch, config).autograde(job.lab, job.student, force=True,
                                                      create=True)
            log_lines.append(outcome.get("log", "") or "")
            sandbox_report = _read_json(report)
            log_lines.append(sandbox_report.get("log", ""))
            for item in sandbox_report.get("tamper", []):
                result.flags.append(_flag(item.get("cell") or "",
                                          f"in-kernel tampering undone before this test: "
                                          f"{item.get('found')}"))
            if sandbox_report.get("stopped"):
                result.flags.append(_flag("", f"execution stopped early; later cells "
                                              f"{sandbox_report['stopped']}"))
            if sandbox_report.get("mode") == "none":
                result.flags.append(_flag("", "graded WITHOUT isolation (no sandbox here)"))
            if not outcome.get("success"):
                raise GradingFailure("nbgrader could not autograde it: "
                                     + _last_error(outcome))
            _collect(result, scratch, job)
            autograded = scratch / "autograded" / job.student / job.lab / f"{job.lab}.ipynb"
            shutil.copy(autograded, folder / f"{job.lab}.ipynb")
            result.graded = True
    except GradingFailure as error:
        result.error = str(error)
    except Exception as error:  # noqa: BLE001 (a broken submission never stops the batch)
        result.error = f"{type(error).__name__}: {error}"
    if result.error:
        result.flags.append(_flag("", f"could not be graded: {result.error} "
                                      f"(log: {log_name(job)})"))
    (folder / "grading.log").write_text("\n".join(line for line in log_lines if line))
    _atomic_write(folder / "result.json", json.dumps(asdict(result), indent=1))
    return result


def log_name(job: Job) -> str:
    """Where a submission's grading log ends up, relative to the course root."""
    return f"logs/{job.lab}/{job.student}.log"


class GradingFailure(RuntimeError):
    """A submission could not be graded (the message says why)."""


def _last_error(outcome: dict[str, Any]) -> str:
    text = (outcome.get("error") or outcome.get("log") or "").strip().splitlines()
    errors = [line for line in text if "rror" in line]
    return (errors or text or ["(no log)"])[-1][:300]


def _collect(result: Result, scratch: Path, job: Job) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(job.lab, job.student)
        result.timestamp = submission.timestamp.isoformat() if submission.timestamp else None
        for notebook in submission.notebooks:
            result.late_penalty = notebook.late_submission_penalty
            for grade in notebook.grades:
                result.grades.append({"notebook": notebook.name, "cell": grade.name,
                                      "auto_score": grade.auto_score,
                                      "max_score": float(grade.max_score),
                                      "needs_manual_grade": bool(grade.needs_manual_grade)})
            for comment in notebook.comments:
                result.comments[f"{notebook.name}/{comment.name}"] = comment.auto_comment


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Merging results into the course gradebook


def merge(root: Path, result: Result, results_dir: Path) -> list[dict[str, str]]:
    """Merge one result into ``root``'s gradebook and folders; return extra flags.

    Auto scores and comments are replaced; manual scores and comments are kept (and a
    changed submission whose cells were graded by hand is flagged for another look).
    """
    from nbgrader.api import Gradebook

    flags: list[dict[str, str]] = []
    folder = results_dir / result.lab / result.student
    if result.graded:
        timestamp = (datetime.datetime.fromisoformat(result.timestamp)
                     if result.timestamp else None)
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
            gradebook.update_or_create_student(result.student)
            kwargs = {"timestamp": timestamp} if timestamp else {}
            gradebook.update_or_create_submission(result.lab, result.student, **kwargs)
            manual = []
            for item in result.grades:
                grade = gradebook.find_grade(item["cell"], item["notebook"], result.lab,
                                             result.student)
                grade.auto_score = item["auto_score"]
                if grade.manual_score is None:
                    grade.needs_manual_grade = item["needs_manual_grade"]
                else:
                    manual.append(item["cell"])
            for key, text in result.comments.items():
                notebook, _, cell = key.partition("/")
                comment = gradebook.find_comment(cell, notebook, result.lab, result.student)
                comment.auto_comment = text
            notebook = gradebook.find_submission_notebook(result.lab, result.lab,
                                                          result.student)
            notebook.late_submission_penalty = result.late_penalty
            gradebook.db.commit()
        if manual:
            flags.append(_flag(",".join(manual), "regraded after manual grading: the manual "
                                                 "scores were kept, check they still apply"))
        target = root / "autograded" / result.student / result.lab
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copy(folder / f"{result.lab}.ipynb", target / f"{result.lab}.ipynb")
    log = root / log_name(Job(result.lab, result.student, ""))
    log.parent.mkdir(parents=True, exist_ok=True)
    if (folder / "grading.log").is_file():
        shutil.copy(folder / "grading.log", log)
    else:
        log.write_text(result.error or "no log")
    return flags


def load_result(path: Path) -> Result:
    """A result written by :func:`grade_job` (``result.json``)."""
    return Result(**json.loads(path.read_text()))


# --------------------------------------------------------------------------------------
# Running many jobs


def prepare_cache(labs: Iterable[str]) -> None:
    """Build what the autograder's ``smoke`` runs of ``labs`` load: the synthetic dataset and
    the labs' model assets (the sandbox sees the cache read-only)."""
    from .. import assets, data

    data.load_course_data("synthetic")
    wanted = set(labs)
    names = [name for name, recipe in assets.recipes().items()
             if set(recipe.spec.get("labs", [])) & wanted]
    if names:
        assets.build_assets(names, dataset="synthetic", profile="smoke")


def jobs_for(root: Path, labs: Iterable[str], students: Sequence[str] | None = None
             ) -> list[Job]:
    """Every submission ``submitted/<student>/<lab>/`` of the given labs, sorted."""
    jobs = []
    for lab in labs:
        base = root / "submitted"
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if (p / lab).is_dir()):
            if students is not None and folder.name not in students:
                continue
            jobs.append(Job(lab, folder.name, str(folder / lab / f"{lab}.ipynb")))
    return sorted(jobs, key=lambda j: (j.lab, j.student))


def shard(jobs: Sequence[Job], spec: str | None) -> list[Job]:
    """The jobs of shard ``"i/n"`` (1-based): every n-th job starting at the i-th."""
    if not spec:
        return list(jobs)
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r}: write i/n, e.g. 1/4.") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {spec!r}: i must be between 1 and n.")
    return list(jobs)[index - 1::count]


def load_state(root: Path) -> dict[str, dict[str, str]]:
    return _read_json(root / STATE_FILE)


def is_current(state: dict[str, dict[str, str]], job: Job, lab_sha: str) -> bool:
    """Whether ``job`` was graded already, with this submission and this lab version."""
    entry = state.get(job.key, {})
    path = Path(job.notebook)
    data = path.read_bytes() if path.is_file() else b""
    return entry.get("submission") == sha256_bytes(data) and entry.get("lab") == lab_sha


def run_jobs(jobs: Sequence[Job], root: Path, out: Path, *, workers: int = 1,
             timeout: int | None = None, progress: Any = None) -> list[Result]:
    """Grade ``jobs`` with ``workers`` worker processes at once; results in job order.

    Each worker is a long-lived process of its own (``python -m
    labsupport.instructor.autograde --serve``, one grading slot each) that grades the jobs
    sent to it one at a time; a worker that dies is replaced for the next job."""
    out.mkdir(parents=True, exist_ok=True)
    template = template_gradebook(root, out / "template.db")
    local = threading.local()
    slots = iter(range(1 << 20))
    lock = threading.Lock()
    started: list[subprocess.Popen] = []

    def worker() -> subprocess.Popen:
        if getattr(local, "process", None) is None or local.process.poll() is not None:
            with lock:
                local.slot = getattr(local, "slot", None)
                if local.slot is None:
                    local.slot = next(slots)
                log = open(out / f".worker-{local.slot}.log", "ab")  # noqa: SIM115
                local.process = subprocess.Popen(
                    [sys.executable, "-m", "labsupport.instructor.autograde", "--serve"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
                log.close()
                started.append(local.process)
        return local.process

    def work(job: Job) -> Result:
        process = worker()
        spec = {"job": asdict(job), "root": str(root), "template": str(template),
                "out": str(out), "slot": local.slot, "timeout": timeout}
        folder = out / job.lab / job.student
        (folder / "result.json").unlink(missing_ok=True)
        try:
            process.stdin.write(json.dumps(spec) + "\n")
            process.stdin.flush()
            answer = process.stdout.readline()
        except OSError:
            answer = ""
        try:
            result = load_result(folder / "result.json")
        except (OSError, ValueError, TypeError):
            result = Result(job.lab, job.student, False, "", lab_fingerprint(root, job.lab),
                            error=f"the grading worker failed ({answer.strip() or 'died'})")
            result.flags.append(_flag("", f"could not be graded: {result.error} "
                                          f"(log: {log_name(job)})"))
        if progress is not None:
            progress(result)
        return result

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(work, jobs))
    finally:
        for process in started:
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _serve() -> int:
    """A worker process: grade each job spec read from stdin (one JSON line each); answer
    ``done`` per job on stdout (nothing else may write there)."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed goes to the worker's log
    for line in sys.stdin:
        spec = json.loads(line)
        grade_job(Job(**spec["job"]), Path(spec["root"]), Path(spec["template"]),
                  Path(spec["out"]), slot=spec["slot"], timeout=spec.get("timeout"))
        channel.write("done\n")
        channel.flush()
    return 0


if __name__ == "__main__":
    from .labs import kernel_environment

    kernel_environment()
    sys.exit(_serve())
