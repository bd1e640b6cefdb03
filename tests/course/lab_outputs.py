"""Lab-specific checks of a `smoke` run's outputs (called by test_run.py after the generic
ones): what a lab promises to save beyond results.json and figures.

``CHECKS[lab name](results, out)`` gets the run's ``results.json`` payload and its folder.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _csv(path: Path) -> list[dict[str, str]]:
    assert path.is_file(), f"{path.name} was not saved"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert rows, f"{path.name} is empty"
    return rows


def lab1(results: dict[str, Any], out: Path) -> None:
    table = _csv(out / "free-adversarial-training.csv")
    assert [row["model"] for row in table] == list(results["results"]["models"])
    weights = sorted(p.name for p in (out / "trained-models").glob("*.pt"))
    assert weights == ["lab1-free-m4.pt", "lab1-free-m7.pt", "lab1-standard.pt"], weights
    assert (out / "explore-eps.png").is_file(), "the exploration view's static figure"


def lab2(results: dict[str, Any], out: Path) -> None:
    models = list(results["results"]["certified_accuracy"])
    # Salman et al.'s three denoisers, named as in the paper.
    assert {"+ MSE denoiser", "+ Stab denoiser", "+ Stab+MSE denoiser"} <= set(models), models
    assert [row["model"] for row in _csv(out / "certified-accuracy.csv")] == models
    assert (out / "explore-radius.png").is_file(), "the exploration view's static figure"


def lab5(results: dict[str, Any], out: Path) -> None:
    r = results["results"]
    splits = r["splits"]  # the threshold is chosen on clean images held out from ANP's
    assert splits["mask"][1] <= splits["validation"][0] < splits["validation"][1] <= splits["train"][0]
    for name, attack in r["attacks"].items():
        assert 1.0 in [row["alpha"] for row in attack["anp"]["by_alpha"]], "the alpha sweep has 1"
        rows = _csv(out / f"anp-neurons-{name.lower()}.csv")
        assert {"layer", "index", "mask", "clean_accuracy", "attack_success"} <= set(rows[0])
        masks = [float(row["mask"]) for row in rows[1:]]
        assert masks == sorted(masks), "neurons pruned smallest mask first"
    assert (out / "explore-anp.png").is_file(), "the exploration view's static figure"


def lab6(results: dict[str, Any], out: Path) -> None:
    r = results["results"]
    table = _csv(out / "evasion-attacks.csv")
    attacks = ["FGSM", "I-FGSM", "PGD", "DeepFool", "HopSkipJump", "One-Pixel"]
    assert [row["attack"] for row in table] == attacks * 2, [row["attack"] for row in table]
    assert {row["dataset"] for row in table} == {r["digits_dataset"], r["course_dataset"]}
    for name in ("digits", "course"):
        assert list(r["attacks"][name]) == attacks
        assert all(row["queries_per_image"] > 0 for row in r["attacks"][name].values())
    assert set(r["targeted_fgsm_digits"]) == {"0.1", "0.3", "0.5"}
    assert len(r["comparisons"]) == 6 and all(
        0 <= c["p_value"] <= 1 for c in r["comparisons"].values())
    for figure in ("evasion-attacks-comparison", "evasion-attacks-examples", "explore-evasion"):
        assert (out / f"{figure}.png").is_file() and (out / f"{figure}.pdf").is_file(), figure


CHECKS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "lab1": lab1, "lab2": lab2, "lab5": lab5, "lab6": lab6}
