"""Autograding cost: seconds per submission, per lab, through nbgrader's API.

For each lab (or those named), releases it into a scratch course root, writes ``--students``
copies of the perfect submission (the release with the instructor's answers filled in, as
in the course tests), autogrades them in one nbgrader call and prints the wall time per
submission, against the goal: a submission autogrades in <= 60 s on a 2-core CPU (the
course config's per-cell timeout, 120 s, is the backstop, not the budget).

    python benchmarks/autograde.py [lab1 lab2 ...] [--students 2]
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

from labsupport.instructor import cells, demo, grading
from labsupport.instructor.labs import discover_labs, select_labs
from labsupport.runtime import describe_device

REPO = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labs", nargs="*", help="labs to measure (default: all)")
    parser.add_argument("--students", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("LABSUPPORT_PROGRESS", "0")
    # nbgrader's INFO log and its gradebook's SQLAlchemy warnings are noise here.
    logging.getLogger("traitlets").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="nbgrader")
    labs = select_labs(discover_labs(REPO / "notebooks"), args.labs)
    print(f"autograde benchmark, {time.strftime('%Y-%m-%d')}: {args.students} perfect "
          f"submissions a lab, {describe_device()}, {os.cpu_count()} CPUs")
    for lab in labs:
        with tempfile.TemporaryDirectory(prefix=f"bench-{lab.name}-") as tmp:
            root = Path(tmp)
            shutil.copy(REPO / "grading" / grading.CONFIG_FILE, root / grading.CONFIG_FILE)
            config = grading.load_config(root)
            grading.release([lab], root, config)
            source = nbformat.read(root / "source" / lab.name / f"{lab.name}.ipynb", 4)
            release = nbformat.read(root / "release" / lab.name / f"{lab.name}.ipynb", 4)
            good = demo.perfect(source, release)
            for i in range(args.students):
                demo.write_notebook(
                    good, root / "submitted" / f"student{i}" / lab.name / f"{lab.name}.ipynb")
            start = time.perf_counter()
            result = grading.autograde(root, lab.name, config=config)
            seconds = (time.perf_counter() - start) / args.students
            rows = grading.cell_grades(root, config)
            tests = cells.test_cells(release)
            full = all(r.score == r.max_score for r in rows if r.cell in tests)
            print(f"  {lab.name}: {seconds:.1f} s per submission "
                  f"(ratio to the {GOAL_SECONDS:.0f} s goal: {seconds / GOAL_SECONDS:.2f}); "
                  f"nbgrader {'ok' if result['success'] else 'FAILED'}, "
                  f"{'full marks' if full else 'NOT full marks'}")


if __name__ == "__main__":
    main()
