"""Lab 7's solutions against the peer library (ART) and SciPy, and the test fixtures.

- The batched median filter equals ``scipy.ndimage.median_filter(mode="reflect")`` and ART's
  ``SpatialSmoothing`` (``channels_first=True`` for NCHW; ART filters each image with a
  (1, k, k) window, i.e. per channel) on the same inputs, for windows 3, 5 and 7, and differs
  from ``F.pad(mode="reflect")`` padding (SciPy's "mirror").
- ``squeeze_bits`` equals ART's ``FeatureSqueezing`` for every bit depth; at ART's default
  depth of 8 both leave 8-bit images unchanged (a no-op).
- ART's ``DefensiveDistillation`` takes no temperature (what the notebook says differs).
- The fixtures behave as the test cells assume.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from labsupport.checks import defenses as fx
from labsupport.instructor.labs import solution_namespace

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lab7_input_defenses.py"


@pytest.fixture(scope="module")
def lab() -> dict:
    return solution_namespace(NOTEBOOK, ("spatial_smoothing", "feature_squeezing",
                                         "adaptive_attacks", "distill"))


@pytest.mark.parametrize("window", [3, 5, 7])
def test_median_filter_agrees_with_scipy_and_art(lab, window):
    art = pytest.importorskip("art.defences.preprocessor")
    x = fx.images(5, shape=(3, 17, 13), seed=window)
    ours = lab["spatial_smoothing"](x, window).numpy()
    scipy_out = ndimage.median_filter(x.numpy(), size=(1, 1, window, window), mode="reflect")
    art_out, _ = art.SpatialSmoothing(window_size=window, channels_first=True,
                                      clip_values=(0.0, 1.0))(x.numpy())
    np.testing.assert_array_equal(ours, scipy_out)
    np.testing.assert_array_equal(ours, art_out)
    # torch's reflect padding is SciPy's "mirror": not the same filter at the border.
    mirror = ndimage.median_filter(x.numpy(), size=(1, 1, window, window), mode="mirror")
    assert not np.array_equal(ours, mirror)


def test_art_spatial_smoothing_needs_channels_first():
    art = pytest.importorskip("art.defences.preprocessor")
    x = fx.images(2, shape=(3, 9, 9), seed=1).numpy()
    right, _ = art.SpatialSmoothing(window_size=3, channels_first=True)(x)
    wrong, _ = art.SpatialSmoothing(window_size=3)(x)  # reads (N, C, H, W) as (N, H, W, C)
    assert not np.array_equal(right, wrong)


@pytest.mark.parametrize("bits", [1, 2, 4, 5, 8])
def test_squeeze_bits_agrees_with_art(lab, bits):
    art = pytest.importorskip("art.defences.preprocessor")
    x = fx.images(4, seed=bits)
    ours = lab["squeeze_bits"](x, bits).numpy()
    theirs, _ = art.FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=bits)(x.numpy())
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_art_feature_squeezing_default_is_a_no_op_on_8_bit_images(lab):
    art = pytest.importorskip("art.defences.preprocessor")
    x = fx.eight_bit(4, seed=3).numpy()
    squeezer = art.FeatureSqueezing(clip_values=(0.0, 1.0))
    assert squeezer.bit_depth == 8
    np.testing.assert_allclose(squeezer(x)[0], x, atol=1e-6)
    np.testing.assert_allclose(lab["squeeze_bits"](torch.from_numpy(x), 8).numpy(), x, atol=1e-6)


def test_art_defensive_distillation_has_no_temperature():
    art = pytest.importorskip("art.defences.transformer.evasion")
    parameters = inspect.signature(art.DefensiveDistillation.__init__).parameters
    assert not any("temp" in name.lower() for name in parameters), list(parameters)


def test_median_filter_is_batched_and_keeps_dtype(lab):
    x = fx.images(130, shape=(1, 8, 8), seed=2).double()  # more than one internal chunk
    out = lab["spatial_smoothing"](x, 3)
    assert out.dtype == torch.float64 and out.shape == x.shape
    np.testing.assert_array_equal(out.numpy(), fx.median_reference(x, 3).numpy())


def test_feature_cnn_features_separate_the_detector_data():
    model = fx.FeatureCNN(seed=0)
    clean, noisy = fx.detector_data(64, seed=0)
    with torch.no_grad():
        a = model.last_conv(model.block1(clean)).mean(dim=(2, 3))
        b = model.last_conv(model.block1(noisy)).mean(dim=(2, 3))
    assert (b[:, :3].sum(1) > a[:, :3].sum(1).max()).float().mean() > 0.9


def test_saturated_model_has_zero_cross_entropy_gradient():
    model = fx.SaturatedModel(seed=1)
    x = (fx.images(16, seed=3) * 0.6 + 0.2).requires_grad_(True)
    with torch.no_grad():
        y = model(x).argmax(1)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert float((x.grad.flatten(1).abs().sum(1) == 0).float().mean()) > 0.9


def test_margin_attack_breaks_the_saturated_model_fgsm_does_not(lab):
    from labsupport.attacks import fgsm

    model = fx.SaturatedModel(seed=1)
    x = fx.images(16, seed=3) * 0.6 + 0.2
    with torch.no_grad():
        y = model(x).argmax(1)
    x_fgsm = fgsm(model, x, y, eps=0.1)
    x_adv = lab["margin_attack"](model, x, y, eps=0.1, steps=5)
    with torch.no_grad():
        fooled_fgsm = (model(x_fgsm).argmax(1) != y).float().mean()
        fooled_margin = (model(x_adv).argmax(1) != y).float().mean()
    assert fooled_fgsm < 0.2 and fooled_margin > 0.9


def test_references_are_withheld():
    for function in (fx.median_reference, fx.squeezing_reference):
        assert getattr(function, "__withheld_task__", "").startswith("Lab 7")
