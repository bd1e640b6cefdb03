"""Import a learning-management-system download into ``grading/submitted/`` (nbgrader's zip_collect).

Canvas, Moodle and GitHub Classroom hand the instructor a zip (or a folder) of files named
after the student. nbgrader's own collection machinery does the work: its ``ZipCollectApp``
with an :class:`~nbgrader.plugins.ExtractorPlugin` (archives unpacked, nested ones too) and a
:class:`~nbgrader.plugins.FileNameCollectorPlugin` whose regular expressions, one per LMS
(:class:`LmsCollector`, set in ``grading/nbgrader_config.py``), read the student id from each
file name. Around it, this module decides and reports what nbgrader would only log:

- files no pattern matches, and non-notebook files (never collected);
- notebooks under another name (``lab1-1.ipynb``, ``Copy of lab1.ipynb``): collected as
  ``<lab>.ipynb`` when the student handed in no notebook of the right name; a notebook named
  after another lab is not collected;
- several notebooks of one student: nbgrader keeps the latest by its timestamp (the
  pattern's ``timestamp`` group, else the file's time in the archive), and the report says
  which one;
- a student whose submission was already graded: a different notebook replaces it only with
  ``force`` (the old folder is backed up first); the same notebook is left alone;
- with a roster, students who handed nothing in.

Nothing is ever deleted: a replaced submission folder goes to
``grading/backups/collect-<time>/<student>/<lab>/``.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbgrader.plugins import ExtractorPlugin, FileNameCollectorPlugin
from traitlets import Dict, List, Unicode

#: Canvas: ``<name>_<user id>_<submission id>_<file>`` (``<name>_LATE_...`` when late).
CANVAS = (r"(?:.*/)?(?P<name>[^/_]+)(?P<late>_LATE)?_(?P<student_id>\d+)_(?P<submission_id>\d+)_"
          r"(?P<file_id>[^/]+)$")
#: Moodle: ``<Full Name>_<id>_assignsubmission_file_<file>``, or a folder of that name.
MOODLE = (r"(?:.*/)?(?P<name>[^/_]+)_(?P<student_id>\d+)_assignsubmission_file"
          r"(?:_|_?/(?:[^/]+/)*)(?P<file_id>[^/]+)$")
#: GitHub Classroom (``gh classroom clone student-repos``): ``<assignment>-submissions/
#: <assignment>-<username>/.../<file>``.
GITHUB_CLASSROOM = (r"(?:.*/)?(?P<assignment>[^/]+)-submissions/(?P=assignment)-"
                    r"(?P<student_id>[A-Za-z0-9][A-Za-z0-9-]*)/(?:[^/]+/)*(?P<file_id>[^/]+)$")
PATTERNS = {"canvas": CANVAS, "moodle": MOODLE, "github-classroom": GITHUB_CLASSROOM}

#: A student id becomes a folder name: letters, digits and ``._@+-`` only.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
#: Folders and files an archive carries that are nobody's submission.
SYSTEM_PARTS = ("__MACOSX", ".git", ".github", ".ipynb_checkpoints", ".DS_Store", "Thumbs.db")
LAB_IN_NAME = re.compile(r"(?<![a-z0-9])lab[ _-]?(\d+)(?!\d)")


class CollectError(RuntimeError):
    """The download cannot be collected (the message says why and what to do)."""


# --------------------------------------------------------------------------------------
# nbgrader plugins


def _utc(moment: datetime.datetime | str) -> datetime.datetime:
    """A naive UTC datetime, as nbgrader compares and stores them."""
    from nbgrader.utils import parse_utc

    return parse_utc(moment)


class TimeKeepingExtractor(ExtractorPlugin):
    """nbgrader's extractor, keeping each file's time: the time recorded in the archive (zip
    and tar members, read as UTC) or the original file's modification time. nbgrader's own
    copy resets them, and they order a student's several submissions."""

    def extract(self, archive_path: str, extracted_path: str) -> None:
        super().extract(archive_path, extracted_path)
        for folder, _, names in os.walk(archive_path):
            target = os.path.normpath(os.path.join(extracted_path,
                                                   os.path.relpath(folder, archive_path)))
            for name in names:
                source = os.path.join(folder, name)
                stem, ext = os.path.splitext(name)
                if ext not in self.zip_ext:
                    _set_time(os.path.join(target, name), os.stat(source).st_mtime)
                    continue
                inner, inner_ext = os.path.splitext(stem)
                own = os.path.join(target, inner if inner_ext == ".tar" else stem)
                for member, moment in _archive_times(source):
                    _set_time(os.path.join(own, *member.split("/")), moment)


def _archive_times(path: str) -> list[tuple[str, float]]:
    """(member name, time as a POSIX timestamp) of every file in a zip or tar archive."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return [(info.filename, datetime.datetime(*info.date_time,
                                                      tzinfo=datetime.UTC).timestamp())
                    for info in archive.infolist() if not info.is_dir()]
    try:
        with tarfile.open(path) as archive:
            return [(m.name, float(m.mtime)) for m in archive.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError):
        return []


def _set_time(path: str, moment: float) -> None:
    if os.path.isfile(path) and not os.path.islink(path):
        os.utime(path, (moment, moment))


class LmsCollector(FileNameCollectorPlugin):
    """nbgrader's file-name collector with one regular expression per LMS.

    Each file's path relative to the extracted download (``/`` separated, with a leading
    ``/``) is matched against ``named_regexp`` when set, then each of ``named_regexps`` in
    turn; the first match gives ``student_id`` and ``file_id`` (and ``timestamp`` if the
    pattern has it, else the file's time). ``decisions`` (set by :func:`collect`) says, per
    file, whether it is collected and under which notebook name.
    """

    named_regexps = List(Unicode(), default_value=list(PATTERNS.values()),
                         help="Regular expressions tried in turn on each file's path relative "
                              "to the download (leading '/'); each must have the groups "
                              "student_id and file_id.").tag(config=True)
    decisions = Dict(help="Absolute path -> collected name (collect) or None (skip); set "
                          "by labsupport.instructor.collect.").tag(config=False)

    def patterns(self) -> list[str]:
        return [p for p in [self.named_regexp, *self.named_regexps] if p]

    def match(self, relative: str) -> dict[str, Any] | None:
        """The named groups of the first pattern matching ``relative`` (None if none does)."""
        for pattern in self.patterns():
            found = re.match(pattern, relative)
            if found and found.groupdict().get("student_id") and found.groupdict().get("file_id"):
                groups = {k: v for k, v in found.groupdict().items() if v is not None}
                groups["pattern"] = pattern
                return groups
        return None

    def collect(self, submitted_file: str) -> dict[str, Any] | None:
        decision = self.decisions.get(os.path.abspath(submitted_file))
        if not decision:
            return None  # reported by labsupport.instructor.collect, not collected
        return {"student_id": decision["student"], "file_id": decision["file_id"],
                "timestamp": decision["timestamp"]}


# --------------------------------------------------------------------------------------
# What the download holds


@dataclass(frozen=True)
class Found:
    """A notebook of the download attributed to a student."""

    path: Path  # where nbgrader extracted it
    file: str  # its path in the download, for the report
    student: str
    name: str  # the notebook's own file name (the pattern's file_id)
    timestamp: datetime.datetime
    late: bool
    sha256: str


@dataclass(frozen=True)
class Note:
    """One line of the report: ``kind`` (see :class:`CollectReport`), the student (may be
    empty), the file in the download and what happened to it."""

    kind: str
    student: str
    file: str
    message: str


@dataclass
class CollectReport:
    """What :func:`collect` did.

    ``collected``: student -> (status, file in the download) where status is ``new``,
    ``replaced`` or ``unchanged``. ``notes`` kinds: ``unmatched`` (no pattern matched),
    ``non-notebook``, ``renamed`` (a notebook under another name, collected as the lab's),
    ``not-collected`` (another lab's notebook, or a misnamed one beside a right one),
    ``duplicate`` (several notebooks: the one kept and the ones dropped), ``late``,
    ``refused`` (already graded: not replaced without force), ``replaced`` (with the
    backup's place), ``unsafe-id``. ``missing``: roster students without a submission;
    ``not_on_roster``: collected students the roster does not list.
    """

    lab: str
    collected: dict[str, tuple[str, str]] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    system_files: int = 0
    missing: list[str] = field(default_factory=list)
    not_on_roster: list[str] = field(default_factory=list)
    backup: Path | None = None

    def of(self, kind: str) -> list[Note]:
        return [n for n in self.notes if n.kind == kind]

    @property
    def needs_attention(self) -> bool:
        """A refused replacement or a notebook nobody could be matched to."""
        return bool(self.of("refused") or [n for n in self.of("unmatched")
                                           if n.file.endswith(".ipynb")])


def read_roster(path: str | os.PathLike[str]) -> list[str]:
    """Student ids from a CSV: the column ``student_id``, ``id``, ``username``, ``login`` or
    ``email`` (any case) when the first row is a header naming one, else the first column."""
    path = Path(path)
    if not path.is_file():
        raise CollectError(f"No roster file {path}; give a CSV of student ids (one a line, "
                           "or a column named student_id or id).")
    rows = [r for r in csv.reader(path.read_text(encoding="utf-8-sig").splitlines())
            if r and any(cell.strip() for cell in r)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = 0
    for name in ("student_id", "id", "username", "login", "email"):
        if name in header:
            column = header.index(name)
            rows = rows[1:]
            break
    ids = [r[column].strip() for r in rows if len(r) > column and r[column].strip()]
    return list(dict.fromkeys(ids))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_system(relative: str) -> bool:
    parts = relative.strip("/").split("/")
    return any(p in SYSTEM_PARTS or p.startswith("._") for p in parts)


def _lab_number(name: str) -> int | None:
    found = LAB_IN_NAME.search(Path(name).stem.lower())
    return int(found.group(1)) if found else None


def _graded(root: Path, lab: str, student: str) -> bool:
    from .autograde import STATE_FILE, _read_json

    return (f"{lab}/{student}" in _read_json(root / STATE_FILE)
            or (root / "autograded" / student / lab).is_dir())


# --------------------------------------------------------------------------------------
# Collecting


def collect(root: str | os.PathLike[str], lab: str, download: str | os.PathLike[str], *,
            roster: Iterable[str] | None = None, force: bool = False,
            config: Any = None) -> CollectReport:
    """Collect ``download`` (a zip/tar archive or a folder from an LMS) for ``lab`` into
    ``<root>/submitted/<student>/<lab>/<lab>.ipynb`` with nbgrader's ``ZipCollectApp``.

    See the module's docstring for the rules; the returned report says what happened to
    every file. ``force`` replaces submissions that were already graded (backed up first).
    """
    from nbgrader.apps.zipcollectapp import ZipCollectApp

    from .grading import api

    root, download = Path(root).resolve(), Path(download).resolve()
    if not download.exists():
        raise CollectError(f"No download at {download}; give the zip (or folder) your LMS "
                           "exported.")
    report = CollectReport(lab)
    grader = api(root, config)
    grader.coursedir.assignment_id = lab
    with tempfile.TemporaryDirectory(prefix=f"collect-{lab}-") as tmp:
        config = grader.config.copy()
        config.ZipCollectApp.collect_directory_structure = os.path.join(
            tmp, "{downloaded}", "{assignment_id}", "{collect_step}")
        if "collector_plugin" not in config.ZipCollectApp:
            config.ZipCollectApp.collector_plugin = LmsCollector
        if "extractor_plugin" not in config.ZipCollectApp:
            config.ZipCollectApp.extractor_plugin = TimeKeepingExtractor
        config.ZipCollectApp.force = False
        config.ExtractorPlugin.force = False
        app = ZipCollectApp(coursedir=grader.coursedir, parent=grader, config=config)
        if not issubclass(app.collector_plugin, LmsCollector):
            raise CollectError(f"ZipCollectApp.collector_plugin must be LmsCollector or a "
                               f"subclass (grading/nbgrader_config.py), not "
                               f"{app.collector_plugin.__name__}.")
        messages = _NbgraderLog()
        log = app.log  # nbgrader logs every file; the report says what matters
        saved = log.handlers[:], log.propagate, log.level
        log.handlers, log.propagate = [messages], False
        log.setLevel(logging.INFO)
        try:
            return _run(app, root, lab, download, report, roster, force, messages)
        finally:
            log.handlers, log.propagate = saved[0], saved[1]
            log.setLevel(saved[2])


def _run(app: Any, root: Path, lab: str, download: Path, report: CollectReport,
         roster: Iterable[str] | None, force: bool, messages: _NbgraderLog) -> CollectReport:
    app.init_plugins()
    archive = Path(app._format_collect_path(app.archive_directory))
    archive.mkdir(parents=True)
    if download.is_dir():
        shutil.copytree(download, archive / download.name, copy_function=shutil.copy2,
                        symlinks=True)
    else:
        shutil.copy2(download, archive / download.name)
    extracted = Path(app._format_collect_path(app.extracted_directory))
    try:
        app.extract_archive_files()
    except Exception as error:  # noqa: BLE001 (a broken archive: say which)
        raise CollectError(f"Could not unpack {download.name}: {error}") from error
    found = _survey(app.collector_plugin_inst, extracted, lab, report)
    candidates, kept_ones = _decide(root, lab, found, report, force)
    app.collector_plugin_inst.decisions = {
        str(f.path): {"student": f.student, "file_id": f"{lab}.ipynb",
                      "timestamp": f.timestamp}
        for f in candidates}
    try:
        app.process_extracted_files()
    except SystemExit as error:
        raise CollectError("nbgrader's zip_collect failed:\n" + "\n".join(messages.lines)
                           ) from error
    for kept in kept_ones:
        target = root / "submitted" / kept.student / lab / f"{lab}.ipynb"
        if not target.is_file() or _sha256(target) != kept.sha256:
            raise CollectError(f"nbgrader did not collect {kept.file} as {target} "
                               "(its log: " + " | ".join(messages.lines[-5:]) + ")")
    students = {p.parent.parent.name for p in (root / "submitted").glob(f"*/{lab}/{lab}.ipynb")}
    if roster is not None:
        roster = list(roster)
        report.missing = sorted(set(roster) - students)
        report.not_on_roster = sorted(set(report.collected) - set(roster))
    return report


class _NbgraderLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


def _survey(collector: LmsCollector, extracted: Path, lab: str, report: CollectReport
            ) -> list[Found]:
    """Every notebook of ``lab`` the patterns attribute to a student; notes for the rest."""
    found = []
    for path in sorted(p for p in extracted.rglob("*") if p.is_file() or p.is_symlink()):
        relative = "/" + path.relative_to(extracted).as_posix()
        shown = relative.lstrip("/")
        if _is_system(relative):
            report.system_files += 1
            continue
        groups = collector.match(relative)
        notebook = path.suffix.lower() == ".ipynb"
        if groups is None:
            report.notes.append(Note("unmatched", "", shown,
                                     "no pattern matches its name: not collected"
                                     + (" (a notebook: find its student and place it by "
                                        "hand)" if notebook else "")))
            continue
        student = groups["student_id"]
        if not SAFE_ID.match(student):
            report.notes.append(Note("unsafe-id", student, shown, "the student id is not a "
                                     "safe folder name: not collected"))
            continue
        if path.is_symlink() or not notebook:
            report.notes.append(Note("non-notebook", student, shown, "not a notebook: not "
                                     "collected"))
            continue
        stamp = (_utc(groups["timestamp"]) if groups.get("timestamp") else
                 _utc(datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)))
        found.append(Found(Path(os.path.abspath(path)), shown, student, Path(groups["file_id"]).name, stamp,
                           bool(groups.get("late")), _sha256(path)))
    return found


def _decide(root: Path, lab: str, found: list[Found], report: CollectReport,
            force: bool) -> tuple[list[Found], list[Found]]:
    """The notebooks nbgrader is to collect (all candidates of a student: nbgrader keeps
    the latest) and the ones it will keep; notes for the others. Replaced submission
    folders are backed up here."""
    number = int(lab.removeprefix("lab")) if lab.removeprefix("lab").isdigit() else None
    by_student: dict[str, list[Found]] = {}
    for item in found:
        by_student.setdefault(item.student, []).append(item)
    chosen: list[Found] = []
    kept_ones: list[Found] = []
    for student, items in sorted(by_student.items()):
        right = [f for f in items if f.name == f"{lab}.ipynb"]
        candidates = list(right)
        for item in items:
            if item in right:
                continue
            other = _lab_number(item.name)
            if number is not None and other is not None and other != number:
                report.notes.append(Note("not-collected", student, item.file,
                                         f"named after lab{other}, not {lab}"))
            elif right:
                report.notes.append(Note("not-collected", student, item.file,
                                         f"another notebook: {student} also handed in "
                                         f"{lab}.ipynb"))
            else:
                candidates.append(item)
                report.notes.append(Note("renamed", student, item.file,
                                         f"notebook named {item.name!r}: collected as "
                                         f"{lab}.ipynb"))
        if not candidates:
            continue
        # nbgrader keeps the newest; of equal times the last in path order (it replaces on >=).
        kept = max(candidates, key=lambda f: (f.timestamp, str(f.path)))
        for item in candidates:
            if item is not kept:
                report.notes.append(Note("duplicate", student, item.file,
                                         f"older ({item.timestamp:%Y-%m-%d %H:%M:%S} UTC) than "
                                         f"{kept.file} ({kept.timestamp:%Y-%m-%d %H:%M:%S} UTC), "
                                         "which is kept"))
        if kept.late:
            report.notes.append(Note("late", student, kept.file, "marked late by the LMS"))
        folder = root / "submitted" / student / lab
        target = folder / f"{lab}.ipynb"
        if target.is_file() and _sha256(target) == kept.sha256:
            report.collected[student] = ("unchanged", kept.file)
            continue
        if folder.exists() and any(folder.iterdir()):
            graded = _graded(root, lab, student)
            if graded and not force:
                report.notes.append(Note("refused", student, kept.file,
                                         "already graded, and this notebook differs: not "
                                         "replaced (collect again with --force to replace "
                                         "it; grade then regrades it)"))
                continue
            report.backup = report.backup or (
                root / "backups" / f"collect-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%S%fZ}")
            backup = report.backup / student / lab
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), backup)
            report.notes.append(Note("replaced", student, kept.file,
                                     ("replaced a graded submission (--force)" if graded else
                                      "replaced a submission not graded yet")
                                     + f"; the old one is in {backup.relative_to(root)}"))
            report.collected[student] = ("replaced", kept.file)
        else:
            if folder.exists():
                folder.rmdir()
            report.collected[student] = ("new", kept.file)
        chosen.extend(candidates)
        kept_ones.append(kept)
    return chosen, kept_ones


def format_report(report: CollectReport, where: str = "grading") -> str:
    """The report as text for the terminal."""
    lines = []
    counts = {s: sum(1 for v in report.collected.values() if v[0] == s)
              for s in ("new", "replaced", "unchanged")}
    lines.append(f"{report.lab}: {len(report.collected)} submissions in {where}/submitted/ "
                 f"({counts['new']} new, {counts['replaced']} replaced, {counts['unchanged']} "
                 "unchanged)")
    for student, (status, source) in sorted(report.collected.items()):
        lines.append(f"    {status:>9}  {student:<20} <- {source}")
    titles = {"refused": "NOT REPLACED (already graded)", "unmatched": "Unmatched files",
              "unsafe-id": "Unsafe student ids", "renamed": "Notebooks under another name",
              "not-collected": "Notebooks not collected", "duplicate": "Duplicates (older, "
              "dropped)", "late": "Late (per the LMS)", "replaced": "Replaced",
              "non-notebook": "Non-notebook files (not collected)"}
    for kind, title in titles.items():
        notes = report.of(kind)
        if notes:
            lines.append(f"{title} ({len(notes)}):")
            lines += [f"    {n.student + ': ' if n.student else ''}{n.file}: {n.message}"
                      for n in notes]
    if report.system_files:
        lines.append(f"Ignored {report.system_files} system files (__MACOSX, .git, ...).")
    if report.missing:
        lines.append(f"MISSING (on the roster, no submission) ({len(report.missing)}): "
                     + ", ".join(report.missing))
    if report.not_on_roster:
        lines.append(f"Not on the roster ({len(report.not_on_roster)}): "
                     + ", ".join(report.not_on_roster))
    return "\n".join(lines)
