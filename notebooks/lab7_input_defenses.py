# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Lab 7 — Input-level defenses, defensive distillation, and the adaptive attacks that break them
#
# Lab 6 attacked undefended models. This lab tries the cheap defenses that were proposed
# next, and then attacks them the way a defense-aware attacker would.
#
# - **Spatial smoothing** (a median filter in front of the model) and **feature squeezing**
#   (Xu, Evans & Qi, NDSS 2018): reduce the input's "degrees of freedom" (bit depth, local
#   variation) so that small adversarial perturbations are squeezed out; used as a
#   *detector*, compare the model's prediction on the input and on its squeezed versions.
# - A **binary input detector**: a classifier on the model's features, trained to tell clean
#   from adversarial images.
# - **Defensive distillation** (Papernot, McDaniel, Wu, Jha & Swami, S&P 2016): train a
#   teacher with its softmax at a high temperature $T$, train a student of the same size on
#   the teacher's soft labels at $T$, and deploy the student at $T = 1$.
# - **Adaptive attacks**: Carlini & Wagner (2016, 2017) broke distillation by attacking the
#   logits rather than the saturated softmax; Athalye, Carlini & Wagner (ICML 2018) named
#   the pattern, *obfuscated gradients*, and gave the tool for non-differentiable
#   preprocessing: **BPDA**, which runs the defense forward and takes the identity backward.
#
# **What you do.** (1) Write the batched median filter. (2) Write feature squeezing's score
# and its threshold. (3) Write the binary detector. (4) Write defensive distillation.
# (5) Write the two adaptive attacks. The notebook then runs the study on two datasets
# (handwritten digits and the course dataset), against FGSM, PGD and DeepFool from Lab 6,
# and (6) you answer the questions at the end.
#
# Each task ends with its **Requirements**: one line per thing your code must get right.
# The tests check every one of them, on small fixtures (`labsupport.checks.defenses`), and
# check that each graded function is one you wrote in this notebook.
#
# Run the cells from the top. Cells marked *YOUR CODE HERE* are yours; after each one, run
# the test cell below it. The `profile` parameter chooses the size of the experiments
# (`smoke`: seconds, `cpu`: minutes on a laptop, `full`: the assignment scale, GPU
# recommended; `auto` picks `full` on a GPU and `cpu` otherwise). The profile changes sizes,
# never the algorithm.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Google Colab setup: the release puts the pinned install of the course's support package
# here (labsupport.instructor.colab); this source copy does nothing.

# %% tags=["parameters"] nbgrader={"grade": false, "grade_id": "parameters", "locked": true, "schema_version": 3, "solution": false, "task": false}
profile = "auto"  # "smoke", "cpu", "full" or "auto"
dataset = "auto"  # course dataset: "cifar4", "synthetic", a path to dataset-full.npz, or "auto"
digits = "auto"  # digits dataset: "mnist", "digits" (offline stand-in), a path, or "auto"
seed = 0
windows = [3, 5, 7]  # median-filter windows
fpr = 0.05  # feature squeezing's false-positive rate on clean validation images
temperature = 100.0  # defensive distillation's temperature
distill_eps = [0.1, 0.2]  # FGSM budgets against the distilled model (both datasets)
eps = None  # L-inf budget of FGSM/PGD/BPDA per dataset (None: 0.2 on digits, 8/255 on the course data)
pgd_steps = None  # PGD, BPDA and margin-attack steps (None: the profile's)
distill_lr = 5e-3  # Adam's learning rate for the teacher, the student and their plain twin
sizes = None  # a dict overriding the profile's sizes (e.g. {"n_test": 200})

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import copy
import csv
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labsupport.answers import assert_own
from labsupport.assets import load_asset
from labsupport.attacks import fgsm, pgd
from labsupport.checks import defenses as fx
from labsupport.data import load_course_data
from labsupport.digits import digits_name, load_digits
from labsupport.explore import explore
from labsupport.report import caption, output_dir, save_figure, use_style, write_results
from labsupport.runtime import eval_mode, get_device, model_device, resolve_profile, seed_everything
from labsupport.train import evaluate, make_loader, predict

PROFILE = resolve_profile(profile)
DEVICE = get_device()
SIZES = {
    "smoke": dict(n_test=32, n_val=32, n_train=128, steps=2, bpda_steps=2, deepfool_iters=3,
                  detector_epochs=2, n_distill=128, distill_epochs=1, width=0.25),
    "cpu": dict(n_test=500, n_val=500, n_train=2000, steps=10, bpda_steps=20, deepfool_iters=30,
                detector_epochs=5, n_distill=2000, distill_epochs=10, width=0.5),
    "full": dict(n_test=2000, n_val=1000, n_train=10_000, steps=20, bpda_steps=40, deepfool_iters=50,
                 detector_epochs=10, n_distill=None, distill_epochs=30, width=1.0),
}[PROFILE]
SIZES.update(sizes or {})
if pgd_steps is not None:
    SIZES["steps"] = pgd_steps

# %% nbgrader={"grade": false, "grade_id": "data", "locked": true, "schema_version": 3, "solution": false, "task": false}
# The smoke profile checks the plumbing; it never downloads a dataset.
offline = PROFILE == "smoke"
COURSE = load_course_data("synthetic" if offline and dataset == "auto" else dataset)
if digits == "auto":  # follow the course dataset: synthetic -> digits stand-in, cifar4 -> MNIST
    digits = "digits" if offline and dataset == "auto" else digits_name(dataset)
DIGITS = load_digits(digits)
DATASETS = {"digits": DIGITS, "course": COURSE}
EPS = {"digits": 0.2 if eps is None else eps, "course": 8 / 255 if eps is None else eps}
ASSETS = {"digits": "lab6-digits-cnn", "course": "lab6-course-cnn"}
CAPTION = caption(profile=PROFILE, dataset=f"{DIGITS.name} + {COURSE.name}", seed=seed,
                  device=DEVICE)
use_style()
print(f"profile {PROFILE} on {DEVICE}; digits: {DIGITS!r}; course: {COURSE!r}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "smoothing_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Spatial smoothing: a batched median filter
#
# A median filter replaces each pixel by the median of the `window` x `window` pixels around
# it, in each channel separately. Isolated outliers (salt-and-pepper noise, or a sparse
# adversarial perturbation) vanish; edges survive better than under a mean filter. At the
# border, the image is extended by reflection about its edge, as
# `scipy.ndimage.median_filter(..., mode="reflect")` does: the edge pixel itself is repeated
# (`c b a | a b c d`). Careful: `torch.nn.functional.pad(mode="reflect")` mirrors about the
# edge pixel's centre (`c b | a b c d`, SciPy's `"mirror"`), which is not the same.
#
# SciPy filters one array on the CPU; the defense sits in front of a model on a GPU and sees
# batches. Write it in torch, on the whole batch at once (`Tensor.unfold` gives you every
# window). ART's `SpatialSmoothing` (with `channels_first=True` for NCHW images) is the
# peer library's version; the course's tests check both agree with yours.
#
# **Task.** Write `spatial_smoothing(x, window)` for a batch `x` shaped `(N, C, H, W)`.
#
# **Requirements**
#
# - Each channel of each image is replaced by its `window` x `window` median (the middle
#   value of the window, not the mean).
# - Borders are extended by reflection about the edge, the edge pixel repeated
#   (`scipy.ndimage.median_filter(mode="reflect")`), not by `F.pad(mode="reflect")`.
# - A `window` that is not an odd positive integer raises a `ValueError` saying so.
# - The result has `x`'s shape, dtype and device, `x` is not modified, and gradients flow
#   through it (computed with torch, on the batch at once).

# %% nbgrader={"grade": false, "grade_id": "spatial_smoothing", "locked": false, "schema_version": 3, "solution": true, "task": false}
def spatial_smoothing(x, window=3):
    """Median filter of every channel of every image of ``x`` (N, C, H, W), reflect padding."""
    ### BEGIN SOLUTION
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive integer (1, 3, 5, ...); got {window!r}.")
    if x.dim() != 4:
        raise ValueError(f"x must be a batch of images (N, C, H, W); got shape {tuple(x.shape)}.")
    pad = window // 2
    out = []
    for chunk in x.split(64):  # bounded memory: every window of 64 images at a time
        padded = reflect_pad(chunk, pad)
        patches = padded.unfold(2, window, 1).unfold(3, window, 1)
        out.append(patches.reshape(*chunk.shape, window * window).median(dim=-1).values)
    return torch.cat(out) if out else x.clone()


def reflect_pad(x, pad):
    """Extend the last two dimensions by ``pad`` pixels, reflected about the edge."""
    if pad == 0:
        return x
    x = torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], dim=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_spatial_smoothing_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(spatial_smoothing, "spatial_smoothing")
x = fx.images(4, seed=1)
before = x.clone()
with fx.silent():
    out3, out5 = spatial_smoothing(x, 3), spatial_smoothing(x, 5)
assert out3.shape == x.shape and out3.dtype == x.dtype, (
    f"expected shape {tuple(x.shape)} and dtype {x.dtype}; got {tuple(out3.shape)}, {out3.dtype}")
assert torch.equal(x, before), "spatial_smoothing must not modify x"
fx.assert_close(out3, fx.median_reference(x, 3), atol=1e-6,
                what="spatial_smoothing(x, 3) against scipy.ndimage.median_filter(mode='reflect')")
fx.assert_close(out5, fx.median_reference(x, 5), atol=1e-6,
                what="spatial_smoothing(x, 5) against scipy.ndimage.median_filter(mode='reflect')")
for bad in (4, 0, -3, 2.0):
    try:
        with fx.silent():
            spatial_smoothing(x, bad)
    except ValueError:
        pass
    else:
        raise AssertionError(f"window={bad!r} must raise a ValueError (odd positive integers only)")
xg = fx.images(2, seed=3).requires_grad_(True)
with fx.silent():
    smoothed = spatial_smoothing(xg, 5)
assert smoothed.requires_grad, "gradients must flow through the filter (compute it with torch)"
print("spatial_smoothing: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_spatial_smoothing_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(spatial_smoothing, "spatial_smoothing")
x = fx.images(70, shape=(2, 9, 11), seed=5).double()  # odd sizes, two channels, > 64 images
x[:, :, 0, :] = 1.0  # a constant edge row: reflection keeps it, mirroring does not
with fx.silent():
    out = spatial_smoothing(x, 7)
    same = spatial_smoothing(x, 1)
assert out.dtype == torch.float64, f"the result must keep x's dtype (float64); got {out.dtype}"
fx.assert_close(out, fx.median_reference(x, 7), atol=1e-12,
                what="spatial_smoothing(x, 7) against scipy.ndimage.median_filter(mode='reflect')")
assert torch.equal(same, x), "window 1 leaves every pixel as it is"
for bad in (6, True, 3.5):
    try:
        with fx.silent():
            spatial_smoothing(x, bad)
    except ValueError:
        pass
    else:
        raise AssertionError(f"window={bad!r} must raise a ValueError")
xg = fx.images(3, seed=2).requires_grad_(True)
with fx.silent():
    smoothed = spatial_smoothing(xg, 3)
assert smoothed.requires_grad, "gradients must flow through the filter (compute it with torch)"
smoothed.sum().backward()
assert float(xg.grad.sum()) == smoothed.numel(), (
    "each output pixel is one input pixel (the median): its gradient must reach that pixel")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "squeezing_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Feature squeezing as a detector
#
# Xu et al. squeeze an input in several ways and compare the model's outputs: a legitimate
# image gives about the same prediction before and after squeezing; an adversarial one,
# balanced on a knife's edge, often does not. With squeezers $s_1, \dots, s_k$ the score is
#
# $$ \mathrm{score}(x) = \max_i \big\lVert \operatorname{softmax}(f(x)) - \operatorname{softmax}(f(s_i(x))) \big\rVert_1 , $$
#
# and an input is flagged when its score exceeds a threshold chosen **on clean validation
# images only** (the defender has no adversarial examples to tune on) so that a fraction
# `fpr` of them is flagged. The squeezers: **bit-depth reduction** to `bits` bits (values
# rounded to the nearest of $2^{\text{bits}}$ evenly spaced levels in $[0, 1]$; Xu et al.
# use 1 bit on MNIST, 5 on CIFAR-10) and the median filter from task 1.
#
# ART's `FeatureSqueezing` is the peer version of `squeeze_bits`; its default `bit_depth=8`
# leaves 8-bit images unchanged (a no-op: 256 levels are already 8 bits).
#
# **Task.** Write `squeeze_bits(x, bits)`, `feature_squeezing_score(model, x, squeezers)`
# (one score per image; `squeezers` is a list of functions from a batch to a batch) and
# `detector_threshold(scores_clean, fpr)`.
#
# **Requirements**
#
# - `squeeze_bits(x, bits)` rounds every value to the nearest of the `2**bits` evenly
#   spaced levels `0, 1 / (2**bits - 1), ..., 1`.
# - The score of an image is the L1 distance (sum of absolute differences) between the
#   model's two outputs.
# - The outputs compared are probabilities (the softmax of the logits), not logits.
# - With several squeezers, the score is the largest of the per-squeezer distances.
# - `detector_threshold(scores_clean, fpr)` returns the smallest clean score such that at
#   most a fraction `fpr` of the clean scores (`floor(fpr * n)` of `n`) lie strictly above it.

# %% nbgrader={"grade": false, "grade_id": "feature_squeezing", "locked": false, "schema_version": 3, "solution": true, "task": false}
def squeeze_bits(x, bits):
    """``x`` in [0, 1] reduced to ``bits`` bits: rounded to 2**bits evenly spaced levels."""
    ### BEGIN SOLUTION
    levels = 2**bits - 1
    return torch.round(x * levels) / levels
    ### END SOLUTION


def feature_squeezing_score(model, x, squeezers):
    """Xu et al.'s score of each image of ``x``: max over squeezers of an L1 distance."""
    ### BEGIN SOLUTION
    with torch.no_grad(), eval_mode(model):
        device = model_device(model)
        x = x.to(device)
        p = torch.softmax(model(x), dim=1)
        gaps = [(p - torch.softmax(model(s(x)), dim=1)).abs().sum(dim=1) for s in squeezers]
    return torch.stack(gaps).amax(dim=0).cpu()
    ### END SOLUTION


def detector_threshold(scores_clean, fpr=0.05):
    """The threshold that flags at most a fraction ``fpr`` of the clean scores."""
    ### BEGIN SOLUTION
    ordered = torch.as_tensor(scores_clean, dtype=torch.float64).flatten().sort().values
    allowed = math.floor(fpr * len(ordered) + 1e-9)  # clean scores allowed above
    return float(ordered[len(ordered) - 1 - allowed])
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_feature_squeezing_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(squeeze_bits, "squeeze_bits")
assert_own(feature_squeezing_score, "feature_squeezing_score")
assert_own(detector_threshold, "detector_threshold")
values = torch.tensor([0.0, 0.1, 0.3, 0.45, 0.55, 0.7, 0.9, 1.0])
with fx.silent():
    one, two = squeeze_bits(values, 1), squeeze_bits(values, 2)
assert one.tolist() == [0, 0, 0, 0, 1, 1, 1, 1], f"1 bit: levels 0 and 1; got {one.tolist()}"
fx.assert_close(two, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]) / 3, what="2 bits: levels 0, 1/3, 2/3, 1")
model = fx.linear_classifier(seed=3)
x = fx.images(5, seed=4)
squeezers = [lambda b: squeeze_bits(b, 1), fx.box_blur]
with fx.silent():
    scores = feature_squeezing_score(model, x, squeezers)
fx.assert_close(torch.as_tensor(scores).flatten(), fx.squeezing_reference(model, x, squeezers),
                atol=1e-5, what="feature_squeezing_score (max over squeezers of the L1 distance "
                "between the softmax outputs)")
clean = torch.arange(100.0)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
with fx.silent():
    threshold = detector_threshold(clean, 0.05)
assert float(threshold) == 94.0, (
    f"scores 0..99 at fpr 0.05: 5 scores may lie above the threshold, so it is 94; got {threshold}")
print("feature squeezing: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_feature_squeezing_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(squeeze_bits, "squeeze_bits")
assert_own(feature_squeezing_score, "feature_squeezing_score")
assert_own(detector_threshold, "detector_threshold")
x8 = fx.eight_bit(4, seed=7)
for bits in (3, 5):
    levels = 2**bits - 1
    with fx.silent():
        squeezed = squeeze_bits(x8, bits)
    fx.assert_close(squeezed * levels, torch.round(x8 * levels), atol=1e-4,
                    what=f"squeeze_bits(x, {bits}) on the grid of {levels + 1} levels")
with fx.silent():
    assert torch.allclose(squeeze_bits(x8, 8), x8, atol=1e-6), "8 bits leave 8-bit images as they are"
model = fx.SaturatedModel(scale=3.0, seed=5)  # logits and probabilities differ a lot
x = fx.images(6, seed=8)
squeezers = [lambda b: squeeze_bits(b, 2), fx.box_blur, lambda b: 1 - b]
with fx.silent():
    scores = feature_squeezing_score(model, x, squeezers)
    single = [feature_squeezing_score(model, x, [s]) for s in squeezers]
expected = fx.squeezing_reference(model, x, squeezers)
fx.assert_close(torch.as_tensor(scores).flatten(), expected, atol=1e-5, what="the squeezing score")
for s, got in zip(squeezers, single, strict=True):
    fx.assert_close(torch.as_tensor(got).flatten(), fx.squeezing_reference(model, x, [s]),
                    atol=1e-5, what="the score with one squeezer")
g = torch.Generator().manual_seed(3)
for n, rate in ((40, 0.1), (37, 0.05), (200, 0.29), (10, 0.0)):
    clean = torch.rand(n, generator=g, dtype=torch.float64)
    with fx.silent():
        threshold = float(detector_threshold(clean.numpy(), rate))
    above = int((clean > threshold).sum())
    assert threshold in clean.tolist() and above == math.floor(rate * n + 1e-9), (
        f"n = {n}, fpr = {rate}: the threshold must be the clean score with floor(fpr * n) = "
        f"{math.floor(rate * n + 1e-9)} scores above it; {above} lie above {threshold}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "detector_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. A binary input detector
#
# Another early idea (Grosse et al. 2017; Metzen et al. 2017): train a second classifier to
# tell clean inputs (label 0) from adversarial ones (label 1). Here it reuses the trained
# model's features: the output of its last convolutional block (`model.last_conv`, on
# both course architectures), averaged over the spatial positions (one value per channel),
# and a linear layer to two logits. Only that linear head is trained; the model's weights
# and batch-norm statistics stay as they are. A forward hook on `model.last_conv`
# (`register_forward_hook`) records the block's output during a forward pass.
#
# **Task.** Write the class `BinaryDetector(model, image_shape)` (an `nn.Module` with an
# `nn.Linear` attribute `head`), `train_detector(detector, x_clean, x_adv, *, epochs, lr,
# batch_size, seed)` and `detector_rates(detector, x_clean, x_adv)`.
#
# **Requirements**
#
# - `BinaryDetector(model, image_shape)` returns `head(features)`, where `features` is the
#   output of `model.last_conv` averaged over the spatial positions and `head` an
#   `nn.Linear(channels, 2)` (logit 0: clean, 1: adversarial).
# - It never changes `model`: it works on its own copy (`copy.deepcopy`), and `model` keeps
#   its weights, mode and `requires_grad` flags.
# - Training changes only the head: the copy's weights and batch-norm statistics stay as
#   they were (its batch norm stays in evaluation mode while the detector trains).
# - `train_detector` trains the head with Adam (learning rate `lr`) on all of `x_clean`
#   labelled 0 and all of `x_adv` labelled 1 (cross-entropy, `make_loader(..., shuffle=True,
#   seed=seed)`), for `epochs` passes, and returns the detector in evaluation mode.
# - `detector_rates` returns `{"detection_rate": ..., "false_positive_rate": ...}`: the
#   fractions of `x_adv` and of `x_clean` that the detector flags as adversarial.

# %% nbgrader={"grade": false, "grade_id": "binary_detector", "locked": false, "schema_version": 3, "solution": true, "task": false}
class BinaryDetector(nn.Module):
    """Clean (0) vs adversarial (1) from the spatially averaged features of ``model.last_conv``."""

    def __init__(self, model, image_shape):
        super().__init__()
        ### BEGIN SOLUTION
        self.body = copy.deepcopy(model).eval()
        self.body.requires_grad_(False)
        self._features = None
        self.body.last_conv.register_forward_hook(self._record)
        device = model_device(self.body)
        with torch.no_grad():
            channels = self.pooled(torch.zeros(1, *image_shape, device=device)).shape[1]
        self.head = nn.Linear(channels, 2).to(device)
        ### END SOLUTION

    ### BEGIN SOLUTION
    def _record(self, module, inputs, output):
        self._features = output

    def pooled(self, x):
        self.body(x)
        return self._features.mean(dim=(2, 3))

    def train(self, mode=True):
        super().train(mode)
        self.body.eval()  # the features are frozen: batch norm keeps its statistics
        return self

    def forward(self, x):
        return self.head(self.pooled(x))
    ### END SOLUTION


def train_detector(detector, x_clean, x_adv, *, epochs=5, lr=1e-2, batch_size=128, seed=0):
    """Train the detector's head on clean (0) vs adversarial (1) images; returns it (eval)."""
    ### BEGIN SOLUTION
    device = model_device(detector)
    x = torch.cat([x_clean, x_adv])
    y = torch.cat([torch.zeros(len(x_clean), dtype=torch.long),
                   torch.ones(len(x_adv), dtype=torch.long)])
    loader = make_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    optimizer = torch.optim.Adam(detector.head.parameters(), lr=lr)
    detector.train()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(detector(xb.to(device)), yb.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return detector.eval()
    ### END SOLUTION


def detector_rates(detector, x_clean, x_adv):
    """Detection rate on ``x_adv`` and false-positive rate on ``x_clean``."""
    ### BEGIN SOLUTION
    return {"detection_rate": (predict(detector, x_adv) == 1).float().mean().item(),
            "false_positive_rate": (predict(detector, x_clean) == 1).float().mean().item()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_binary_detector_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(BinaryDetector, "BinaryDetector")
assert_own(train_detector, "train_detector")
assert_own(detector_rates, "detector_rates")
model = fx.FeatureCNN(seed=0)
state = fx.model_state(model)
x_clean, x_adv = fx.detector_data(96, seed=0)
with fx.silent():
    torch.manual_seed(0)
    detector = BinaryDetector(model, fx.IMAGE_SHAPE)
    before = fx.model_state(detector.head)
    detector = train_detector(detector, x_clean, x_adv, epochs=20, lr=0.05, batch_size=32, seed=0)
    test_clean, test_adv = fx.detector_data(64, seed=1)
    rates = detector_rates(detector, test_clean, test_adv)
assert isinstance(detector.head, nn.Linear) and detector.head.out_features == 2, (
    "the detector's head must be an nn.Linear with 2 outputs")
assert not torch.equal(before["weight"], detector.head.weight.detach()), "the head must learn"
assert set(rates) == {"detection_rate", "false_positive_rate"}, f"got the keys {sorted(rates)}"
assert rates["detection_rate"] > 0.9 and rates["false_positive_rate"] < 0.1, (
    f"on the fixture, a trained detector flags > 90% of the noisy images and < 10% of the "
    f"clean ones; got {rates}")
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"the detector must not change the model ({key})"
assert all(p.requires_grad for p in model.parameters()), (
    "the detector must leave the model's requires_grad flags as they were (freeze its own copy)")
print("binary detector: visible tests passed", rates)

# %% nbgrader={"grade": true, "grade_id": "test_binary_detector_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(BinaryDetector, "BinaryDetector")
assert_own(train_detector, "train_detector")
assert_own(detector_rates, "detector_rates")
model = fx.FeatureCNN(channels=2, width=5, seed=3).train()  # in training mode on purpose
shape = (2, 9, 8)
with fx.silent():
    detector = BinaryDetector(model, shape)
assert model.training and all(p.requires_grad for p in model.parameters()), (
    "BinaryDetector must leave the model's mode and requires_grad flags as they were")
assert detector.head.in_features == 5 and detector.head.out_features == 2
x = fx.images(7, shape=shape, seed=2)
with torch.no_grad():
    pooled = model.eval().last_conv(model.block1(x)).mean(dim=(2, 3))
    fx.assert_close(detector.eval()(x), detector.head(pooled), atol=1e-5,
                    what="the detector's logits: head(spatial average of model.last_conv's output)")
model.train()
x_clean, x_adv = fx.detector_data(64, shape=shape, seed=4)
body_state = {k: v for k, v in fx.model_state(detector).items() if not k.startswith("head")}
with fx.silent():
    trained = train_detector(detector, x_clean, x_adv, epochs=8, lr=0.05, batch_size=16, seed=1)
assert not trained.training, "train_detector returns the detector in evaluation mode"
after = {k: v for k, v in fx.model_state(trained).items() if not k.startswith("head")}
for key, value in body_state.items():
    assert torch.equal(after[key], value), (
        f"training the detector changed its copy of the model ({key}): only the head learns, "
        "and batch norm keeps its statistics")
with fx.silent():
    rates = detector_rates(trained, x_clean, x_adv)
    flipped = detector_rates(trained, x_adv, x_clean)
assert rates["detection_rate"] > 0.85 and rates["false_positive_rate"] < 0.15, rates
fx.assert_close(flipped["detection_rate"], rates["false_positive_rate"], what="swapped sets")
expected = (predict(trained, x_adv) == 1).float().mean().item()
fx.assert_close(rates["detection_rate"], expected, what="the detection rate")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "distill_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. Defensive distillation
#
# At temperature $T$ a model's softmax is $\operatorname{softmax}(z / T)$ for its logits
# $z$. Papernot et al.: (1) train a teacher at temperature $T$ on the labels; (2) label the
# training set with the teacher's *soft labels* $\operatorname{softmax}(z_{\text{teacher}} / T)$;
# (3) train a student (a new model of the same architecture) at temperature $T$ on those
# soft labels; (4) deploy the student at $T = 1$, i.e. use its logits as they are. Trained
# at $T = 100$, the student's logits come out about $T$ times larger than a normally trained
# model's, so at $T = 1$ its softmax is saturated: its gradient underflows and FGSM, which
# follows the gradient of the cross-entropy, finds nothing to follow.
#
# ART's `DefensiveDistillation` has no temperature: it trains a given student on the
# probabilities of a given classifier at $T = 1$, which is ordinary distillation; the
# recipe above is what makes the logits large. The lab uses Adam (whose step does not shrink
# with the $1/T$ factor on the gradient), where Papernot et al. used SGD with momentum.
#
# **Task.** Write `soft_labels(model, x, T)`, `train_at_temperature(model, x, targets, *, T,
# epochs, lr, batch_size, seed)` (the targets are labels or rows of probabilities) and
# `distill(make_model, x, y, *, T=100, teacher=None, epochs, lr, batch_size, seed)`, which
# returns `(teacher, student)`.
#
# **Requirements**
#
# - `soft_labels(model, x, T)` returns $\operatorname{softmax}(\text{model}(x) / T)$, one row per image.
# - It evaluates the model in evaluation mode without gradients, and restores the model's
#   mode afterwards.
# - `train_at_temperature` minimises the cross-entropy between the targets (labels or
#   probability rows) and $\operatorname{softmax}(\text{model}(x) / T)$, with Adam at learning rate `lr`,
#   over `epochs` passes of `make_loader(x, targets, batch_size=batch_size, shuffle=True,
#   seed=seed)`, and returns the model in evaluation mode.
# - `distill` trains the teacher (a new `make_model()`) at temperature `T` on the labels
#   `y`; a `teacher` that is given is used as it is, not trained.
# - The student, a new `make_model()`, is trained at temperature `T` on the teacher's soft
#   labels at `T`, not on `y`.
# - The student is deployed at temperature 1: `distill` returns the trained student model
#   itself, whose logits are used as they are.

# %% nbgrader={"grade": false, "grade_id": "distill", "locked": false, "schema_version": 3, "solution": true, "task": false}
def soft_labels(model, x, T, batch_size=512):
    """softmax(model(x) / T), computed in evaluation mode without gradients (on the CPU)."""
    ### BEGIN SOLUTION
    device = model_device(model)
    with torch.no_grad(), eval_mode(model):
        rows = [torch.softmax(model(xb.to(device)) / T, dim=1).cpu() for xb in x.split(batch_size)]
    return torch.cat(rows)
    ### END SOLUTION


def train_at_temperature(model, x, targets, *, T, epochs, lr=1e-3, batch_size=128, seed=0):
    """Train ``model`` with its softmax at temperature ``T`` (labels or soft targets)."""
    ### BEGIN SOLUTION
    device = model_device(model)
    loader = make_loader(x, targets, batch_size=batch_size, shuffle=True, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for xb, tb in loader:
            loss = F.cross_entropy(model(xb.to(device)) / T, tb.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()
    ### END SOLUTION


def distill(make_model, x, y, *, T=100.0, teacher=None, epochs=5, lr=1e-3, batch_size=128,
            seed=0):
    """Defensive distillation at temperature ``T``; returns ``(teacher, student)``."""
    ### BEGIN SOLUTION
    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    if teacher is None:
        teacher = train_at_temperature(make_model(), x, y, T=T, **settings)
    targets = soft_labels(teacher, x, T)
    student = train_at_temperature(make_model(), x, targets, T=T, **settings)
    return teacher, student
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_distill_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(soft_labels, "soft_labels")
assert_own(train_at_temperature, "train_at_temperature")
assert_own(distill, "distill")
x = fx.images(24, shape=(1, 3, 4), seed=1)
teacher = fx.FixedTeacher(12, scale=4.0, seed=2)
with fx.silent():
    soft = soft_labels(teacher, x, 10.0)
fx.assert_close(soft, torch.softmax(teacher(x) / 10.0, dim=1), atol=1e-6,
                what="soft_labels(teacher, x, 10): softmax(teacher(x) / 10)")
# A model whose logits are one learned vector b: trained at T to convergence on targets
# whose mean is q, it ends where softmax(b / T) = q.
q = torch.tensor([0.6, 0.3, 0.1])
targets = q.expand(48, 3).clone()
with fx.silent():
    bias_model = train_at_temperature(fx.BiasModel(3), fx.images(48, shape=(1, 2, 2)), targets,
                                      T=10.0, epochs=60, lr=0.5, batch_size=16, seed=0)
fitted = torch.softmax(bias_model.bias.detach() / 10.0, dim=0)
fx.assert_close(fitted, q, atol=0.02, what="softmax(b / T) after training at T = 10 on q")
dropout = fx.DropoutModel(12, seed=1).train()
with fx.silent():
    soft = soft_labels(dropout, x, 3.0)
with torch.no_grad():
    expected = torch.softmax(dropout.eval()(x) / 3.0, dim=1)
fx.assert_close(soft, expected, atol=1e-6, what="soft labels of a dropout model (evaluation mode)")
labels = torch.tensor([0] * 24 + [1] * 12 + [2] * 4)
made = []


def make_bias_model():
    made.append(fx.BiasModel(3))
    return made[-1]


with fx.silent():
    teacher, student = distill(make_bias_model, fx.images(40, shape=(1, 2, 2)), labels, T=10.0,
                               epochs=60, lr=0.5, batch_size=20, seed=1)
assert len(made) == 2 and teacher is made[0] and student is made[1], (
    "distill makes the teacher, then the student, with make_model, and returns both as they are")
for name, m in (("teacher", teacher), ("student", student)):
    fx.assert_close(torch.softmax(m.bias.detach() / 10.0, dim=0), torch.tensor([0.6, 0.3, 0.1]),
                    atol=0.03, what=f"the {name}'s softmax at T = 10 (labels 60/30/10%)")
teacher = fx.FixedTeacher(12, scale=3.0, seed=4)
x = fx.images(48, shape=(1, 3, 4), seed=5)
with torch.no_grad():
    y = teacher(x).argmin(dim=1)  # labels the teacher disagrees with
with fx.silent():
    returned, student = distill(lambda: fx.LinearModel(12, seed=1), x, y, T=2.0, teacher=teacher,
                                epochs=150, lr=0.05, batch_size=24, seed=0)
assert returned is teacher, "a given teacher is returned as it is"
with torch.no_grad():
    agree = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean().item()
assert agree > 0.9, f"the student must learn the teacher's soft labels, not y (agreement {agree:.2f})"
print("distill: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_distill_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(soft_labels, "soft_labels")
assert_own(train_at_temperature, "train_at_temperature")
assert_own(distill, "distill")
x = fx.images(32, shape=(1, 3, 4), seed=3)
dropout = fx.DropoutModel(12, seed=4).train()
with fx.silent():
    first, second = soft_labels(dropout, x, 5.0), soft_labels(dropout, x, 5.0)
assert dropout.training, "soft_labels must restore the model's mode (it was training)"
with torch.no_grad():
    expected = torch.softmax(dropout.eval()(x) / 5.0, dim=1)
dropout.train()
fx.assert_close(first, expected, atol=1e-6, what="soft labels computed in evaluation mode")
fx.assert_close(second, first, what="soft labels twice")
assert not first.requires_grad, "soft labels are computed without gradients"
# Hard labels at temperature T: softmax(b / T) goes to the label frequencies.
labels = torch.tensor([0] * 30 + [1] * 15 + [2] * 5)
inputs = fx.images(50, shape=(1, 2, 2), seed=5)
with fx.silent():
    hard = train_at_temperature(fx.BiasModel(3), inputs, labels, T=20.0, epochs=60, lr=1.0,
                                batch_size=25, seed=2)
assert not hard.training, "train_at_temperature returns the model in evaluation mode"
fx.assert_close(torch.softmax(hard.bias.detach() / 20.0, dim=0), torch.tensor([0.6, 0.3, 0.1]),
                atol=0.03, what="softmax(b / T) after training at T = 20 on labels 60/30/10%")
# distill without a teacher: both models trained at T on these labels.
made = []


def make_bias_model():
    made.append(fx.BiasModel(3))
    return made[-1]


with fx.silent():
    teacher, student = distill(make_bias_model, inputs, labels, T=20.0, epochs=60, lr=1.0,
                               batch_size=25, seed=2)
assert len(made) == 2 and teacher is made[0] and student is made[1], (
    "distill makes two models with make_model (teacher, then student) and returns them as they "
    "are: the student is deployed at temperature 1")
for name, m in (("teacher", teacher), ("student", student)):
    fx.assert_close(torch.softmax(m.bias.detach() / 20.0, dim=0), torch.tensor([0.6, 0.3, 0.1]),
                    atol=0.03, what=f"the {name}'s softmax at T = 20")
# A given teacher is used as it is, and the student learns its soft labels, not y.
teacher = fx.FixedTeacher(12, scale=3.0, seed=6)
x = fx.images(64, shape=(1, 3, 4), seed=7)
y = teacher(x).argmin(dim=1)  # labels the teacher disagrees with
teacher_state = fx.model_state(teacher)
made.clear()


def make_linear_model():
    made.append(fx.LinearModel(12, seed=len(made)))
    return made[-1]


with fx.silent():
    returned, student = distill(make_linear_model, x, y, T=2.0, teacher=teacher, epochs=150,
                                lr=0.05, batch_size=32, seed=0)
assert returned is teacher and len(made) == 1 and student is made[0], (
    "a given teacher is returned as it is; only the student is made")
assert all(torch.equal(v, teacher_state[k]) for k, v in fx.model_state(teacher).items())
with torch.no_grad():
    agree = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean().item()
    gap = (torch.softmax(student(x) / 2.0, 1) - torch.softmax(teacher(x) / 2.0, 1)).abs().sum(1)
assert agree > 0.9 and gap.mean() < 0.15, (
    f"the student must learn the teacher's soft labels (agreement {agree:.2f}, mean L1 gap of "
    f"the softmax at T: {gap.mean():.3f})")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "adaptive_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 5. Adaptive attacks
#
# A defense is evaluated against an attacker who knows it. Two tools:
#
# - **BPDA** (Backward Pass Differentiable Approximation; Athalye et al. 2018). The median
#   filter's gradient is sparse and tells little (one pixel per window gets all of it);
#   bit-depth reduction's is zero almost everywhere. BPDA runs the defense in the forward
#   pass and replaces it by the identity in the backward pass: since the defense is
#   meant to leave images almost unchanged, $\nabla_x f(g(x)) \approx \nabla f(g(x))$
#   evaluated at the defended image. In torch:
#   `x_adv + (defense(x_adv) - x_adv).detach()` has the value `defense(x_adv)` and the
#   gradient of the identity.
# - **Attack the logits** (Carlini & Wagner). A distilled model's softmax is saturated, so
#   the cross-entropy's gradient is (numerically) zero. The logits themselves are not
#   saturated: ascend the *margin* $\max_{j \ne y} z_j - z_y$ (positive exactly when the
#   image is misclassified), which C&W's attacks use as their loss.
#
# Both are PGD: `steps` steps of `alpha` times the sign of the gradient, each followed by a
# projection onto the L-inf ball of radius `eps` around `x` and a clip to $[0, 1]$.
#
# **Task.** Write `bpda_attack(model, defense, x, y, *, eps, steps=10, alpha=None)` and
# `margin_attack(model, x, y, *, eps, steps=10, alpha=None)`; both return the adversarial
# images on `x`'s device.
#
# **Requirements**
#
# - `bpda_attack` classifies the defended image at every step: its loss is the
#   cross-entropy of `model(defense(x_adv))` with the labels `y`.
# - Its backward pass treats `defense` as the identity: the gradient is the loss's gradient
#   with respect to the defended image, applied to `x_adv` as it is.
# - Both attacks start from `x` itself (no random start) and take `steps` steps, each adding
#   `alpha` times the sign of the gradient (default `alpha = 2.5 * eps / steps`).
# - After every step the image is projected onto the L-inf ball of radius `eps` around `x`
#   and clipped to $[0, 1]$; `x` is not modified.
# - `margin_attack` ascends the margin on the logits: the largest logit of another class
#   minus the logit of the true class (no softmax, no cross-entropy).
# - The largest other logit excludes the true class.

# %% nbgrader={"grade": false, "grade_id": "adaptive_attacks", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bpda_attack(model, defense, x, y, *, eps, steps=10, alpha=None):
    """L-inf PGD through ``defense`` with a straight-through (identity) backward pass."""
    ### BEGIN SOLUTION
    alpha = 2.5 * eps / steps if alpha is None else float(alpha)
    device = model_device(model)
    x0, y = x.to(device), y.to(device)
    x_adv = x0.clone()
    with eval_mode(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.no_grad():
                defended = defense(x_adv)
            straight = x_adv + (defended - x_adv).detach()
            loss = F.cross_entropy(model(straight), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = x_adv + alpha * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x0 - eps), x0 + eps).clamp(0, 1)
    return x_adv.detach().to(x.device)
    ### END SOLUTION


def margin_attack(model, x, y, *, eps, steps=10, alpha=None):
    """L-inf PGD on the logit margin max_{j != y} z_j - z_y (Carlini & Wagner's loss)."""
    ### BEGIN SOLUTION
    alpha = alpha if alpha is not None else 2.5 * eps / steps
    device = model_device(model)
    x0, y = x.to(device), y.to(device)
    x_adv = x0.clone()
    with eval_mode(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            true = logits.gather(1, y[:, None]).squeeze(1)
            others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
            loss = (others.amax(dim=1) - true).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = x_adv + alpha * grad.sign()
                x_adv = torch.max(torch.min(x_adv, x0 + eps), x0 - eps).clamp(0, 1)
    return x_adv.detach().to(x.device)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_adaptive_attacks_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(bpda_attack, "bpda_attack")
assert_own(margin_attack, "margin_attack")
model = fx.SaturatedModel(seed=1)
x = fx.images(16, seed=3) * 0.6 + 0.2
with torch.no_grad():
    y = model(x).argmax(1)  # correctly classified, with a softmax saturated to one-hot
before = x.clone()
with fx.silent():
    x_adv = margin_attack(model, x, y, eps=0.1, steps=5)
assert torch.equal(x, before), "margin_attack must not modify x"
assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6 and 0 <= float(x_adv.min()) <= float(x_adv.max()) <= 1
with torch.no_grad():
    fooled = (model(x_adv).argmax(1) != y).float().mean().item()
assert fooled > 0.9, (
    f"the margin attack on the logits fools a saturated model on > 90% of the images; got "
    f"{fooled:.0%} (cross-entropy's gradient is zero here: use the logits)")
defense = fx.Flip()
model = fx.linear_classifier(seed=2)
x = fx.images(8, seed=4)
y = fx.labels(8, 3, seed=5)
with fx.silent():
    x_bpda = bpda_attack(model, defense, x, y, eps=0.05, steps=1, alpha=0.01)
defended = defense(x).requires_grad_(True)
F.cross_entropy(model(defended), y).backward()
fx.assert_close(x_bpda, (x + 0.01 * defended.grad.sign()).clamp(0, 1), atol=1e-6,
                what="one BPDA step: x + alpha * sign(gradient at the defended image)")
current = x.clone()
for _ in range(6):  # 6 steps of the default alpha = 2.5 * 0.3 / 6 = 0.125, projected, clipped
    defended = defense(current).requires_grad_(True)
    F.cross_entropy(model(defended), y).backward()
    current = torch.maximum(torch.minimum(current + 0.125 * defended.grad.sign(), x + 0.3), x - 0.3)
    current = current.clamp(0, 1).detach()
with fx.silent():
    x_bpda = bpda_attack(model, defense, x, y, eps=0.3, steps=6)
fx.assert_close(x_bpda, current, atol=1e-5, what="six BPDA steps (default alpha) within eps 0.3")
print("adaptive attacks: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_adaptive_attacks_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(bpda_attack, "bpda_attack")
assert_own(margin_attack, "margin_attack")
model = fx.linear_classifier(classes=4, seed=6)
x = fx.images(10, seed=6)
y = fx.labels(10, 4, seed=7)
before = x.clone()


def reference_margin(x_start, y, eps, steps, alpha):
    current = x_start.clone()
    for _ in range(steps):
        current.requires_grad_(True)
        z = model(current)
        other = z.clone()
        other[torch.arange(len(y)), y] = -1e9
        (other.max(1).values - z[torch.arange(len(y)), y]).sum().backward()
        current = current.detach() + alpha * current.grad.sign()
        current = torch.maximum(torch.minimum(current, x_start + eps), x_start - eps).clamp(0, 1)
    return current.detach()


with fx.silent():
    got = margin_attack(model, x, y, eps=0.03, steps=4)
    got_alpha = margin_attack(model, x, y, eps=0.2, steps=3, alpha=0.15)
assert torch.equal(x, before)
fx.assert_close(got, reference_margin(x, y, 0.03, 4, 2.5 * 0.03 / 4), atol=1e-5,
                what="margin_attack, 4 steps, default alpha")
fx.assert_close(got_alpha, reference_margin(x, y, 0.2, 3, 0.15), atol=1e-5,
                what="margin_attack, 3 steps of 0.15 within eps 0.2 (projected, clipped)")


def reference_bpda(defense, x_start, y, eps, steps, alpha):
    current = x_start.clone()
    for _ in range(steps):
        defended = defense(current).detach().requires_grad_(True)
        F.cross_entropy(model(defended), y).backward()
        current = current + alpha * defended.grad.sign()
        current = torch.maximum(torch.minimum(current, x_start + eps), x_start - eps).clamp(0, 1)
    return current.detach()


for defense, eps_, steps_, alpha_ in ((fx.Flip(), 0.04, 5, None), (fx.Flip(), 0.3, 4, 0.2),
                                      (lambda b: torch.round(b * 3) / 3, 0.05, 3, None)):
    with fx.silent():
        got = bpda_attack(model, defense, x, y, eps=eps_, steps=steps_, alpha=alpha_)
    fx.assert_close(got, reference_bpda(defense, x, y, eps_, steps_,
                                        2.5 * eps_ / steps_ if alpha_ is None else alpha_),
                    atol=1e-5, what=f"bpda_attack (eps {eps_}, {steps_} steps, alpha {alpha_})")
assert torch.equal(x, before), "the attacks must not modify x"
saturated = fx.SaturatedModel(seed=1)
x = fx.images(16, seed=11) * 0.6 + 0.2
with torch.no_grad():
    y = saturated(x).argmax(1)
with fx.silent():
    x_adv = margin_attack(saturated, x, y, eps=0.1, steps=5)
with torch.no_grad():
    fooled = (saturated(x_adv).argmax(1) != y).float().mean().item()
assert fooled > 0.9, f"the margin attack fools {fooled:.0%} of the saturated model's images"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "study_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## The study
#
# On each dataset the notebook loads Lab 6's undefended model (`lab6-digits-cnn`,
# `lab6-course-cnn`; built from their recipes and cached the first time) and attacks it
# with FGSM and PGD (L-inf, budget `EPS`) and DeepFool (L2, minimal: it stops as soon as
# the label flips, then overshoots by 2%, Moosavi-Dezfooli et al.'s default). Accuracies are
# measured on the first test images; feature squeezing's threshold is chosen on the next
# test images (clean validation images the attacks never touch).

# %% nbgrader={"grade": false, "grade_id": "study_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
class Defended(nn.Module):
    """``model`` behind a preprocessing function (the defended classifier)."""

    def __init__(self, model, defense):
        super().__init__()
        self.model, self.defense = model, defense

    def forward(self, x):
        return self.model(self.defense(x))


def smoother(window):
    """The median filter of width ``window`` as a batch -> batch function (0: none)."""
    return (lambda b: b) if window == 0 else (lambda b: spatial_smoothing(b, window))


def batched(attack, x, y, batch_size=256, **kwargs):
    """Run ``attack(x, y, **kwargs)`` batch by batch."""
    return torch.cat([attack(xb, yb, **kwargs) for xb, yb in
                      zip(x.split(batch_size), y.split(batch_size), strict=True)])


def deepfool(model, x, y, *, iters=50, overshoot=0.02, candidates=10, batch_size=128):
    """Multi-class DeepFool (Moosavi-Dezfooli et al., 2016), L2, against the ``candidates``
    classes of highest clean logit (the authors' ``num_classes``): the study's minimal attack.
    Images the model already misclassifies are returned as they are."""
    device = model_device(model)
    out = []
    with eval_mode(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            x0, yb = xb.to(device), yb.to(device)
            with torch.no_grad():
                logits = model(x0)
            c = min(candidates, logits.shape[1])
            order = logits.argsort(1, descending=True)[:, :c]  # order[:, 0]: the prediction
            active = order[:, 0] == yb
            r_total = torch.zeros_like(x0)
            for _ in range(iters):
                index = active.nonzero().squeeze(1)
                if len(index) == 0:
                    break
                n, cand = len(index), order[index]
                xa = (x0[index] + (1 + overshoot) * r_total[index]).clamp(0, 1)
                copies = xa.repeat_interleave(c, dim=0).requires_grad_(True)
                z = model(copies)
                (grads,) = torch.autograd.grad(z.gather(1, cand.reshape(-1, 1)).sum(), copies)
                grads = grads.view(n, c, *x0.shape[1:])
                first = z.detach().view(n, c, -1)[:, 0]  # the logits (one copy per image)
                f = first.gather(1, cand)
                fooled = first.argmax(1) != cand[:, 0]
                w = (grads - grads[:, :1]).flatten(2)
                fk = f - f[:, :1]
                norms = w.norm(dim=2) + 1e-8
                ratio = fk.abs() / norms
                ratio[:, 0] = float("inf")
                k = ratio.argmin(1)
                rows = torch.arange(n, device=device)
                step = (ratio[rows, k] + 1e-4) / norms[rows, k]
                step = torch.where(fooled, torch.zeros_like(step), step)
                r_total[index] += (step[:, None] * w[rows, k]).view(n, *x0.shape[1:])
                active[index[fooled]] = False
            out.append((x0 + (1 + overshoot) * r_total).clamp(0, 1).detach().to(x.device))
    return torch.cat(out)


def accuracy(model, x, y):
    return evaluate(model, x, y)


def success(model, x_adv, y, correct):
    """Attack success: the fraction of the correctly classified clean images misclassified."""
    return (predict(model, x_adv[correct]) != y[correct]).float().mean().item()


def write_csv(name, rows):
    path = output_dir() / f"{name}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# %% nbgrader={"grade": false, "grade_id": "study_models", "locked": true, "schema_version": 3, "solution": false, "task": false}
SPLITS, MODELS, ADV = {}, {}, {}
for name, data in DATASETS.items():
    n_test = min(SIZES["n_test"], len(data.x_test) // 2)
    n_val = min(SIZES["n_val"], len(data.x_test) - n_test)
    n_train = SIZES["n_train"] or len(data.x_train)
    SPLITS[name] = dict(x_test=data.x_test[:n_test], y_test=data.y_test[:n_test],
                        x_val=data.x_test[n_test : n_test + n_val],
                        x_train=data.x_train[:n_train], y_train=data.y_train[:n_train])
    model = load_asset(ASSETS[name], dataset=data, profile=PROFILE, device=DEVICE)
    MODELS[name] = model
    s = SPLITS[name]
    seed_everything(seed)
    ADV[name] = {
        "FGSM": fgsm(model, s["x_test"], s["y_test"], eps=EPS[name]),
        "PGD": pgd(model, s["x_test"], s["y_test"], eps=EPS[name], steps=SIZES["steps"], seed=seed),
        "DeepFool": deepfool(model, s["x_test"], s["y_test"], iters=SIZES["deepfool_iters"]),
    }
    l2 = (ADV[name]["DeepFool"] - s["x_test"]).flatten(1).norm(dim=1).median().item()
    print(f"{name}: {len(s['x_test'])} test, {len(s['x_val'])} validation, {len(s['x_train'])} "
          f"training images; clean accuracy {accuracy(model, s['x_test'], s['y_test']):.3f}; "
          f"eps {EPS[name]:.3f}; DeepFool's median L2 perturbation {l2:.3f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "smoothing_study_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Spatial smoothing against oblivious and adaptive attacks
#
# The attacks above were computed against the *undefended* model (an attacker who does not
# know about the filter). Then the filter goes in front of the model. The last column is
# the adaptive attacker: PGD through the filter with BPDA, same budget, twice PGD's steps
# (the straight-through gradient is an approximation: Athalye et al. give BPDA more
# iterations).

# %% nbgrader={"grade": false, "grade_id": "smoothing_study", "locked": true, "schema_version": 3, "solution": false, "task": false}
SMOOTHING = []
for name, model in MODELS.items():
    s = SPLITS[name]
    for window in [0, *windows]:
        defended = Defended(model, smoother(window))
        row = {"dataset": name, "window": window,
               "clean": accuracy(defended, s["x_test"], s["y_test"])}
        for attack, x_adv in ADV[name].items():
            row[attack] = accuracy(defended, x_adv, s["y_test"])
        # window 0: the same PGD (no random start) against the undefended model
        x_bpda = batched(lambda xb, yb, w=window, m=model, e=EPS[name]: bpda_attack(
            m, smoother(w), xb, yb, eps=e, steps=SIZES["bpda_steps"]),
            s["x_test"], s["y_test"])
        row["BPDA-PGD"] = accuracy(defended, x_bpda, s["y_test"])
        SMOOTHING.append(row)
print(f"{'dataset':>8} {'window':>6} {'clean':>6} {'FGSM':>6} {'PGD':>6} {'DeepFool':>8} {'BPDA-PGD':>8}")
for r in SMOOTHING:
    print(f"{r['dataset']:>8} {r['window']:>6} {r['clean']:>6.3f} {r['FGSM']:>6.3f} {r['PGD']:>6.3f} "
          f"{r['DeepFool']:>8.3f} {r['BPDA-PGD']:>8.3f}")
write_csv("smoothing", SMOOTHING)

# %% [markdown] nbgrader={"grade": false, "grade_id": "squeezing_study_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Feature squeezing and the binary detector
#
# Squeezers as in Xu et al., with this lab's odd-sized median: 1-bit depth and a 3x3 median
# on the digits, 5-bit depth and a 3x3 median on the course images. The threshold is chosen
# at `fpr` on the clean validation images; the detection rate counts the adversarial images
# that fool the undefended model. The binary detector is trained on clean training images
# and their FGSM versions only: PGD and DeepFool are attacks it has never seen.

# %% nbgrader={"grade": false, "grade_id": "detection_study", "locked": true, "schema_version": 3, "solution": false, "task": false}
BITS = {"digits": 1, "course": 5}
SQUEEZERS = {name: [lambda b, k=BITS[name]: squeeze_bits(b, k), smoother(3)] for name in DATASETS}
SQUEEZING, DETECTOR, THRESHOLDS = [], [], {}
for name, model in MODELS.items():
    s = SPLITS[name]
    clean_pred = predict(model, s["x_test"])
    val_scores = feature_squeezing_score(model, s["x_val"], SQUEEZERS[name])
    THRESHOLDS[name] = detector_threshold(val_scores, fpr)
    test_scores = feature_squeezing_score(model, s["x_test"], SQUEEZERS[name])
    row = {"dataset": name, "bits": BITS[name], "threshold": THRESHOLDS[name],
           "false_positive_rate": (test_scores > THRESHOLDS[name]).float().mean().item()}
    for attack, x_adv in ADV[name].items():
        fooled = (clean_pred == s["y_test"]) & (predict(model, x_adv) != s["y_test"])
        scores = feature_squeezing_score(model, x_adv[fooled], SQUEEZERS[name])
        row[attack] = (scores > THRESHOLDS[name]).float().mean().item() if fooled.any() else float("nan")
        row[f"{attack}_n"] = int(fooled.sum())
    SQUEEZING.append(row)

    seed_everything(seed)
    x_fgsm_train = fgsm(model, s["x_train"], s["y_train"], eps=EPS[name])
    detector = BinaryDetector(model, tuple(s["x_train"].shape[1:]))
    detector = train_detector(detector, s["x_train"], x_fgsm_train, epochs=SIZES["detector_epochs"],
                              lr=1e-2, batch_size=128, seed=seed)
    for attack, x_adv in ADV[name].items():
        rates = detector_rates(detector, s["x_test"], x_adv)
        DETECTOR.append({"dataset": name, "attack": attack, "trained_on": "FGSM",
                         "seen": attack == "FGSM", **rates})
print("feature squeezing (detection rate of successful adversarial images at the threshold):")
for r in SQUEEZING:
    print(f"  {r['dataset']:>7}: threshold {r['threshold']:.3f}, clean test FPR "
          f"{r['false_positive_rate']:.3f}; " + ", ".join(
              f"{a} {r[a]:.3f} (n={r[a + '_n']})" for a in ADV[r['dataset']]))
print("binary detector (trained on FGSM):")
for r in DETECTOR:
    print(f"  {r['dataset']:>7} {r['attack']:>8}{'' if r['seen'] else ' (unseen)':<9}: detection "
          f"{r['detection_rate']:.3f}, false positives {r['false_positive_rate']:.3f}")
write_csv("feature-squeezing", SQUEEZING)
write_csv("binary-detector", DETECTOR)

# %% [markdown] nbgrader={"grade": false, "grade_id": "smoothing_figure_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# The figure `input-defenses`: accuracy against the median filter's window, clean and
# under each attack (window 0: no filter), on each dataset.

# %% nbgrader={"grade": false, "grade_id": "smoothing_figure", "locked": true, "schema_version": 3, "solution": false, "task": false}
fig, axes = plt.subplots(1, len(MODELS), figsize=(4.2 * len(MODELS), 3.3), sharey=True)
styles = {"clean": "o-", "FGSM": "s-", "PGD": "^-", "DeepFool": "v-", "BPDA-PGD": "x--"}
for ax, name in zip(np.atleast_1d(axes), MODELS, strict=True):
    rows = [r for r in SMOOTHING if r["dataset"] == name]
    for key, style in styles.items():
        ax.plot([r["window"] for r in rows], [r[key] for r in rows], style, label=key)
    ax.set_title(f"{name} ({DATASETS[name].name}), eps {EPS[name]:.3g}")
    ax.set_xlabel("median window (0: none)")
    ax.set_xticks([0, *windows])
    ax.set_ylim(-0.03, 1.03)
np.atleast_1d(axes)[0].set_ylabel("accuracy")
np.atleast_1d(axes)[0].legend(fontsize=7)
fig.tight_layout()
save_figure(fig, "input-defenses", caption=CAPTION)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "distillation_study_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Defensive distillation, and the attack on the logits
#
# For a fair comparison the undefended model here is trained with the same procedure
# (`train_at_temperature` at $T = 1$, same data, epochs and learning rate) as the teacher and
# the student (at $T$ = `temperature`); all three have the architecture of Lab 6's model
# (narrower in the `smoke` and `cpu` profiles). Attack success counts the test images each model classifies
# correctly. FGSM uses the cross-entropy of the deployed model (its softmax at $T = 1$);
# the adaptive attack is your `margin_attack` on the logits (PGD steps).

# %% nbgrader={"grade": false, "grade_id": "distillation_study", "locked": true, "schema_version": 3, "solution": false, "task": false}
DISTILLATION, DISTILLED = [], {}
for name, reference in MODELS.items():
    s, data = SPLITS[name], DATASETS[name]
    config = dict(reference.config)  # the same architecture (narrower in the smoke profile)
    config["channels"] = [max(4, int(c * SIZES["width"])) for c in config["channels"]]
    config["hidden"] = max(16, int(config["hidden"] * SIZES["width"]))

    architecture = type(reference)

    def make_model(architecture=architecture, config=config):
        return architecture(**config).to(DEVICE)

    settings = dict(epochs=SIZES["distill_epochs"], lr=distill_lr, batch_size=64, seed=seed)
    x_distill = data.x_train[: SIZES["n_distill"]]
    y_distill = data.y_train[: SIZES["n_distill"]]
    seed_everything(seed)
    plain = train_at_temperature(make_model(), x_distill, y_distill, T=1.0, **settings)
    seed_everything(seed)
    teacher, student = distill(make_model, x_distill, y_distill, T=temperature, **settings)
    DISTILLED[name] = student
    for label, net in (("plain", plain), ("distilled", student)):
        correct = predict(net, s["x_test"]) == s["y_test"]
        with torch.no_grad():
            logits = torch.cat([net(xb.to(DEVICE)).cpu() for xb in s["x_test"].split(256)])
        saturated = (torch.softmax(logits, 1).max(1).values == 1).float().mean().item()
        row = {"dataset": name, "model": label, "clean": correct.float().mean().item(),
               "logit_scale": logits.abs().mean().item(), "saturated": saturated}
        for e in distill_eps:
            row[f"FGSM {e:g}"] = success(net, fgsm(net, s["x_test"], s["y_test"], eps=e),
                                         s["y_test"], correct)
            x_margin = batched(lambda xb, yb, e=e, net=net: margin_attack(
                net, xb, yb, eps=e, steps=SIZES["steps"]), s["x_test"], s["y_test"])
            row[f"margin {e:g}"] = success(net, x_margin, s["y_test"], correct)
        DISTILLATION.append(row)
for r in DISTILLATION:
    print(f"{r['dataset']:>7} {r['model']:>9}: clean {r['clean']:.3f}, mean |logit| "
          f"{r['logit_scale']:.1f}, softmax saturated on {r['saturated']:.0%}; attack success " +
          ", ".join(f"{k} {r[k]:.3f}" for k in r if k.startswith(("FGSM", "margin"))))
write_csv("distillation", DISTILLATION)

fig, axes = plt.subplots(1, len(MODELS), figsize=(4.2 * len(MODELS), 3.3), sharey=True)
keys = [f"{a} {e:g}" for a in ("FGSM", "margin") for e in distill_eps]
for ax, name in zip(np.atleast_1d(axes), MODELS, strict=True):
    rows = {r["model"]: r for r in DISTILLATION if r["dataset"] == name}
    where = np.arange(len(keys))
    for offset, label in ((-0.2, "plain"), (0.2, "distilled")):
        ax.bar(where + offset, [rows[label][k] for k in keys], width=0.4,
               label=f"{label} (T = {1 if label == 'plain' else temperature:g})")
    ax.set_xticks(where, [k.replace("margin", "logit margin\n(adaptive)") for k in keys], fontsize=7)
    ax.set_title(f"{name} ({DATASETS[name].name})")
    ax.set_ylim(0, 1.03)
np.atleast_1d(axes)[0].set_ylabel("attack success")
np.atleast_1d(axes)[0].legend(fontsize=7)
fig.tight_layout()
save_figure(fig, "defensive-distillation", caption=CAPTION)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "explore_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Explore: an adversarial example through each squeezer
#
# Choose a dataset, an attack and a test image: the view shows the clean image, its
# adversarial version and the adversarial version after each squeezer, with the
# undefended model's prediction on each, and the squeezing score against the threshold.

# %% nbgrader={"grade": false, "grade_id": "explore", "locked": true, "schema_version": 3, "solution": false, "task": false}
def show_squeezers(dataset_name, attack, index):
    model, s = MODELS[dataset_name], SPLITS[dataset_name]
    classes = DATASETS[dataset_name].classes
    x = s["x_test"][index : index + 1]
    x_adv = ADV[dataset_name][attack][index : index + 1]
    panels = [("clean", x), (attack, x_adv),
              (f"{BITS[dataset_name]}-bit", squeeze_bits(x_adv, BITS[dataset_name]))]
    panels += [(f"median {w}", spatial_smoothing(x_adv, w)) for w in windows]
    score = float(feature_squeezing_score(model, x_adv, SQUEEZERS[dataset_name])[0])
    fig, axes = plt.subplots(1, len(panels), figsize=(1.9 * len(panels), 2.3))
    for ax, (title, image) in zip(axes, panels, strict=True):
        pred = int(predict(model, image)[0])
        shown = image[0].permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(f"{title}\n-> {classes[pred]}", fontsize=8,
                     color="C2" if pred == int(s["y_test"][index]) else "C3")
        ax.axis("off")
    flagged = "flagged" if score > THRESHOLDS[dataset_name] else "not flagged"
    fig.suptitle(f"true class {classes[int(s['y_test'][index])]}; squeezing score {score:.3f} "
                 f"(threshold {THRESHOLDS[dataset_name]:.3f}: {flagged})", fontsize=9)
    fig.tight_layout()
    return fig


explore(show_squeezers, dataset_name=list(MODELS), attack=list(ADV["digits"]),
        index=list(range(min(12, len(SPLITS["digits"]["x_test"])))))

# %% nbgrader={"grade": false, "grade_id": "results", "locked": true, "schema_version": 3, "solution": false, "task": false}
write_results(
    {"eps": EPS, "windows": windows, "fpr": fpr, "temperature": temperature,
     "distill_eps": distill_eps, "sizes": SIZES,
     "datasets": {name: DATASETS[name].name for name in DATASETS},
     "digits_dataset": DIGITS.name,
     "clean_accuracy": {name: accuracy(m, SPLITS[name]["x_test"], SPLITS[name]["y_test"])
                        for name, m in MODELS.items()},
     "smoothing": SMOOTHING, "feature_squeezing": SQUEEZING, "binary_detector": DETECTOR,
     "distillation": DISTILLATION},
    lab="lab7", profile=PROFILE, dataset=COURSE.name, seed=seed, device=DEVICE)

# %% [markdown] nbgrader={"grade": false, "grade_id": "questions", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 6. Questions for the write-up
#
# Answer in the cell below, using the tables (`smoothing.csv`, `feature-squeezing.csv`,
# `binary-detector.csv`, `distillation.csv`) and the figures (`input-defenses.pdf`,
# `defensive-distillation.pdf`).
#
# 1. **Clean cost.** What does each defense cost on clean inputs (the median filter per
#    window, the squeezing detector's false positives, the distilled model's accuracy)?
#    Why does the cost of the median filter grow with the window, and differ between the
#    two datasets?
# 2. **Detectors.** Why may a detector trained on one attack miss another? Compare the
#    binary detector's rates on FGSM (seen) with PGD and DeepFool (unseen), and feature
#    squeezing's on the three attacks.
# 3. **Distillation.** Why did the distilled model look robust to FGSM, and why is it not?
#    Use the mean logit size and the saturation column.
# 4. **Evaluating a defense.** What must an evaluation of a defense include? Which of the
#    numbers above would you have published without the adaptive attacks, and what would
#    they have claimed?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answers", "locked": false, "points": 4, "schema_version": 3, "solution": true, "task": false}
# 1. The median filter removes fine detail along with the perturbation: the larger the
#    window, the more strokes and edges it erases, so clean accuracy falls with the window.
#    Which data suffers more depends on where the information is: on the offline data the
#    course images lose faster (their small shapes and faint texture are fine detail; `cpu`
#    profile, 2026-12-01: 0.81 -> 0.64 at window 3, against 0.89 -> 0.89 for the digits). The
#    squeezing detector costs its false-positive rate (5% by construction on validation
#    data, about that on test data). Distillation costs little clean accuracy.
# 2. A detector learns the statistics of the perturbations it saw: FGSM's dense sign
#    pattern at full budget. PGD's perturbation differs and DeepFool's is small and
#    minimal, so their features look more like clean ones: detection drops on unseen
#    attacks, and an attacker who knows the detector can attack it too.
# 3. Trained at T = 100, the student's logits are about T times larger; at T = 1 its softmax
#    is one-hot in floating point, the cross-entropy's gradient underflows to zero and FGSM
#    has no direction (sign(0) = 0). The decision boundaries are no farther: the margin
#    attack on the logits (or dividing them by T) finds adversarial examples as easily as on
#    the plain model. That is gradient masking.
# 4. Adaptive attacks designed for the defense (BPDA through non-differentiable steps,
#    attacks on logits, attacks on the detector), several attacks and budgets, and sanity
#    checks (unbounded attacks reach 100%, more steps never help the defense). Without them,
#    smoothing and distillation would have been reported as robust to FGSM and PGD.
