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
# # Lab 2 — Randomized smoothing
#
# **Certified robustness by randomized smoothing** (Cohen, Rosenfeld & Kolter, ICML 2019),
# and its extension to classifiers that were never trained with noise, **denoised smoothing**
# (Salman, Sun, Yang, Kapoor & Kolter, NeurIPS 2020).
#
# Given a *base classifier* $f$, the *smoothed classifier* $g$ returns the class that $f$
# most probably returns when the input is corrupted by isotropic Gaussian noise:
#
# $$ g(x) = \arg\max_c \; \mathbb{P}\big(f(x + \varepsilon) = c\big), \qquad
#    \varepsilon \sim \mathcal{N}(0, \sigma^2 I). $$
#
# **Theorem (Cohen et al., Thm. 1).** If the top class $c_A$ has probability at least
# $\underline{p_A}$ under the noise and every other class at most
# $\overline{p_B} \le \underline{p_A}$, then $g(x + \delta) = c_A$ for every
# $\|\delta\|_2 < R = \tfrac{\sigma}{2}\big(\Phi^{-1}(\underline{p_A}) -
# \Phi^{-1}(\overline{p_B})\big)$, where $\Phi^{-1}$ is the standard normal quantile
# function. Like the paper's CERTIFY, this lab bounds only $p_A$ and uses
# $\overline{p_B} = 1 - \underline{p_A}$ (all the remaining probability could be one
# class); since $\Phi^{-1}(1 - p) = -\Phi^{-1}(p)$, the radius becomes
# $R = \sigma\, \Phi^{-1}(\underline{p_A})$, positive when $\underline{p_A} > \tfrac12$.
#
# $g$ cannot be evaluated exactly, so the paper estimates it by Monte Carlo sampling, with
# statistical guarantees (its pseudocode, which you will implement):
#
# ```
# function PREDICT(f, σ, x, n, α)
#     counts ← SAMPLEUNDERNOISE(f, x, n, σ)
#     ĉA, ĉB ← top two indices in counts
#     nA, nB ← counts[ĉA], counts[ĉB]
#     if BINOMPVALUE(nA, nA + nB, 0.5) ≤ α return ĉA
#     else return ABSTAIN
#
# function CERTIFY(f, σ, x, n0, n, α)
#     counts0 ← SAMPLEUNDERNOISE(f, x, n0, σ)
#     ĉA ← top index in counts0
#     counts ← SAMPLEUNDERNOISE(f, x, n, σ)
#     pA ← LOWERCONFBOUND(counts[ĉA], n, 1 − α)
#     if pA > ½ return prediction ĉA and radius σ Φ⁻¹(pA)
#     else return ABSTAIN
# ```
#
# **What you do.** (1) Implement the smoothed classifier: sampling under noise in batches,
# `predict`, `certify`. (2) Certify two base classifiers trained with Gaussian noise
# ($\sigma = 0.05$ and $\sigma = 0.20$), compute certified accuracy against the radius, and
# plot it. (3) Answer the question on $\sigma$. (4) Extension: certify a classifier trained
# *without* noise by putting a small denoiser in front of it, trained with two objectives.
#
# Run the cells from the top. Cells marked *YOUR CODE HERE* are yours; after each one, run
# the test cell below it. The long experiment cells show a progress bar; the `profile`
# parameter chooses their size (`smoke`: seconds, `cpu`: minutes on a laptop, `full`: the
# assignment scale, GPU recommended; `auto` picks `full` on a GPU and `cpu` otherwise).
# To change it, edit the `parameters` cell below and run the cells from there; the
# autograder ignores your edits there and always runs `smoke`. The figures, the table
# (`.csv`) and the results (`lab2-results.json`) are saved beside this notebook.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Google Colab setup: the release puts the pinned install of the course's support package
# here (labsupport.instructor.colab); this source copy does nothing.

# %% tags=["parameters"] nbgrader={"grade": false, "grade_id": "parameters", "locked": true, "schema_version": 3, "solution": false, "task": false}
profile = "auto"  # "smoke", "cpu", "full" or "auto"
dataset = "auto"  # "cifar4", "synthetic", a path to dataset-full.npz, or "auto"
seed = 0
alpha = 0.001  # failure probability of each certificate (Cohen et al.'s choice)
n0 = None  # selection samples per image (None: the profile's)
n = None  # estimation samples per image (None: the profile's)
batch_size = None  # noisy samples per forward pass (None: the profile's)
n_images = None  # test images to certify per model (None: the profile's)
denoise_sigma = 0.20  # noise level of the denoised-smoothing extension

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binomtest, norm
from statsmodels.stats.proportion import proportion_confint
from torch import nn

from labsupport.assets import load_asset
from labsupport.data import load_course_data
from labsupport.report import caption, save_figure, save_table, use_style, write_results
from labsupport.runtime import Timer, get_device, resolve_profile, seed_everything
from labsupport.train import fit, make_loader, progress

PROFILE = resolve_profile(profile)
DEVICE = get_device()
# Cohen et al. use n0 = 100, n = 100,000, alpha = 0.001 on 500 test images; the full profile
# keeps n0 and alpha and uses n = 10,000 (a smaller largest certifiable radius, see below).
SIZES = {
    "smoke": dict(n_images=4, n0=8, n=32, batch_size=40, denoiser_images=64,
                  denoiser_epochs=1, denoiser_batch=32),
    # 200 images: enough that sigma's accuracy cost exceeds the sampling error (the table
    # prints each model's 95% interval at radius 0); 100 could not resolve it on real images.
    "cpu": dict(n_images=200, n0=32, n=256, batch_size=288, denoiser_images=4000,
                denoiser_epochs=2, denoiser_batch=64),
    "full": dict(n_images=500, n0=100, n=10_000, batch_size=1000, denoiser_images=20_000,
                 denoiser_epochs=20, denoiser_batch=128),
}[PROFILE]
for key, value in dict(n0=n0, n=n, batch_size=batch_size, n_images=n_images).items():
    if value is not None:
        SIZES[key] = int(value)
seed_everything(seed)
# The smoke profile checks the plumbing; it never downloads a dataset.
DATA = load_course_data("synthetic" if PROFILE == "smoke" and dataset == "auto" else dataset)
CAPTION = caption(profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)
use_style()
print(f"profile {PROFILE} on {DEVICE}; {DATA}; sizes {SIZES}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "smooth_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. The smoothed classifier
#
# We write the smoothed classifier as one class, `Smooth`, in the style of the paper's
# reference code: its methods are named after the pseudocode. The cell below defines the
# class; each following cell adds one method to it with `@add_to_class(Smooth)`, so you can
# write and test one method at a time. (If you re-run the class cell, re-run the method cells
# after it.)
#
# Conventions:
# - `x` is **one** image, a tensor `(C, H, W)` with pixels in $[0, 1]$; the base classifier
#   takes a batch `(N, C, H, W)` and returns logits `(N, num_classes)`; its prediction is the
#   arg-max. The models normalise inside, so add the noise to the raw image (and do not clip).
# - Abstention is `Smooth.ABSTAIN` ($-1$); an abstaining `certify` returns radius `0.0`.
#
# **What you get, and what is yours.** The package hands you the base classifiers, the data
# and the plumbing (progress bars, the training loop of the extension); `scipy` and
# `statsmodels` give you the binomial test, the Clopper-Pearson interval and $\Phi^{-1}$.
# Sampling, PREDICT, CERTIFY, certified accuracy and the denoiser objectives are yours. The
# test cells use stub classifiers and reference computations from `labsupport.checks`; those
# references refuse to run inside your functions, and the tests grade your code only.

# %% nbgrader={"grade": false, "grade_id": "smooth_class", "locked": true, "schema_version": 3, "solution": false, "task": false}
def add_to_class(cls):
    """Decorator: add the decorated function to ``cls`` as a method (one method per cell)."""

    def register(function):
        setattr(cls, function.__name__, function)
        return function

    return register


class Smooth:
    """A smoothed classifier g (Cohen et al., 2019)."""

    # to abstain, Smooth returns this int
    ABSTAIN = -1

    def __init__(self, base_classifier: nn.Module, num_classes: int, sigma: float):
        """
        :param base_classifier: maps from [batch x channel x height x width] to [batch x num_classes]
        :param num_classes: the number of classes
        :param sigma: the noise level hyperparameter
        """
        self.base_classifier = base_classifier
        self.num_classes = num_classes
        self.sigma = sigma

    @property
    def device(self) -> torch.device:
        """The device of the base classifier (sample the noise there)."""
        for tensor in (*self.base_classifier.parameters(), *self.base_classifier.buffers()):
            return tensor.device
        return torch.device("cpu")


# %% [markdown] nbgrader={"grade": false, "grade_id": "sample_noise_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Task 1: sampling under noise
#
# `_sample_noise(x, num, batch_size)` is SAMPLEUNDERNOISE: draw `num` noisy copies
# $x + \varepsilon_i$, $\varepsilon_i \sim \mathcal{N}(0, \sigma^2 I)$ (fresh noise for every
# copy), classify them with the base classifier **in batches of at most `batch_size`** on the
# classifier's device (`self.device`, so that it runs on a GPU), without gradients, and return
# the number of votes for each class as a NumPy integer array of length `num_classes`. Hint:
# `torch.randn_like`, `torch.bincount` (or `np.bincount`) with `minlength`.
#
# **Requirements**
#
# - Classify exactly `num` noisy copies of `x`, in batches of at most `batch_size`.
# - Add Gaussian noise of mean 0 and standard deviation `sigma` to the raw image, without clipping the noisy copies to [0, 1] and without changing `x`.
# - Draw fresh noise for every copy, so that no two copies share their noise.
# - Classify the copies without gradients (under `torch.no_grad()`).
# - Return the votes per class as a NumPy integer array of length `num_classes`.

# %% nbgrader={"grade": false, "grade_id": "sample_noise", "locked": false, "schema_version": 3, "solution": true, "task": false}
@add_to_class(Smooth)
def _sample_noise(self, x: torch.Tensor, num: int, batch_size: int) -> np.ndarray:
    """Sample the base classifier's prediction under noisy corruptions of the input x.

    :param x: the input [channel x height x width]
    :param num: number of samples to collect
    :param batch_size: the most samples to classify in one forward pass
    :return: an ndarray[int] of length num_classes containing the per-class counts
    """
    ### BEGIN SOLUTION
    x = x.to(self.device)
    counts = torch.zeros(self.num_classes, dtype=torch.long, device=self.device)
    remaining = num
    while remaining > 0:
        this_batch_size = min(batch_size, remaining)
        remaining -= this_batch_size
        batch = x.unsqueeze(0).expand(this_batch_size, *x.shape)
        noise = torch.randn_like(batch) * self.sigma
        with torch.no_grad():
            predictions = self.base_classifier(batch + noise).argmax(dim=1)
        counts += torch.bincount(predictions, minlength=self.num_classes)
    return counts.cpu().numpy()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_sample_noise_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Visible test: counts, batching, and fresh noise of standard deviation sigma."""
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import NoiseProbe, check_samples, tiny_image

assert_own(Smooth._sample_noise, "_sample_noise")
torch.manual_seed(0)
x = tiny_image()
x_before = x.clone()
probe = NoiseProbe(num_classes=4, label=2)  # always answers class 2, records its inputs
with silent():  # (your own progress bar or prints stay out of this cell's output)
    counts = Smooth(probe, num_classes=4, sigma=0.25)._sample_noise(x, 200, 64)
check_samples(probe, x, counts, num=200, batch_size=64, sigma=0.25)
assert torch.equal(x, x_before), "_sample_noise must not modify x"
print("sampling under noise: OK")

# %% nbgrader={"grade": true, "grade_id": "test_sample_noise_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import NoiseProbe, StubClassifier, check_samples, tiny_image

assert_own(Smooth._sample_noise, "_sample_noise")
for sigma, num, bs in [(0.05, 257, 100), (0.5, 90, 7), (0.12, 64, 64)]:
    torch.manual_seed(1)
    x = tiny_image(seed=3)
    x_before = x.clone()
    probe = NoiseProbe(num_classes=3, label=1)
    with silent():
        counts = Smooth(probe, num_classes=3, sigma=sigma)._sample_noise(x, num, bs)
    check_samples(probe, x, counts, num=num, batch_size=bs, sigma=sigma)
    assert torch.equal(x, x_before), "_sample_noise must not modify x"
# counts are the base classifier's votes
torch.manual_seed(2)
stub = StubClassifier([0.2, 0.5, 0.3], seed=4)
with silent():
    counts = Smooth(stub, num_classes=3, sigma=0.1)._sample_noise(tiny_image(), 300, 128)
assert counts.tolist() == stub.counts().tolist(), (counts, stub.counts())
assert isinstance(counts, np.ndarray) and np.issubdtype(counts.dtype, np.integer)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "predict_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Task 2: `predict`
#
# PREDICT draws `n` samples, takes the two most-voted classes, and returns the top one only
# if a **two-sided binomial test** rejects "both are equally likely" at level `alpha`
# (`scipy.stats.binomtest(nA, nA + nB, p=0.5).pvalue <= alpha`); otherwise it abstains. Then
# the probability that it returns a class other than $g(x)$ is at most $\alpha$
# (Cohen et al., Prop. 1). Put the base classifier in eval mode first.
#
# **Requirements**
#
# - Put the base classifier in eval mode before sampling.
# - Draw `n` noisy samples and take the two most-voted classes, `cA` (the top one) and `cB`.
# - Return `cA` only when the two-sided binomial test of `nA` successes in `nA + nB` trials at p = 0.5 has a p-value of at most `alpha`.
# - Otherwise return `Smooth.ABSTAIN`.

# %% nbgrader={"grade": false, "grade_id": "predict", "locked": false, "schema_version": 3, "solution": true, "task": false}
@add_to_class(Smooth)
def predict(self, x: torch.Tensor, n: int, alpha: float, batch_size: int) -> int:
    """Monte Carlo algorithm for evaluating the prediction of g at x. With probability at
    least 1 - alpha, the class returned by this method will equal g(x).

    :param x: the input [channel x height x width]
    :param n: the number of Monte Carlo samples to use
    :param alpha: the failure probability
    :param batch_size: batch size to use when evaluating the base classifier
    :return: the predicted class, or ABSTAIN
    """
    ### BEGIN SOLUTION
    self.base_classifier.eval()
    counts = self._sample_noise(x, n, batch_size)
    top2 = counts.argsort()[::-1][:2]
    count1, count2 = int(counts[top2[0]]), int(counts[top2[1]])
    if binomtest(count1, count1 + count2, p=0.5).pvalue > alpha:
        return Smooth.ABSTAIN
    return int(top2[0])
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_predict_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Visible test: a clear winner is predicted; a tie, or a close race, abstains."""
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import StubClassifier, check_prediction, stub_sampling, tiny_image

assert_own(Smooth.predict, "predict")
# (class probabilities of the stub under noise, n, alpha, the answer these votes call for)
cases = [([0.1, 0.8, 0.1, 0.0], 100, 0.001, 1),  # a clear winner
         ([0.5, 0.0, 0.5, 0.0], 100, 0.001, Smooth.ABSTAIN),  # a tie
         ([0.3, 0.3, 0.2, 0.2], 400, 0.01, Smooth.ABSTAIN),  # cA barely ahead of cB
         ([0.4, 0.6], 100, 0.05, Smooth.ABSTAIN)]  # votes 41 / 59: two-sided p-value 0.089
# stub_sampling: within the block, _sample_noise counts the stub's votes (graded apart from
# your _sample_noise, which has its own tests).
with stub_sampling(Smooth), silent():
    for probs, n_, alpha_, answer in cases:
        torch.manual_seed(0)
        stub = StubClassifier(probs, seed=0)  # votes drawn from probs; records them
        prediction = Smooth(stub, num_classes=len(probs), sigma=0.25).predict(tiny_image(), n=n_, alpha=alpha_, batch_size=32)
        check_prediction(stub, prediction, n=n_, alpha=alpha_)
        assert prediction == answer, (probs, prediction)
print("predict: OK")

# %% nbgrader={"grade": true, "grade_id": "test_predict_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import StubClassifier, check_prediction, stub_sampling, tiny_image

assert_own(Smooth.predict, "predict")
cases = [([0.3, 0.7], 60, 0.05), ([0.4, 0.6], 200, 0.001), ([0.45, 0.1, 0.45], 500, 0.01),
         ([0.05, 0.05, 0.9], 20, 0.001), ([0.35, 0.65], 120, 0.001), ([0.0, 1.0], 9, 0.01),
         ([0.25, 0.35, 0.3, 0.1], 300, 0.05), ([0.42, 0.58], 100, 0.05),
         ([0.4, 0.6], 120, 0.01), ([0.2, 0.2, 0.2, 0.4], 50, 0.01)]
decided = abstained = 0
with stub_sampling(Smooth), silent():
    for seed_ in range(3):
        for probs, n_, alpha_ in cases:
            torch.manual_seed(seed_)
            stub = StubClassifier(probs, seed=seed_)
            prediction = Smooth(stub, num_classes=len(probs), sigma=0.3).predict(tiny_image(), n_, alpha_, 16)
            check_prediction(stub, prediction, n=n_, alpha=alpha_)
            assert isinstance(prediction, (int, np.integer))
            decided += prediction != Smooth.ABSTAIN
            abstained += prediction == Smooth.ABSTAIN
assert decided and abstained
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "certify_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Task 3: `certify`
#
# CERTIFY first draws `n0` **selection** samples to guess the top class $\hat c_A$, then `n`
# **fresh estimation** samples to bound its probability: reusing the selection samples would
# bias the estimate upwards (the class was chosen *because* it won on them). The bound is the
# **one-sided** $(1 - \alpha)$ Clopper-Pearson lower confidence bound on $p_A$ from $n_A$
# successes in $n$ trials. `statsmodels`' `proportion_confint(nA, n, alpha=..., method="beta")`
# returns a *two-sided* interval at level `1 - alpha`, whose lower end is a one-sided bound at
# level `1 - alpha / 2`: so pass `alpha=2 * alpha` and take element `[0]`.
# If $\underline{p_A} > \tfrac12$, return $\hat c_A$ and the radius
# $R = \sigma\, \Phi^{-1}(\underline{p_A})$ (`scipy.stats.norm.ppf`); otherwise abstain with
# radius `0.0`. With probability at least $1 - \alpha$ a returned certificate is correct.
#
# **Requirements**
#
# - Put the base classifier in eval mode before sampling.
# - Select `cA` as the top class of `n0` selection samples, then count its votes `nA` in `n` fresh estimation samples (never reuse the selection samples).
# - Bound `pA` from below with the one-sided `(1 - alpha)` Clopper-Pearson bound on `nA` successes in `n` trials, computed by `_lower_confidence_bound`.
# - Abstain, returning `(Smooth.ABSTAIN, 0.0)`, when that lower bound is at most 1/2.
# - Otherwise return `cA` and the radius `sigma * norm.ppf(pA_lower)`, where `pA_lower` is that lower bound.

# %% nbgrader={"grade": false, "grade_id": "certify", "locked": false, "schema_version": 3, "solution": true, "task": false}
@add_to_class(Smooth)
def _lower_confidence_bound(self, NA: int, N: int, alpha: float) -> float:
    """Returns a (1 - alpha) lower confidence bound on a bernoulli proportion.

    This function uses the Clopper-Pearson method.

    :param NA: the number of "successes"
    :param N: the number of total draws
    :param alpha: the failure probability (the bound holds with probability at least 1 - alpha)
    :return: a lower bound on the binomial proportion which holds true w.p at least (1 - alpha) over the samples
    """
    ### BEGIN SOLUTION
    return proportion_confint(NA, N, alpha=2 * alpha, method="beta")[0]
    ### END SOLUTION


@add_to_class(Smooth)
def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int) -> tuple[int, float]:
    """Monte Carlo algorithm for certifying that g's prediction around x is constant within
    some L2 radius. With probability at least 1 - alpha, the class returned by this method
    will equal g(x), and g's prediction will be robust within an L2 ball of radius R around x.

    :param x: the input [channel x height x width]
    :param n0: the number of Monte Carlo samples to use for selection
    :param n: the number of Monte Carlo samples to use for estimation
    :param alpha: the failure probability
    :param batch_size: batch size to use when evaluating the base classifier
    :return: (predicted class, certified radius)
             in the case of abstention, the class will be ABSTAIN and the radius 0.
    """
    ### BEGIN SOLUTION
    self.base_classifier.eval()
    # draw samples of f(x + epsilon) to select the top class
    counts_selection = self._sample_noise(x, n0, batch_size)
    cAHat = int(counts_selection.argmax())
    # draw fresh samples to estimate a lower bound on pA
    counts_estimation = self._sample_noise(x, n, batch_size)
    nA = int(counts_estimation[cAHat])
    pABar = self._lower_confidence_bound(nA, n, alpha)
    if pABar <= 0.5:
        return Smooth.ABSTAIN, 0.0
    radius = self.sigma * norm.ppf(pABar)
    return cAHat, float(radius)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_certify_visible", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Visible test: fresh samples, the one-sided Clopper-Pearson bound, the radius, abstention."""
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import StubClassifier, check_certificate, stub_sampling, tiny_image

assert_own(Smooth.certify, "certify")
assert_own(Smooth._lower_confidence_bound, "_lower_confidence_bound")
with stub_sampling(Smooth), silent():  # _sample_noise counts the stub's votes, as for predict
    torch.manual_seed(0)
    stub = StubClassifier([0.05, 0.9, 0.05, 0.0], seed=1)
    certificate = Smooth(stub, num_classes=4, sigma=0.25).certify(tiny_image(), n0=20, n=500, alpha=0.001, batch_size=128)
    check_certificate(stub, certificate, n0=20, n=500, sigma=0.25, alpha=0.001)
    assert certificate[0] == 1 and certificate[1] > 0
    print(f"certify: class {certificate[0]}, radius {certificate[1]:.4f}")
    # cA wins 54 of the 100 estimation samples, but the lower bound on pA is below 1/2: abstain.
    stub = StubClassifier([0.45, 0.55], seed=0)
    certificate = Smooth(stub, num_classes=2, sigma=0.25).certify(tiny_image(), n0=16, n=100, alpha=0.001, batch_size=64)
    check_certificate(stub, certificate, n0=16, n=100, sigma=0.25, alpha=0.001)
    assert certificate == (Smooth.ABSTAIN, 0.0), certificate
# The helper: the one-sided (1 - alpha) Clopper-Pearson lower bound.
from labsupport.checks.smoothing import clopper_pearson_lower

with silent():
    bound = Smooth(stub, num_classes=2, sigma=0.25)._lower_confidence_bound(990, 1000, 0.01)
assert abs(bound - clopper_pearson_lower(990, 1000, 0.01)) < 1e-12, bound
print("certify: OK")

# %% nbgrader={"grade": true, "grade_id": "test_certify_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import (
    StubClassifier,
    check_certificate,
    clopper_pearson_lower,
    stub_sampling,
    tiny_image,
)

assert_own(Smooth.certify, "certify")
assert_own(Smooth._lower_confidence_bound, "_lower_confidence_bound")
cases = [([0.02, 0.98], 0.5, 10, 1000, 0.001, 64), ([0.1, 0.15, 0.75], 0.12, 30, 300, 0.01, 7),
         ([0.45, 0.55], 0.25, 16, 100, 0.001, 50), ([0.0, 0.0, 1.0], 0.2, 5, 50, 0.001, 50),
         ([0.5, 0.5], 0.3, 40, 400, 0.05, 400), ([0.3, 0.7], 1.5, 8, 2000, 0.0001, 333),
         ([0.4, 0.6], 0.1, 12, 60, 0.01, 25), ([0.2, 0.1, 0.7], 0.75, 50, 150, 0.05, 1000)]
certified = abstained = 0
with stub_sampling(Smooth), silent():
    for seed_ in range(2):
        for probs, sigma, n0_, n_, alpha_, bs in cases:
            torch.manual_seed(seed_)
            stub = StubClassifier(probs, seed=seed_ + 10)
            certificate = Smooth(stub, num_classes=len(probs), sigma=sigma).certify(tiny_image(), n0_, n_, alpha_, bs)
            check_certificate(stub, certificate, n0=n0_, n=n_, sigma=sigma, alpha=alpha_)
            certified += certificate[0] != Smooth.ABSTAIN
            abstained += certificate[0] == Smooth.ABSTAIN
assert certified and abstained
helper = Smooth(StubClassifier([1.0]), num_classes=1, sigma=1.0)
for k, n_, alpha_ in [(0, 10, 0.001), (10, 10, 0.001), (990, 1000, 0.01), (51, 100, 0.05)]:
    with silent():
        bound = helper._lower_confidence_bound(k, n_, alpha_)
    assert abs(bound - clopper_pearson_lower(k, n_, alpha_)) < 1e-12, (k, n_, alpha_, bound)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Certifying two noise-trained classifiers
#
# The course hands out two base classifiers, trained with Gaussian noise augmentation at
# $\sigma = 0.05$ and $\sigma = 0.20$ (the same noise the smoothed classifier samples; built
# from a recipe and cached the first time you load them). We certify each on the same test
# images, with the smoothing $\sigma$ equal to its training $\sigma$.

# %% nbgrader={"grade": false, "grade_id": "certify_experiment", "locked": true, "schema_version": 3, "solution": false, "task": false}
SIGMAS = (0.05, 0.20)
BASE = {sigma: load_asset(f"lab2-noise-{sigma:.2f}", dataset=DATA, profile=PROFILE, device=DEVICE)
        for sigma in SIGMAS}
X_CERT, Y_CERT = DATA.x_test[: SIZES["n_images"]], DATA.y_test[: SIZES["n_images"]]


def certify_images(model, sigma, desc):
    """Certify every image of X_CERT with the smoothed `model`; per-image results."""
    smooth = Smooth(model, num_classes=DATA.num_classes, sigma=sigma)
    predictions, radii = [], []
    with Timer(DEVICE) as timer:
        for x in progress(X_CERT, desc=desc, total=len(X_CERT)):
            prediction, radius = smooth.certify(x, SIZES["n0"], SIZES["n"], alpha, SIZES["batch_size"])
            predictions.append(prediction)
            radii.append(radius)
    samples = len(X_CERT) * (SIZES["n0"] + SIZES["n"])
    print(f"{desc}: {timer.seconds:.1f} s, {samples / timer.seconds:,.0f} noisy samples/s")
    return {"predictions": np.array(predictions), "radii": np.array(radii, dtype=float),
            "labels": Y_CERT.numpy(), "seconds": timer.seconds}


CERTIFIED = {}
for sigma, model in BASE.items():
    print(f"sigma = {sigma:.2f}: clean test accuracy of the base classifier "
          f"{model.asset_meta['test_accuracy']:.3f}")
    CERTIFIED[f"noise-{sigma:.2f}"] = certify_images(model, sigma, f"certify sigma={sigma:.2f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "certified_accuracy_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Task 4: certified accuracy
#
# The **certified accuracy at radius $r$** is the fraction of test images that the smoothed
# classifier classifies correctly *and* certifies with radius at least $r$ (Cohen et al.,
# Sec. 4): an abstention or a wrong class never counts. Each certificate holds with
# probability at least $1 - \alpha$ over the Monte Carlo samples, so the certified accuracy
# is itself a statement that holds with high probability (Cohen et al. report the same
# quantity, with $\alpha = 0.001$), not a certainty. Write `certified_accuracy`, which
# takes the per-image predictions, true labels and radii (NumPy arrays) and a sequence of
# radii, and returns a NumPy float array with the certified accuracy at each of them.
#
# **Requirements**
#
# - Count an image at radius `r` only if its prediction equals its label, so that an abstention or a wrong class never counts.
# - Count it only if its certified radius is at least `r` (`radius >= r`).
# - Divide by the number of all images, abstentions included.
# - Return a NumPy float array with one value per radius in `at_radii`.

# %% nbgrader={"grade": false, "grade_id": "certified_accuracy", "locked": false, "schema_version": 3, "solution": true, "task": false}
def certified_accuracy(predictions: np.ndarray, labels: np.ndarray, radii: np.ndarray,
                       at_radii) -> np.ndarray:
    """Fraction of images predicted correctly with certified radius >= r, for each r in at_radii."""
    ### BEGIN SOLUTION
    correct = np.asarray(predictions) == np.asarray(labels)
    radii = np.asarray(radii, dtype=float)
    return np.array([np.mean(correct & (radii >= r)) for r in at_radii], dtype=float)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_certified_accuracy_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Visible test: a hand-made example (an abstention, a wrong class with a large radius)."""
from labsupport.answers import assert_own
from labsupport.checks.common import silent

assert_own(certified_accuracy, "certified_accuracy")
predictions = np.array([0, 1, -1, 2, 3])
labels = np.array([0, 1, 1, 2, 0])
radii = np.array([0.5, 0.25, 0.0, 0.1, 0.9])
with silent():
    result = certified_accuracy(predictions, labels, radii, [0.0, 0.1, 0.25, 0.5, 1.0])
assert isinstance(result, np.ndarray) and result.dtype.kind == "f" and result.shape == (5,), \
    f"return a NumPy float array with one value per radius; got {result!r}"
assert np.allclose(result, [0.6, 0.6, 0.4, 0.2, 0.0]), result
print("certified accuracy: OK")

# %% nbgrader={"grade": true, "grade_id": "test_certified_accuracy_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks.common import silent

assert_own(certified_accuracy, "certified_accuracy")
rng = np.random.default_rng(0)
labels = rng.integers(0, 4, 200)
predictions = np.where(rng.random(200) < 0.7, labels, rng.integers(-1, 4, 200))
radii = np.where(predictions == -1, 0.0, rng.random(200).round(1))  # ties with the grid
grid = np.linspace(0, 1.2, 13)
with silent():
    result = certified_accuracy(predictions, labels, radii, grid)
    edge = certified_accuracy(np.array([2]), np.array([2]), np.array([0.3]), [0.3, 0.31])
    abstaining = certified_accuracy(np.array([-1, -1, 1]), np.array([0, 1, 1]),
                                    np.array([0.0, 0.0, 0.2]), (0.0, 0.2))
expected = [sum(p == y and r >= t for p, y, r in zip(predictions, labels, radii, strict=True)) / 200 for t in grid]
assert isinstance(result, np.ndarray) and result.dtype.kind == "f" and result.shape == (13,), result
assert np.allclose(result, expected), (result, expected)
assert np.all(np.diff(result) <= 0)
assert np.allclose(edge, [1.0, 0.0]), edge
assert np.allclose(abstaining, [1 / 3, 1 / 3]), abstaining
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "plot_sigmas", "locked": true, "schema_version": 3, "solution": false, "task": false}
REPORT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def max_certifiable_radius(sigma):
    """The largest radius CERTIFY can return: all n samples vote for the top class."""
    return sigma * norm.ppf(alpha ** (1 / SIZES["n"]))


def plot_curves(curves, name, title, references=()):
    """Certified accuracy against radius, one line per model, and the radius limits."""
    radii = np.linspace(0, 1.05 * max(max_certifiable_radius(s) for _, s in curves.values()), 300)
    fig, ax = plt.subplots(figsize=(6, 4.4))
    fig.subplots_adjust(bottom=0.17)  # room for the provenance caption under the x label
    for label, (result, sigma) in curves.items():
        curve = certified_accuracy(result["predictions"], result["labels"], result["radii"], radii)
        line, = ax.plot(radii, curve, label=label, ls="--" if label in references else "-")
        ax.axvline(max_certifiable_radius(sigma), color=line.get_color(), ls=":", lw=1)
    ax.plot([], [], color="0.4", ls=":", lw=1,
            label=r"largest certifiable radius $\sigma\,\Phi^{-1}(\alpha^{1/n})$")
    ax.set_xlabel("L2 radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title}\nn0 = {SIZES['n0']}, n = {SIZES['n']:,}, α = {alpha}, "
                 f"{len(X_CERT)} test images", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    save_figure(fig, name, caption=CAPTION)
    plt.show()


#: 95% Wilson interval of each model's certified accuracy at radius 0 (the test images are a
#: sample: two models differ only where their intervals do not overlap).
INTERVALS = {}


def table(results):
    """Certified accuracy at the report radii, as a dict per model (printed too, with the 95%
    interval at radius 0)."""
    rows = {}
    print("model".ljust(28) + "".join(f"r={r:<6}" for r in REPORT_RADII) + "95% interval at r=0")
    for label, result in results.items():
        values = certified_accuracy(result["predictions"], result["labels"], result["radii"], REPORT_RADII)
        rows[label] = {str(r): float(v) for r, v in zip(REPORT_RADII, values, strict=True)}
        correct = int(np.sum(result["predictions"] == result["labels"]))
        low, high = proportion_confint(correct, len(result["labels"]), alpha=0.05, method="wilson")
        INTERVALS[label] = [float(low), float(high)]
        print(label.ljust(28) + "".join(f"{v:<8.3f}" for v in values) + f"{low:.3f}-{high:.3f}")
    return rows


plot_curves({f"σ = {s:.2f}": (CERTIFIED[f"noise-{s:.2f}"], s) for s in SIGMAS},
            "randomized-smoothing-acc-vs-radius", "Randomized smoothing (Cohen et al.)")
TABLE = table(CERTIFIED)

# %% [markdown] nbgrader={"grade": false, "grade_id": "explore_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Explore: σ, n and α
#
# The certified radius depends on the model only through the fraction of votes $n_A / n$
# for the top class. Move the sliders to see the radius your `certify` would return
# ($\sigma\,\Phi^{-1}(\underline{p_A})$, with your `_lower_confidence_bound`) against
# $n_A / n$, next to the point estimate $\sigma\,\Phi^{-1}(n_A / n)$ that ignores the
# sampling error, and the largest certifiable radius $\sigma\,\Phi^{-1}(\alpha^{1/n})$. (In a
# batch run the figure is drawn once, at the lab's settings, and saved as
# `explore-radius.pdf`.)

# %% nbgrader={"grade": false, "grade_id": "explore", "locked": true, "schema_version": 3, "solution": false, "task": false}
from labsupport.explore import explore


def render_radius(sigma, n, alpha):
    """Certified radius against the top class's vote fraction, for one (sigma, n, alpha)."""
    smooth = Smooth(None, num_classes=DATA.num_classes, sigma=sigma)
    counts = np.unique(np.linspace(n // 2, n, 80).round().astype(int))
    bounds = np.array([smooth._lower_confidence_bound(int(k), n, alpha) for k in counts])
    fraction = counts / n
    certified = np.where(bounds > 0.5, sigma * norm.ppf(np.clip(bounds, 0.5, 1)), 0.0)
    naive = sigma * norm.ppf(np.clip(fraction, 0.5, 1 - 0.5 / n))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(fraction, certified, label=r"certified: $\sigma\,\Phi^{-1}(\underline{p_A})$")
    ax.plot(fraction, naive, ls=":", color="0.4", label=r"point estimate $\sigma\,\Phi^{-1}(n_A/n)$")
    ax.axhline(sigma * norm.ppf(alpha ** (1 / n)), color="C3", ls="--", lw=1,
               label=r"largest certifiable $\sigma\,\Phi^{-1}(\alpha^{1/n})$")
    ax.set_xlabel(r"votes for the top class, $n_A / n$")
    ax.set_ylabel("L2 radius")
    ax.set_title(f"σ = {sigma}, n = {n:,}, α = {alpha}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return fig


figure = explore(render_radius, static={"sigma": 0.20, "n": SIZES["n"], "alpha": alpha},
                 sigma=sorted({0.05, 0.12, 0.20, 0.25, 0.5, 1.0}),
                 n=sorted({100, 1000, 10_000, 100_000, SIZES["n"]}),
                 alpha=sorted({0.1, 0.01, 0.001, 0.0001, alpha}))
if isinstance(figure, plt.Figure):  # a batch run: the static view, saved with the others
    save_figure(figure, "explore-radius", caption=CAPTION)

# %% [markdown] nbgrader={"grade": false, "grade_id": "question_sigma_prompt", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Question 1
#
# What does increasing $\sigma$ from 0.05 to 0.20 do to the certified-accuracy curve, at
# radius 0 and at large radii? Explain why, using the radius formula
# $R = \sigma\Phi^{-1}(\underline{p_A})$, the largest certifiable radius, and what the noise
# does to the base classifier. How would you choose $\sigma$? (The figure is
# `randomized-smoothing-acc-vs-radius.pdf`, saved beside this notebook.)

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_sigma", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# A larger $\sigma$ trades accuracy for robustness. The radius scales with $\sigma$, and so
# does its ceiling $\sigma\Phi^{-1}(\alpha^{1/n})$: with $\sigma = 0.05$ no image can be
# certified beyond about $0.05 \cdot 3.2$ at $n = 10{,}000$, so its curve drops to zero at a
# small radius, while $\sigma = 0.20$ certifies four times further. But heavier noise
# destroys more of the image, so the base classifier is less accurate under noise, $p_A$ is
# smaller and more images abstain or are misclassified: the $\sigma = 0.20$ curve starts
# lower at radius 0. Choose $\sigma$ according to the radius one must certify: the smallest
# $\sigma$ whose ceiling covers it keeps the most accuracy.

# %% [markdown] nbgrader={"grade": false, "grade_id": "denoise_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. Extension: denoised smoothing (Salman et al., NeurIPS 2020)
#
# Randomized smoothing needs a base classifier that is accurate under Gaussian noise. A model
# trained on clean images is not, so smoothing it certifies little. Salman et al. prepend a
# **denoiser** $D$ and smooth $f \circ D$ instead, leaving $f$ untouched (it may be an API
# you cannot retrain). They train $D$ with two objectives:
#
# - **MSE**: $\;\mathbb{E}\,\|D(x + \varepsilon) - x\|_2^2$: reconstruct the clean image;
# - **stability** (Stab): $\;\mathbb{E}\,\ell_{CE}\big(f(D(x + \varepsilon)),\, \hat y(x)\big)$
#   with $\hat y(x) = \arg\max f(x)$: the classifier should predict on the denoised noisy
#   image what it predicts on the clean image (no labels needed; $f$ stays frozen).
#
# As in the paper, we train three denoisers and name them as the paper does: **MSE** (the
# MSE objective from scratch), **Stab** (the stability objective from scratch) and
# **Stab+MSE** (the MSE denoiser fine-tuned with the stability objective).
# Below, the denoiser is a small DnCNN-style network (it predicts the noise and subtracts it).

# %% nbgrader={"grade": false, "grade_id": "denoiser_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
class SmallDenoiser(nn.Module):
    """A shrunk DnCNN (Zhang et al. 2017): D(x) = x - N(x), N a few 3x3 convolutions."""

    def __init__(self, channels: int = 32, depth: int = 4):
        super().__init__()
        layers = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU()]
        layers.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.noise = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.noise(x)


CLEAN = load_asset("lab2-clean", dataset=DATA, profile=PROFILE, device=DEVICE)
for parameter in CLEAN.parameters():
    parameter.requires_grad_(False)  # f stays frozen
print(f"no-noise classifier: clean test accuracy {CLEAN.asset_meta['test_accuracy']:.3f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "mse_objective_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Task 5: the MSE objective
#
# `mse_objective(denoiser, x, sigma)` adds fresh Gaussian noise of standard deviation `sigma`
# to the batch `x` (on `x`'s device), denoises it, and returns the mean squared error to the
# clean batch, averaged over all pixels (`F.mse_loss`), as a scalar tensor that can be
# back-propagated into the denoiser.
#
# **Requirements**
#
# - Add fresh Gaussian noise of standard deviation `sigma` to a copy of the batch `x`, leaving `x` unchanged.
# - Compute the mean squared error between the denoised noisy batch and the clean batch `x`, averaged over all pixels (`F.mse_loss`).
# - Return it as a scalar tensor whose gradient reaches the denoiser's parameters.

# %% nbgrader={"grade": false, "grade_id": "mse_objective", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mse_objective(denoiser: nn.Module, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """MSE denoising loss E ||D(x + eps) - x||^2 (mean over pixels), eps ~ N(0, sigma^2 I)."""
    ### BEGIN SOLUTION
    noisy = x + sigma * torch.randn_like(x)
    return F.mse_loss(denoiser(noisy), x)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_mse_objective_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Visible test: the loss is the MSE between the denoised noisy batch and the clean batch."""
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import RecordingDenoiser, noise_stats, tiny_batch

assert_own(mse_objective, "mse_objective")
torch.manual_seed(0)
x = tiny_batch(64)
denoiser = RecordingDenoiser()  # records its inputs
with silent():
    loss = mse_objective(denoiser, x, 0.25)
assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"return a scalar tensor; got {loss!r}"
assert torch.equal(x, tiny_batch(64)), "mse_objective must not modify x"
assert denoiser.inputs, "denoise the noisy batch: denoiser(x + noise)"
noisy = denoiser.inputs[-1]
assert noisy.shape == x.shape
assert abs(noise_stats(noisy - x)["std"] - 0.25) < 0.01, "add Gaussian noise of std sigma"
assert torch.allclose(loss, F.mse_loss(denoiser(noisy), x)), "MSE between D(x + eps) and x"
loss.backward()
assert denoiser.mix.weight.grad is not None and denoiser.mix.weight.grad.abs().sum() > 0
print("MSE objective: OK")

# %% nbgrader={"grade": true, "grade_id": "test_mse_objective_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import RecordingDenoiser, noise_stats, tiny_batch

assert_own(mse_objective, "mse_objective")
for sigma in (0.05, 0.5):
    torch.manual_seed(3)
    x = tiny_batch(48, seed=5)
    denoiser = RecordingDenoiser(seed=2)
    with silent():
        loss = mse_objective(denoiser, x, sigma)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, "return a scalar tensor"
    assert denoiser.inputs, "denoise the noisy batch"
    noisy = denoiser.inputs[-1]
    assert abs(noise_stats(noisy - x)["std"] / sigma - 1) < 0.04, "noise of std sigma"
    assert abs(noise_stats(noisy - x)["std_across_samples"] / sigma - 1) < 0.06, "fresh noise"
    assert torch.allclose(loss, ((denoiser(noisy) - x) ** 2).mean(), rtol=1e-5), "the mean squared error to x"
    assert torch.equal(x, tiny_batch(48, seed=5)), "x must not change"
    loss.backward()
    assert denoiser.mix.weight.grad is not None and denoiser.mix.weight.grad.abs().sum() > 0
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "stability_objective_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Task 6: the stability objective
#
# `stability_objective(denoiser, classifier, x, sigma)`: the targets are the classifier's
# predicted classes on the **clean** batch (computed without gradients); the loss is the
# cross-entropy (`F.cross_entropy`, mean over the batch) between the classifier's logits on
# the denoised noisy batch and those targets. Gradients must reach the denoiser.
#
# **Requirements**
#
# - Take as targets the classifier's predicted classes (the arg-max of its logits) on the clean batch `x`.
# - Add fresh Gaussian noise of standard deviation `sigma` to a copy of the batch `x`.
# - Return the mean cross-entropy between the classifier's logits on the denoised noisy batch and those targets, as a scalar tensor whose gradient reaches the denoiser.

# %% nbgrader={"grade": false, "grade_id": "stability_objective", "locked": false, "schema_version": 3, "solution": true, "task": false}
def stability_objective(denoiser: nn.Module, classifier: nn.Module, x: torch.Tensor,
                        sigma: float) -> torch.Tensor:
    """Stability loss E CE(f(D(x + eps)), argmax f(x)), eps ~ N(0, sigma^2 I)."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        targets = classifier(x).argmax(dim=1)
    noisy = x + sigma * torch.randn_like(x)
    return F.cross_entropy(classifier(denoiser(noisy)), targets)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_stability_objective_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Visible test: cross-entropy against the classifier's own clean predictions."""
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import RecordingDenoiser, TinyClassifier, noise_stats, tiny_batch

assert_own(stability_objective, "stability_objective")
torch.manual_seed(0)
x = tiny_batch(64)
denoiser, classifier = RecordingDenoiser(), TinyClassifier()
with silent():
    loss = stability_objective(denoiser, classifier, x, 0.25)
assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"return a scalar tensor; got {loss!r}"
assert denoiser.inputs, "the classifier must see the denoised noisy batch: denoiser(x + noise)"
noisy = denoiser.inputs[-1]
assert abs(noise_stats(noisy - x)["std"] - 0.25) < 0.01, "add Gaussian noise of std sigma"
expected = F.cross_entropy(classifier(denoiser(noisy)), classifier(x).argmax(dim=1))
assert torch.allclose(loss, expected), (loss, expected)
loss.backward()
assert denoiser.mix.weight.grad is not None and denoiser.mix.weight.grad.abs().sum() > 0
print("stability objective: OK")

# %% nbgrader={"grade": true, "grade_id": "test_stability_objective_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks.common import silent
from labsupport.checks.smoothing import RecordingDenoiser, TinyClassifier, noise_stats, tiny_batch

assert_own(stability_objective, "stability_objective")
for sigma in (0.1, 0.4):
    torch.manual_seed(7)
    x = tiny_batch(40, seed=9)
    denoiser, classifier = RecordingDenoiser(seed=3), TinyClassifier(seed=4)
    with silent():
        loss = stability_objective(denoiser, classifier, x, sigma)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, "return a scalar tensor"
    assert denoiser.inputs, "the classifier must see the denoised noisy batch"
    noisy = denoiser.inputs[-1]
    assert abs(noise_stats(noisy - x)["std"] / sigma - 1) < 0.04, "noise of std sigma"
    assert torch.equal(x, tiny_batch(40, seed=9)), "x must not change"
    targets = classifier(x).argmax(dim=1)
    expected = F.cross_entropy(classifier(denoiser(noisy)), targets)
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)
    # hard targets from the clean image, not the true labels nor soft probabilities
    soft = -(F.softmax(classifier(x), 1) * F.log_softmax(classifier(denoiser(noisy)), 1)).sum(1).mean()
    assert not torch.allclose(loss, soft, rtol=1e-4)
    classifier.zero_grad()
    loss.backward()
    assert denoiser.mix.weight.grad.abs().sum() > 0
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "denoise_train", "locked": true, "schema_version": 3, "solution": false, "task": false}
X_DEN = DATA.x_train[: SIZES["denoiser_images"]]
Y_DEN = DATA.y_train[: SIZES["denoiser_images"]]  # unused by both objectives


def train_denoiser(denoiser, objective, desc):
    """Adam (lr 1e-3) on `objective(denoiser, x)` over X_DEN; returns the History."""
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=1e-3)
    loader = make_loader(X_DEN, Y_DEN, batch_size=SIZES["denoiser_batch"], seed=seed)

    def step(model, x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = objective(model, x)
        loss.backward()
        optimizer.step()
        return loss.item()

    return fit(denoiser, loader, step, epochs=SIZES["denoiser_epochs"], desc=desc)


torch.manual_seed(seed)
MSE_DENOISER = SmallDenoiser().to(DEVICE)
history = train_denoiser(MSE_DENOISER, lambda d, x: mse_objective(d, x, denoise_sigma), "denoiser (MSE)")
print(f"MSE denoiser: {history.seconds:.1f} s, final loss {history.loss[-1]:.4f}")
torch.manual_seed(seed)
STAB_DENOISER = SmallDenoiser().to(DEVICE)  # Stab: the stability objective from scratch
history = train_denoiser(STAB_DENOISER, lambda d, x: stability_objective(d, CLEAN, x, denoise_sigma),
                         "denoiser (Stab)")
print(f"Stab denoiser: {history.seconds:.1f} s, final loss {history.loss[-1]:.4f}")
STAB_MSE_DENOISER = copy.deepcopy(MSE_DENOISER)  # Stab+MSE: MSE, then fine-tuned with Stab
history = train_denoiser(STAB_MSE_DENOISER,
                         lambda d, x: stability_objective(d, CLEAN, x, denoise_sigma),
                         "denoiser (Stab+MSE)")
print(f"Stab+MSE denoiser: {history.seconds:.1f} s, final loss {history.loss[-1]:.4f}")

# %% nbgrader={"grade": false, "grade_id": "denoise_certify", "locked": true, "schema_version": 3, "solution": false, "task": false}
DENOISED = {
    "no-noise model": CLEAN,
    "+ MSE denoiser": nn.Sequential(MSE_DENOISER, CLEAN).eval(),
    "+ Stab denoiser": nn.Sequential(STAB_DENOISER, CLEAN).eval(),
    "+ Stab+MSE denoiser": nn.Sequential(STAB_MSE_DENOISER, CLEAN).eval(),
}
for label, model in DENOISED.items():
    CERTIFIED[label] = certify_images(model, denoise_sigma, f"certify {label}")

reference = f"σ = {denoise_sigma:.2f} noise-trained"
curves = {label: (CERTIFIED[label], denoise_sigma) for label in DENOISED}
if f"noise-{denoise_sigma:.2f}" in CERTIFIED:
    curves[reference] = (CERTIFIED[f"noise-{denoise_sigma:.2f}"], denoise_sigma)
plot_curves(curves, "denoised-smoothing-acc-vs-radius",
            f"Denoised smoothing, σ = {denoise_sigma:.2f} (Salman et al.)", references=(reference,))
TABLE = table(CERTIFIED)

# %% [markdown] nbgrader={"grade": false, "grade_id": "question_denoise_prompt", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Question 2
#
# Compare the denoised-smoothing curves (no denoiser, MSE, Stab, Stab+MSE, and the dashed
# noise-trained reference; `denoised-smoothing-acc-vs-radius.pdf`, saved beside this
# notebook). Why does smoothing the no-noise model alone certify so little? Which denoiser
# works best for certification, and why would the MSE objective not be enough? Why does
# the paper start the stability objective from the MSE denoiser?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_denoise", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# The no-noise classifier has never seen noisy images: under $\sigma = 0.20$ noise its
# predictions collapse to one or two classes, so $p_A$ for the correct class is low and it
# mostly abstains or certifies the wrong class. A denoiser brings the noisy images back
# towards the data the classifier knows. The MSE denoiser reconstructs pixels on average, so
# its outputs are blurry, and the classifier's decisions on them need not match its decisions
# on clean images. The stability objective optimises exactly what smoothing needs, the
# classifier's decision being constant under noise, so Stab+MSE certifies more (closer to
# the noise-trained model), without touching the classifier. Stab from scratch has only the
# classifier's decisions to learn from, no pixel target, so with a short training budget it
# starts far from a denoiser and usually does worse than Stab+MSE; starting from the MSE
# denoiser gives the stability objective a good initialisation, which is why the paper
# fine-tunes (its best results are Stab+MSE).

# %% nbgrader={"grade": false, "grade_id": "results", "locked": true, "schema_version": 3, "solution": false, "task": false}
RESULTS = {
    "certified_accuracy": TABLE,
    "certified_accuracy_r0_wilson95": INTERVALS,
    "sigma": {**{f"noise-{s:.2f}": s for s in SIGMAS}, **{label: denoise_sigma for label in DENOISED}},
    "max_certifiable_radius": {f"sigma={s:.2f}": max_certifiable_radius(s) for s in (*SIGMAS, denoise_sigma)},
    "abstain_rate": {label: float(np.mean(r["predictions"] == Smooth.ABSTAIN)) for label, r in CERTIFIED.items()},
    "certify_seconds": {label: r["seconds"] for label, r in CERTIFIED.items()},
    "base_clean_accuracy": {f"noise-{s:.2f}": BASE[s].asset_meta["test_accuracy"] for s in SIGMAS}
    | {"no-noise model": CLEAN.asset_meta["test_accuracy"]},
    "settings": {**SIZES, "alpha": alpha, "denoise_sigma": denoise_sigma},
}
save_table([{"model": label, **{f"r={r}": v for r, v in row.items()}} for label, row in TABLE.items()],
           "certified-accuracy")
print(write_results(RESULTS, lab="lab2", profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE))
