"""Lab 2's science, on the offline dataset at the `cpu` asset size: what Cohen et al. show.

The lab's own solution (the instructor notebook's solution cells, executed here; the package
holds no lab solutions) certifies the sigma = 0.05 and sigma = 0.20 noise-trained assets on
the same test images. Expected: sigma = 0.20 certifies larger radii, sigma = 0.05 has the
base classifier that votes more consistently (larger pA) and a certified accuracy at radius 0
at least as high, and every certified-accuracy curve is non-increasing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm

from labsupport.assets import load_asset
from labsupport.instructor.labs import solution_namespace

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lab2_randomized_smoothing.py"
SOLUTION_CELLS = ("smooth_class", "sample_noise", "predict", "certify", "certified_accuracy")
IMAGES, N0, N, ALPHA, BATCH = 50, 16, 128, 0.001, 144


def lab_solution() -> dict:
    """The notebook's imports and solution cells, executed: returns their namespace."""
    return solution_namespace(NOTEBOOK, SOLUTION_CELLS)


@pytest.mark.slow
def test_larger_sigma_certifies_larger_radii_at_lower_accuracy(synthetic, quiet):
    lab = lab_solution()
    Smooth, certified_accuracy = lab["Smooth"], lab["certified_accuracy"]
    x, y = synthetic.x_test[:IMAGES], synthetic.y_test[:IMAGES].numpy()
    cap = {sigma: sigma * norm.ppf(ALPHA ** (1 / N)) for sigma in (0.05, 0.20)}
    radii_grid = np.linspace(0, cap[0.20] * 1.01, 60)
    curves, largest, margin = {}, {}, {}
    for sigma in (0.05, 0.20):
        model = load_asset(f"lab2-noise-{sigma:.2f}", dataset=synthetic, profile="cpu",
                           device="cpu")
        smooth = Smooth(model, num_classes=synthetic.num_classes, sigma=sigma)
        torch.manual_seed(0)
        results = [smooth.certify(image, N0, N, ALPHA, BATCH) for image in x]
        predictions = np.array([p for p, _ in results])
        radii = np.array([r for _, r in results])
        curves[sigma] = certified_accuracy(predictions, y, radii, radii_grid)
        correct = predictions == y
        largest[sigma] = radii[correct].max() if correct.any() else 0.0
        # R / sigma = Phi^-1(pA): how consistently the base classifier votes under noise.
        margin[sigma] = float(np.mean(radii / sigma))
        # The radius can never exceed sigma * Phi^-1(alpha^(1/n)).
        assert radii.max() <= cap[sigma] + 1e-12

    for sigma, curve in curves.items():
        assert np.all(np.diff(curve) <= 0), f"sigma={sigma}: curve not non-increasing"
    # sigma = 0.20 certifies larger radii: its largest correct certificate, and the accuracy
    # it keeps beyond the largest radius sigma = 0.05 can reach at all.
    assert largest[0.20] > 2 * largest[0.05], largest
    beyond = radii_grid > cap[0.05]
    assert curves[0.05][beyond].max() == 0.0
    assert curves[0.20][beyond].max() >= 0.5, curves[0.20]
    # ... and pays for it: a base classifier that votes less consistently under its stronger
    # noise (smaller pA, so a smaller R / sigma), and never a higher certified accuracy at
    # radius 0. (Whether that accuracy is strictly lower depends on the data: the offline
    # shapes survive sigma = 0.20, and the assets of 2026-12-01 certify 50/50 and 100/100
    # test images at both sigmas; the held-out real CIFAR sample of issue 14 also tied,
    # 0.65 / 0.65. An earlier asset build measured 0.96 against 1.00.)
    assert curves[0.20][0] <= curves[0.05][0], (curves[0.05][0], curves[0.20][0])
    assert margin[0.20] < margin[0.05], margin
