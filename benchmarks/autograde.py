"""Grading throughput: submissions per hour at 1 and 2 jobs, and the cost over plain execution.

For each lab (or those named), releases it into a scratch course root, writes the demo
submissions (the instructor's answers, the untouched release, the planted bugs, tampered
cells), grades them all with ``--jobs 1`` and again with ``--jobs 2`` (sandboxed, as
``labsupport grade`` does) and prints submissions per hour for each, whether both runs gave
identical ``grades.csv``, and the ratio of the sandboxed seconds per submission to the
floor: executing the same perfect notebook once with nbclient, no grading around it.

    python benchmarks/autograde.py [lab1 lab2 ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import nbformat

from labsupport.instructor import demo, grading, sandbox
from labsupport.instructor.labs import discover_labs, kernel_environment, select_labs
from labsupport.runtime import describe_device

REPO = Path(__file__).resolve().parent.parent


def plain_execution(notebook, folder: Path) -> float:
    """Seconds to execute ``notebook`` once with nbclient, as the autograder's smoke run."""
    from nbclient import NotebookClient

    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        start = time.perf_counter()
        NotebookClient(notebook, timeout=600, allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
        return time.perf_counter() - start
    finally:
        del os.environ["NBGRADER_EXECUTION"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labs", nargs="*", help="labs to measure (default: all)")
    args = parser.parse_args()
    os.environ.setdefault("LABSUPPORT_PROGRESS", "0")
    logging.getLogger("traitlets").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="nbgrader")
    kernel_environment()
    labs = select_labs(discover_labs(REPO / "notebooks"), args.labs)
    print(f"grading benchmark, {time.strftime('%Y-%m-%d')}: demo submissions, smoke profile, "
          f"synthetic data, {describe_device()}, {os.cpu_count()} CPUs, isolation "
          f"{sandbox.mode()}")
    for lab in labs:
        with tempfile.TemporaryDirectory(prefix=f"bench-{lab.name}-") as tmp:
            root = Path(tmp)
            shutil.copy(REPO / "grading" / grading.CONFIG_FILE, root / grading.CONFIG_FILE)
            grading.release([lab], root)
            students = demo.demo_submissions(root, lab.name,
                                             REPO / "tests" / "planted" / f"{lab.stem}.py")
            timings, csvs = {}, {}
            for jobs in (1, 2):
                start = time.perf_counter()
                report = grading.grade_all(root, [lab.name], jobs=jobs, force=True,
                                           release_first=False)
                timings[jobs] = time.perf_counter() - start
                csvs[jobs] = report.grades_csv.read_text()
                assert not report.failed, report.failed
            source = nbformat.read(root / "source" / lab.name / f"{lab.name}.ipynb", 4)
            release = nbformat.read(root / "release" / lab.name / f"{lab.name}.ipynb", 4)
            (root / "plain").mkdir()
            floor = plain_execution(demo.perfect(source, release), root / "plain")
            n = len(students)
            per = {jobs: seconds / n for jobs, seconds in timings.items()}
            print(f"  {lab.name}: {n} submissions; jobs 1: {per[1]:.1f} s each, "
                  f"{3600 / per[1]:.0f}/hour; jobs 2: {per[2]:.1f} s each, "
                  f"{3600 / per[2]:.0f}/hour (speed-up {per[1] / per[2]:.2f}); "
                  f"grades identical: {csvs[1] == csvs[2]}; plain execution {floor:.1f} s, "
                  f"sandboxed grading / plain = {per[1] / floor:.2f}")


if __name__ == "__main__":
    main()
