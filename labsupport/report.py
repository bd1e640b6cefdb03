"""What a lab run leaves behind: figures (PDF and PNG, stable names) and the results file.

Both go to :func:`output_dir`: ``$LABSUPPORT_OUTPUT`` when set (``labsupport run`` sets it
to ``build/<lab>/``, where the results file is ``results.json``), else the current folder
(beside the notebook, where it is ``<lab>-results.json``, so that labs in one folder do not
overwrite each other's).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from .models import atomic_write_bytes
from .runtime import describe_device

OUTPUT_ENV = "LABSUPPORT_OUTPUT"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: The one figure style of the course.
STYLE = {
    "figure.figsize": (6.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
}


def output_dir() -> Path:
    """The folder a lab writes its figures and results to (created if needed)."""
    path = Path(os.environ.get(OUTPUT_ENV) or ".")
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_style() -> None:
    """Apply the course's figure style to matplotlib."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)


def _check_name(name: str) -> str:
    stem = name.removesuffix(".pdf").removesuffix(".png")
    if not _NAME.match(stem):
        raise ValueError(f"Figure name {name!r} must be a plain file stem such as "
                         "'free-at-comparison' (letters, digits, '-', '_', '.').")
    return stem


def save_figure(fig: Any, name: str, *, caption: str | None = None) -> list[Path]:
    """Save ``fig`` as ``<name>.pdf`` and ``<name>.png`` in :func:`output_dir`.

    ``caption`` (e.g. profile, dataset and device) is written under the axes so every
    figure states where its numbers came from. Returns the two paths.
    """
    stem = _check_name(name)
    if caption:
        # Below the figure's bottom edge (the tight bounding box grows to include it), so it
        # never overlaps an axis label.
        fig.text(0.01, 0.0, caption, fontsize=7, color="0.35", ha="left", va="top")
    out = output_dir()
    paths = [out / f"{stem}.pdf", out / f"{stem}.png"]
    for path in paths:
        # Deterministic PDF bytes: no creation date in the metadata.
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else None
        fig.savefig(path, bbox_inches="tight", metadata=metadata)
    return paths


def provenance(*, profile: str, dataset: str, seed: int,
               device: torch.device | None = None) -> dict[str, Any]:
    """Where numbers came from: profile, dataset, device and seed."""
    return {"profile": profile, "dataset": str(dataset), "seed": seed,
            "device": describe_device(device)}


def caption(*, profile: str, dataset: str, seed: int,
            device: torch.device | None = None) -> str:
    """A one-line provenance caption for figures and tables."""
    p = provenance(profile=profile, dataset=dataset, seed=seed, device=device)
    return f"profile {p['profile']} · dataset {p['dataset']} · {p['device']} · seed {p['seed']}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def results_name(lab: str) -> str:
    """The results file's name: ``results.json`` in a per-lab output folder
    (``$LABSUPPORT_OUTPUT``), ``<lab>-results.json`` beside the notebook."""
    if not _NAME.match(lab):
        raise ValueError(f"lab {lab!r} must be a plain name such as 'lab1'.")
    return "results.json" if os.environ.get(OUTPUT_ENV) else f"{lab}-results.json"


def write_results(results: dict[str, Any], *, lab: str, profile: str, dataset: str, seed: int,
                  device: torch.device | None = None) -> Path:
    """Write the lab's key numbers plus their provenance atomically; return the path.

    The file is :func:`results_name` in :func:`output_dir`: ``build/<lab>/results.json``
    under ``labsupport run``, ``<lab>-results.json`` beside the notebook otherwise.
    """
    payload = {"lab": lab, **provenance(profile=profile, dataset=dataset, seed=seed,
                                        device=device), "results": _jsonable(results)}
    path = output_dir() / results_name(lab)
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())
    return path


def save_table(rows: list[dict[str, Any]], name: str) -> Path:
    """Write ``rows`` (dicts with the same keys, in column order) as ``<name>.csv`` in
    :func:`output_dir`, atomically; the table a figure shows, as a file beside it."""
    import csv
    import io

    stem = _check_name(name.removesuffix(".csv"))
    if not rows or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"save_table({name!r}): give a non-empty list of dicts (one per row).")
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if list(row) != columns:
            raise ValueError(f"save_table({name!r}): every row needs the columns {columns}; "
                             f"got {list(row)}.")
        writer.writerow({k: _jsonable(v) for k, v in row.items()})
    path = output_dir() / f"{stem}.csv"
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def save_weights(model: torch.nn.Module, name: str) -> Path:
    """Save ``model``'s weights (its ``state_dict``, on the CPU) as
    ``trained-models/<name>.pt`` in :func:`output_dir`, atomically; load them back with
    ``model.load_state_dict(torch.load(path))``."""
    import io

    stem = _check_name(name.removesuffix(".pt"))
    folder = output_dir() / "trained-models"
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = folder / f"{stem}.pt"
    atomic_write_bytes(path, buffer.getvalue())
    return path
