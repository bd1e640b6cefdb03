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
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        shown = ", ".join(_format_value(v) for v in value[:4])
        return f"[{shown}{', ...' if len(value) > 4 else ''}]"
    return str(value)


def summarize(build_root: str | os.PathLike[str], labs: list[Lab]) -> str:
    """A one-screen summary of each lab's ``build/<lab>/results.json``."""
    lines = []
    for lab in labs:
        path = Path(build_root) / lab.name / "results.json"
        if not path.is_file():
            lines.append(f"{lab.name}: no results.json (did the run fail?)")
            continue
        payload = json.loads(path.read_text())
        lines.append(f"{lab.name} ({lab.stem}) · profile {payload.get('profile')} · dataset "
                     f"{payload.get('dataset')} · {payload.get('device')} · seed "
                     f"{payload.get('seed')}")
        results = payload.get("results", {})
        rows = results.items() if isinstance(results, dict) else [("results", results)]
        for key, value in rows:
            if isinstance(value, dict) and value and all(isinstance(v, dict)
                                                         for v in value.values()):
                lines.append(f"    {key}:")
                for name, sub in value.items():
                    lines.append(f"        {name}: {_format_value(sub)[1:-1]}")
            else:
                lines.append(f"    {key}: {_format_value(value)}")
        figures = sorted(p.name for p in path.parent.glob("*.png"))
        if figures:
            lines.append(f"    figures: {', '.join(figures)}")
    return "\n".join(lines)
