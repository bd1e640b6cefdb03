"""Batch runs of the labs with papermill, and a one-screen summary of what they wrote.

papermill runs the *source* notebooks (instructor versions) with a chosen profile and dataset
into ``build/<lab>/``: the executed notebook, figures and ``results.json``. It is never part
of grading.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .labs import CourseError, Lab, kernel_environment, to_notebook


def run_lab(lab: Lab, *, profile: str, dataset: str, build_root: str | os.PathLike[str],
            seed: int | None = None, parameters: dict[str, Any] | None = None,
            progress_bar: bool = False) -> Path:
    """Execute the lab's *source* notebook with papermill in ``build/<lab>/``.

    The kernel runs with its working folder and ``LABSUPPORT_OUTPUT`` set to
    ``build/<lab>/``, so figures and ``results.json`` land there next to the executed
    notebook ``build/<lab>/<lab>.ipynb``. Returns that folder. Raises
    ``papermill.PapermillExecutionError`` when a cell fails.
    """
    import papermill

    from ..explore import BATCH_ENV
    from ..report import OUTPUT_ENV
    from ..runtime import PROFILES

    if profile not in (*PROFILES, "auto"):
        raise CourseError(f"Unknown profile {profile!r}: choose smoke, cpu, full or auto.")
    out = Path(build_root).resolve() / lab.name
    if out.exists():  # a failed run must never leave the previous run's results behind
        shutil.rmtree(out)
    out.mkdir(parents=True)
    params = {"profile": profile, "dataset": str(dataset), **(parameters or {})}
    if seed is not None:
        params["seed"] = seed
    kernel_environment()
    # Outputs land in build/<lab>/; exploration widgets degrade to static figures.
    settings = {OUTPUT_ENV: str(out), BATCH_ENV: "1"}
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        papermill.execute_notebook(
            to_notebook(lab), str(out / f"{lab.name}.ipynb"), parameters=params,
            kernel_name="python3", cwd=str(out), progress_bar=progress_bar,
        )
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return out


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        shown = ", ".join(_format_value(v) for v in value[:4])
        return f"[{shown}{', ...' if len(value) > 4 else ''}]"
    return str(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def _leaves(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalar leaves of a nested dict, keyed by their dotted path (lists are skipped)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out |= _leaves(item, f"{prefix}{key}.")
        elif _scalar(item):
            out[f"{prefix}{key}"] = item
    return out


def results_table(results: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """One table from a lab's ``results``: (rows, settings).

    Every entry that maps names to dicts (models, attacks, ...) gives rows (its names) and
    columns (the scalar leaves of those dicts, dotted paths); every entry that maps some of
    those row names to numbers gives one more column, named by the entry. The rest (scalars,
    lists, other dicts) are settings."""
    rows: dict[str, dict[str, Any]] = {}
    settings: dict[str, Any] = {}
    pending = []
    for key, value in results.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            for name, sub in value.items():
                leaves = _leaves(sub)  # keys that are not names (radii, ...) get the entry's
                rows.setdefault(str(name), {}).update(
                    {(k if k[:1].isalpha() else f"{key} {k}"): v for k, v in leaves.items()})
        else:
            pending.append((key, value))
    for key, value in pending:
        if (isinstance(value, dict) and value and rows and set(map(str, value)) <= set(rows)
                and all(_scalar(v) for v in value.values())):
            for name, item in value.items():
                rows[str(name)][key] = item
        else:
            settings[key] = value
    return rows, settings


def format_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Text lines of a table with a row per name; transposed when it has more columns than
    rows, so a wide table stays on one screen."""
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    names = list(rows)
    cells = {(n, c): _format_value(rows[n][c]) if c in rows[n] else "-"
             for n in names for c in columns}
    if len(columns) > len(names):  # quantities down, names across
        header, lines = ["", *names], [[c, *(cells[(n, c)] for n in names)] for c in columns]
    else:
        header, lines = ["", *columns], [[n, *(cells[(n, c)] for c in columns)] for n in names]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]

    def render(line: list[str]) -> str:
        first = f"{line[0]:<{widths[0]}}"
        return " | ".join([first, *(f"{v:>{w}}" for v, w in zip(line[1:], widths[1:],
                                                                 strict=True))]).rstrip()

    text = [render(header), "-+-".join("-" * w for w in widths)]
    return text + [render(line) for line in lines]


def summarize(build_root: str | os.PathLike[str], labs: list[Lab]) -> str:
    """One table per lab, from its ``build/<lab>/results.json``, with its provenance."""
    lines = []
    for lab in labs:
        path = Path(build_root) / lab.name / "results.json"
        if not path.is_file():
            lines.append(f"{lab.name}: no results.json (did the run fail?)")
            continue
        payload = json.loads(path.read_text())
        lines.append(f"== {lab.name} ({lab.stem}) · profile {payload.get('profile')} · dataset "
                     f"{payload.get('dataset')} · {payload.get('device')} · seed "
                     f"{payload.get('seed')}")
        results = payload.get("results", {})
        rows, settings = results_table(results if isinstance(results, dict)
                                       else {"results": results})
        if rows:
            lines += ["    " + line for line in format_table(rows)]
        if settings:
            lines.append("    settings: " + "; ".join(f"{k} {_format_value(v)}"
                                                    for k, v in settings.items()))
        figures = sorted(p.name for p in path.parent.glob("*.png"))
        if figures:
            lines.append(f"    figures: {', '.join(figures)}")
        lines.append("")
    return "\n".join(lines).rstrip()
