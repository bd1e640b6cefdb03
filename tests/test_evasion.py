"""Lab 6's fixtures and references (labsupport.checks.evasion), the withheld FGSM, and the
lab's own answers (the notebook's solution cells) on the fixtures: fast unit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from labsupport.answers import WriteYourOwn
from labsupport.attacks import fgsm as package_fgsm
from labsupport.checks import evasion as fx

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lab6_evasion_attacks.py"
TASKS = ("fgsm", "iterative_fgsm", "deepfool", "one_pixel", "counting_model", "compare")
CELL = "/tmp/ipykernel_4242/{}.py"  # how ipykernel names the code of a notebook cell


def lab_answers() -> dict:
    """The notebook's setup imports and solution cells, executed as notebook cells."""
    import jupytext

    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source
             for c in jupytext.read(NOTEBOOK).cells}
    setup = cells["setup"]
    imports = setup[: setup.index("PROFILE = ")]
    namespace: dict = {}
    for number, source in enumerate([imports, cells["libraries"], *(cells[t] for t in TASKS)]):
        exec(compile(source, CELL.format(2000 + number), "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def lab() -> dict:
    return lab_answers()


# ---------------------------------------------------------------------- the lab's answers


def test_the_lab_answers_pass_every_check(lab):
    fx.check_fgsm(lab["fgsm"])
    fx.check_iterative_fgsm(lab["iterative_fgsm"])
    fx.check_deepfool(lab["deepfool"])
    fx.check_one_pixel(lab["one_pixel"])
    fx.check_counting_model(lab["CountingModel"])
    fx.check_compare(lab["compare"])


def test_batched_deepfool_is_one_pass_per_iteration(lab):
    model = fx.mlp(10, hidden=32, seed=3)
    x = fx.images(64, seed=4)
    counter = fx.QueryCounter(model)
    _, iterations = lab["deepfool"](counter, x, 10)
    # One forward pass per iteration (all active samples at once), plus the ranking pass.
    assert counter.calls <= int(iterations.max()) + 2
    assert counter.images < 64 * (int(iterations.max()) + 2)


# ---------------------------------------------------------------------- references


def test_deepfool_reference_is_exact_on_an_affine_binary_classifier():
    model = fx.linear(2, seed=1).double()
    x = fx.images(6, seed=2).double()
    w, b = model[1].weight.detach(), model[1].bias.detach()
    adv, iterations = fx.deepfool_reference(model, x, 2, overshoot=0.02)
    assert iterations.tolist() == [1] * 6
    logits = x.flatten(1) @ w.T + b
    label = logits.argmax(1)
    other = 1 - label
    normal = w[other] - w[label]  # (N, D): w_k of the paper
    f = (logits.gather(1, other[:, None]) - logits.gather(1, label[:, None]))[:, 0]
    r = (f.abs() / normal.norm(dim=1) + 1e-4)[:, None] * normal / normal.norm(dim=1,
                                                                              keepdim=True)
    expected = (x.flatten(1) + 1.02 * r).clamp(0, 1).view_as(x)
    assert torch.allclose(adv, expected, atol=1e-12)
    assert (model(adv).argmax(1) != label).all()


def test_ifgsm_reference_stops_and_projects():
    model = fx.mlp(seed=5).double()
    x = fx.images(8, seed=6).double()
    y = fx.labelled(model, x)
    adv, steps = fx.ifgsm_reference(model, x, y, 0.05, 0.01, 20)
    assert (adv - x).abs().max() <= 0.05 + 1e-12
    fooled = model(adv).argmax(1) != y
    # A fooled sample stopped right after the step that fooled it; the others ran out.
    assert (steps[~fooled] == 20).all() and (steps[fooled] <= 20).all()
    y_wrong = (y + 1) % 4
    _, none = fx.ifgsm_reference(model, x, y_wrong, 0.05, 0.01, 20)
    assert (none[fx.labelled(model, x) != y_wrong] == 0).all()


def test_compare_reference_matches_statsmodels_mcnemar():
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = fx.outcomes(150, accuracy_a=0.7, accuracy_b=0.5, agreement=0.6, seed=9)
    ref = fx.compare_reference(a, b)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert ref["p_value"] == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-12)
    assert ref["b"] == table[0][1] and ref["c"] == table[1][0]
    assert ref["ci_low"] < ref["difference"] < ref["ci_high"]
    assert (ref["ci_high"] - ref["difference"]) == pytest.approx(
        1.959964 * np.sqrt((a.mean() * (1 - a.mean()) + b.mean() * (1 - b.mean())) / 150),
        rel=1e-6)


def test_pixel_model_and_query_counter():
    model, x, y = fx.pixel_data(2, shape=(1, 5, 9), row=3, col=7)
    counter = fx.QueryCounter(model)
    assert (counter(x).argmax(1) == y).all()
    bright = x.clone()
    bright[:, :, 3, 7] = 0.9
    assert (counter(bright).argmax(1) == 1).all()
    bright[:, :, 3, 6] = 0.9
    other = x.clone()
    other[:, :, 2, 7] = 1.0  # another pixel does nothing
    assert (counter(other).argmax(1) == 0).all()
    assert counter.calls == 3 and counter.images == 6
    dark = fx.PixelModel(0, 0, threshold=0.3, dark=True)
    assert dark(torch.ones(1, 3, 2, 2)).argmax(1).item() == 0
    assert dark(torch.zeros(1, 3, 2, 2)).argmax(1).item() == 1


# ---------------------------------------------------------------------- withheld


def test_package_fgsm_is_withheld_inside_a_notebook_function():
    model, x = fx.mlp(), fx.images(3)
    y = fx.labelled(model, x)
    namespace = {"package_fgsm": package_fgsm, "model": model, "x": x, "y": y}
    source = "def fgsm(model, x, y, eps):\n    return package_fgsm(model, x, y, eps=eps)\n"
    exec(compile(source, CELL.format(3000), "exec"), namespace)
    with pytest.raises(WriteYourOwn, match="Lab 6, task fgsm"):
        namespace["fgsm"](model, x, y, 0.1)
    # At a cell's top level (as the test cells use it), it works.
    exec(compile("out = package_fgsm(model, x, y, eps=0.1)", CELL.format(3001), "exec"),
         namespace)
    assert namespace["out"].shape == x.shape
    for reference in (fx.ifgsm_reference, fx.deepfool_reference, fx.compare_reference):
        assert hasattr(reference, "__withheld_task__")
