"""``labsupport``: the instructor's commands behind the Makefile's verbs.

    labsupport release [LAB ...]                 notebooks/ -> grading/source -> grading/release
    labsupport validate [LAB ...]                source passes every test, release passes none
    labsupport validate NOTEBOOK.ipynb ...       a student's notebook: which visible tests pass
    labsupport collect LAB DOWNLOAD [--roster F] an LMS download -> grading/submitted/
    labsupport grade [LAB ...] [--jobs N]        autograde grading/submitted (sandboxed), write
                                                 grades.csv and flags.csv; --shard i/n, --merge
    labsupport feedback [LAB ...]                grading/feedback/<student>/<lab>/<lab>.html
    labsupport run LAB --profile P --dataset D   papermill one lab into build/<lab>/
    labsupport course --profile P --dataset D    run every lab, print a summary of the results
    labsupport assets build [NAME ...] --all     pre-build the models the labs hand out
    labsupport student-bundle [--out DIR]        what students receive: build/student/

Every command works from the course checkout (the folder with ``notebooks/``).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from .labs import CourseError, discover_labs, find_root, kernel_environment, select_labs

PROFILE_CHOICES = ("auto", "smoke", "cpu", "full")


def _labs(args: argparse.Namespace):
    root = find_root()
    return root, select_labs(discover_labs(root / "notebooks"), getattr(args, "labs", None))


def cmd_release(args: argparse.Namespace) -> int:
    from .colab import bundle_url, is_placeholder
    from .grading import release

    root, labs = _labs(args)
    for path in release(labs, root / "grading"):
        print(f"released {path.relative_to(root)}")
    url = bundle_url(root)
    if is_placeholder(url):
        print(f"note: the Colab cell installs from the placeholder {url}; set bundle_url in "
              "pyproject.toml ([tool.labsupport]) or LABSUPPORT_BUNDLE_URL.")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    notebooks = [name for name in args.labs if name.endswith(".ipynb")]
    if notebooks:
        return _self_check(notebooks, args.labs, args.timeout)
    from .grading import load_config, release, validate

    root, labs = _labs(args)
    grading = root / "grading"
    config = load_config(grading)
    release(labs, grading, config)
    status = 0
    for lab in labs:
        with tempfile.TemporaryDirectory(prefix=f"validate-{lab.name}-") as tmp:
            for kind, invert in (("source", False), ("release", True)):
                copy = Path(tmp) / kind / f"{lab.name}.ipynb"
                copy.parent.mkdir()
                shutil.copy(grading / kind / lab.name / f"{lab.name}.ipynb", copy)
                result = validate(copy, config=config, invert=invert, ignore_checksums=True)
                expect = "passes none of its tests" if invert else "passes all its tests"
                if result:
                    status = 1
                    print(f"{lab.name} {kind}: FAILS to be a notebook that {expect}:")
                    for key, cells in result.items():
                        for cell in cells:
                            first = cell.get("source", "").splitlines()[:1]
                            print(f"    {key}: {first[0] if first else ''}")
                            if cell.get("raw_error"):
                                print("        " + cell["raw_error"].strip().splitlines()[-1])
                else:
                    print(f"{lab.name} {kind}: ok ({expect})")
    return status


def _self_check(notebooks: list[str], names: list[str], timeout: int) -> int:
    """``validate NOTEBOOK.ipynb``: the student's self-check (:mod:`labsupport.selfcheck`)."""
    from ..selfcheck import main as self_check

    if len(notebooks) != len(names):
        raise CourseError("Give either lab names (validate the course's labs) or notebook "
                          "files (check a student's notebook), not both.")
    return self_check([*notebooks, "--timeout", str(timeout)])


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect import CollectError, collect, format_report, read_roster

    root, labs = _labs(argparse.Namespace(labs=[args.lab]))
    try:
        roster = read_roster(args.roster) if args.roster else None
        report = collect(root / "grading", labs[0].name, args.download, roster=roster,
                         force=args.force)
    except CollectError as error:
        raise CourseError(str(error)) from error
    print(format_report(report))
    if report.needs_attention:
        print("Some files need your attention (above); the others were collected.",
              file=sys.stderr)
        return 1
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from .feedback import generate

    root, labs = _labs(args)
    grading_root = root / DEMO_ROOT if args.demo else root / "grading"
    report = generate(grading_root, [lab.name for lab in labs], students=args.student or None)
    where = grading_root.relative_to(root)
    for path in report.files:
        print(f"wrote {path.relative_to(root)}")
    for student, lab, reason in report.skipped:
        print(f"no feedback for {student} {lab}: {reason} (run `labsupport grade` first)")
    print(f"{len(report.files)} feedback files in {where}/feedback/, each checked for "
          "hidden-test text (none found). Hand each student their own file.")
    return 0


DEMO_ROOT = Path("build") / "demo-grading"


def demo_course(root: Path, labs: list) -> Path:
    """A scratch course root under ``build/`` with the demo submissions of ``labs`` (the real
    ``grading/`` folder and its gradebook are never touched)."""
    from .demo import demo_submissions
    from .grading import CONFIG_FILE, release

    scratch = root / DEMO_ROOT
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    shutil.copy(root / "grading" / CONFIG_FILE, scratch / CONFIG_FILE)
    release(labs, scratch)
    for lab in labs:
        demo_submissions(scratch, lab.name, root / "tests" / "planted" / f"{lab.stem}.py")
    return scratch


def cmd_grade(args: argparse.Namespace) -> int:
    import os

    from .grading import grade_all, merge_results, submitted_students

    root, labs = _labs(args)
    grading_root = root / "grading"
    if args.merge:
        report = merge_results(grading_root, args.merge)
        return _print_report(report, root, grading_root)
    demo = args.demo or not any(submitted_students(grading_root, lab.name) for lab in labs)
    if demo:
        if not args.demo:
            print("No submissions in grading/submitted/: grading the demo (fixture) "
                  "submissions, students demo-*, in a scratch course root "
                  f"({DEMO_ROOT}/; grading/ is not touched).")
        grading_root = demo_course(root, labs)
    jobs = args.jobs or os.cpu_count() or 1
    out = None
    if args.shard:
        index, _, count = args.shard.partition("/")
        out = grading_root / "shards" / f"shard-{index}-of-{count}"

    def progress(result) -> None:
        state = "graded" if result.graded else "FAILED"
        print(f"  {state}: {result.lab} {result.student}", flush=True)

    report = grade_all(grading_root, labs, jobs=jobs, force=args.force,
                       release_first=not (args.no_release or demo or args.shard), shard_spec=args.shard,
                       out=out, progress=progress, timeout=args.timeout)
    if args.shard:
        print(f"shard {args.shard}: {len(report.graded)} graded, {len(report.failed)} failed; "
              f"results in {report.grades_csv}. Merge all shards with "
              f"`labsupport grade --merge grading/shards/*`.")
        return 1 if report.failed else 0
    return _print_report(report, root, grading_root)


def _print_report(report, root: Path, grading_root: Path) -> int:
    totals: dict[tuple[str, str], list[float]] = {}
    for row in report.grades:
        # [autograded score, autograded max, points to grade by hand]
        total = totals.setdefault((row.student, row.lab), [0.0, 0.0, 0.0])
        if row.kind == "manual":
            total[2] += row.max_score
        else:
            total[0] += row.score or 0.0
            total[1] += row.max_score
    for (student, lab), (score, max_score, manual) in sorted(totals.items()):
        pending = f" (+ {manual:g} points graded by hand)" if manual else ""
        print(f"{student:>20} {lab:>6}: {score:g} / {max_score:g}{pending}")
    where = grading_root.relative_to(root) if grading_root.is_relative_to(root) else grading_root
    print(f"isolation: {report.mode}; graded {len(report.graded)}, unchanged (skipped) "
          f"{len(report.skipped)}, failed {len(report.failed)}")
    print(f"wrote {where}/grades.csv ({len(report.grades)} cells) and {where}/flags.csv")
    if report.flags:
        print(f"FLAGGED ({len(report.flags)}):")
        for flag in report.flags:
            print(f"    {flag.student} {flag.lab} {flag.cell or '-'}: {flag.problem}")
    if report.failed:
        print(f"could not grade: {', '.join(report.failed)} (logs in {where}/logs/)",
              file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runs import run_lab

    root, labs = _labs(argparse.Namespace(labs=[args.lab]))
    out = run_lab(labs[0], profile=args.profile, dataset=args.dataset,
                  build_root=root / "build", seed=args.seed, progress_bar=True)
    print(f"{labs[0].name}: executed notebook, figures and results.json in "
          f"{out.relative_to(root)}/")
    return 0


def cmd_course(args: argparse.Namespace) -> int:
    from papermill.exceptions import PapermillExecutionError

    from .runs import run_lab, summarize

    root, labs = _labs(args)
    failed = []
    for lab in labs:
        print(f"== {lab.name} ({lab.stem}), profile {args.profile}, dataset {args.dataset}",
              flush=True)
        try:
            run_lab(lab, profile=args.profile, dataset=args.dataset, build_root=root / "build",
                    seed=args.seed, progress_bar=True)
        except PapermillExecutionError as error:
            failed.append(lab.name)
            print(f"{lab.name} FAILED in cell {error.exec_count}: {error.ename}: "
                  f"{error.evalue}\n    see build/{lab.name}/{lab.name}.ipynb", file=sys.stderr)
    print()
    print(summarize(root / "build", labs))
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    if args.action != "build":
        raise CourseError(f"Unknown assets action {args.action!r}; use `labsupport assets build`.")
    if not args.all and not args.names:
        raise CourseError("Name the assets to build, or pass --all.")
    from .. import assets  # written alongside the labs that hand out pre-trained models

    assets.build_assets(None if args.all else args.names, dataset=args.dataset,
                        profile=args.profile)
    return 0


def cmd_student_bundle(args: argparse.Namespace) -> int:
    from .bundle import build_bundle
    from .colab import is_placeholder

    root, labs = _labs(args)
    out = Path(args.out).resolve() if args.out else root / "build" / "student"
    bundle = build_bundle(out, root=root, labs=labs, profile=args.profile, dataset=args.dataset)
    where = out.relative_to(root) if out.is_relative_to(root) else out
    print(f"wrote {where}/ ({len(bundle.files())} files, {bundle.size() / 1e6:.1f} MB):")
    print(f"    {bundle.wheel.name}  sha256 {bundle.wheel.sha256}")
    print(f"    notebooks/: {', '.join(p.name for p in bundle.notebooks)}")
    print(f"    assets/: {len(bundle.assets)} pre-built models ({args.dataset}, {args.profile})")
    print(f"Host {where}/ at {bundle.url}/ : the notebooks' Colab cell installs the wheel from "
          "there, pinned by its sha256.")
    if is_placeholder(bundle.url):
        print("note: that is the placeholder URL; set bundle_url in pyproject.toml "
              "([tool.labsupport]) or LABSUPPORT_BUNDLE_URL, and rebuild.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labsupport", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="show nbgrader's log")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("release", help="build grading/source and grading/release (forced)")
    p.add_argument("labs", nargs="*", help="labs to release (default: all)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("validate", help="check the source passes its tests, the release none; "
                                        "or, given .ipynb files, which visible tests a "
                                        "student's notebook passes")
    p.add_argument("labs", nargs="*", help="labs to validate (default: all), or a student's "
                                           "notebook files (NAME.ipynb)")
    p.add_argument("--timeout", type=int, default=120,
                   help="seconds a cell may run when checking a student's notebook")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("collect", help="import an LMS download (Canvas, Moodle, GitHub "
                                       "Classroom) into grading/submitted/")
    p.add_argument("lab", help="the lab the download is for (lab1, 1, or the source's stem)")
    p.add_argument("download", help="the zip (or folder) the LMS exported")
    p.add_argument("--roster", default=None,
                   help="CSV of student ids (a column student_id or id, else the first): "
                        "report students with no submission")
    p.add_argument("--force", action="store_true",
                   help="replace submissions that were already graded (the old ones are "
                        "backed up in grading/backups/)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("feedback", help="one HTML page per student and lab, hidden tests "
                                        "redacted, in grading/feedback/")
    p.add_argument("labs", nargs="*", help="labs (default: all)")
    p.add_argument("--student", action="append", default=None,
                   help="only this student (repeatable)")
    p.add_argument("--demo", action="store_true",
                   help=f"for the demo grading (`grade --demo`) in {DEMO_ROOT}/")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("grade", help="autograde grading/submitted; write grading/grades.csv")
    p.add_argument("labs", nargs="*", help="labs to grade (default: all)")
    p.add_argument("--no-release", action="store_true",
                   help="grade against the existing release instead of rebuilding it first")
    p.add_argument("--demo", action="store_true",
                   help="grade the demo submissions (perfect, untouched, planted bugs, tampered; "
                        "students demo-*) in a scratch course root under build/; the default "
                        "when grading/submitted/ is empty")
    p.add_argument("--jobs", type=int, default=None,
                   help="submissions graded at once (default: the number of CPUs)")
    p.add_argument("--force", action="store_true",
                   help="regrade every submission, not only new or changed ones (manual "
                        "grades are kept either way)")
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="grade only shard I of N (every N-th submission); results go to "
                        "grading/shards/ for --merge")
    p.add_argument("--merge", nargs="+", metavar="FOLDER", default=None,
                   help="merge shard results (grading/shards/*) into the gradebook")
    p.add_argument("--timeout", type=int, default=None,
                   help="seconds a cell may run (default: grading/nbgrader_config.py)")
    p.set_defaults(func=cmd_grade)

    def run_options(p: argparse.ArgumentParser, profile: str) -> None:
        p.add_argument("--profile", default=profile, choices=PROFILE_CHOICES)
        p.add_argument("--dataset", default="auto",
                       help="auto, synthetic, cifar4 or a path to a dataset-full.npz")
        p.add_argument("--seed", type=int, default=None, help="override the lab's seed")

    p = sub.add_parser("run", help="run one lab's source notebook with papermill")
    p.add_argument("lab", help="lab1, 1, or the source's stem")
    run_options(p, "cpu")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("course", help="run every lab, then summarise their results")
    p.add_argument("labs", nargs="*", help="labs to run (default: all)")
    run_options(p, "cpu")
    p.set_defaults(func=cmd_course)

    p = sub.add_parser("assets", help="build the pre-trained models the labs hand out")
    p.add_argument("action", choices=("build",))
    p.add_argument("names", nargs="*", help="assets to build")
    p.add_argument("--all", action="store_true", help="build every asset")
    run_options(p, "auto")
    p.set_defaults(func=cmd_assets)

    p = sub.add_parser("student-bundle", help="write build/student/: release notebooks, the "
                                              "student wheel, pre-built models, SHA256SUMS")
    p.add_argument("labs", nargs="*", help="labs to include (default: all)")
    p.add_argument("--out", default=None,
                   help="the bundle's folder, replaced (default: build/student/ of the course)")
    p.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "full"),
                   help="profile of the pre-built models (default: cpu)")
    p.add_argument("--dataset", default="synthetic",
                   help="dataset of the pre-built models: synthetic (default), cifar4 or a "
                        "path to a dataset-full.npz")
    p.set_defaults(func=cmd_student_bundle)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labsupport`` command."""
    args = build_parser().parse_args(argv)
    kernel_environment()
    if not args.verbose:  # nbgrader's INFO log drowns the summary; warnings still show
        logging.getLogger("traitlets").setLevel(logging.WARNING)
        # SQLAlchemy's autoflush warnings from inside nbgrader's gradebook: not actionable.
        warnings.filterwarnings("ignore", module="nbgrader")
    try:
        return int(args.func(args) or 0)
    except CourseError as error:
        print(f"labsupport: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from .grading import GradingError

        if isinstance(error, GradingError):
            print(f"labsupport: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
