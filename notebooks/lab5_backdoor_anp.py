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
# # Lab 5 — Backdoor attacks, and Adversarial Neuron Pruning
#
# A *backdoor* (or *trojan*) is a hidden behaviour planted in a model through its training
# data: the model is accurate on clean inputs, but any input that carries a small *trigger*
# is classified as the attacker's *target class*. The attacker only needs to slip a few
# poisoned images into the training set.
#
# - **BadNets** (Gu, Dolan-Gavitt & Garg, 2017): stamp a small patch on a few training images
#   of other classes and relabel them to the target.
# - **Blend** (Chen, Liu, Li, Lu & Song, 2017): blend a full-image pattern into them,
#   faintly (opacity 0.2), so the trigger is hard to see.
# - **Clean-label** (Turner, Tsipras & Madry, 2019): poison images *of the target class*
#   and keep their correct labels, so a human inspecting the data sees nothing wrong. To make
#   the model rely on the trigger rather than on the images' natural features, first perturb
#   each image adversarially (PGD against a clean model) so its natural features point to
#   another class.
#
# A trigger is a triple (mask $m$, pattern $p$, opacity $\alpha$) and stamping it on an
# image $x$ is
#
# $$ x' = (1 - m) \odot x + m \odot \big((1 - \alpha)\, x + \alpha\, p\big). $$
#
# The defense is **Adversarial Neuron Pruning** (ANP; Wu & Wang, NeurIPS 2021): a backdoored
# network has a few neurons that are unusually *sensitive*: perturbing them slightly makes
# the network output the target class even without a trigger. ANP finds them with a little
# clean data by learning a mask over the neurons under adversarial neuron perturbations,
# then prunes the neurons whose mask is small.
#
# **What you do.** (1) Build the three triggers and (2) the stamping function. (3) Write the
# poisoned-dataset builder and (4) the attack-success rate. (5) Write the clean-label
# adversarial perturbation. Then the notebook trains a clean model and one model per attack
# and reports clean accuracy and attack success. (6)–(8) Implement ANP: the perturbed
# forward pass and the adversarial neuron perturbation, the mask learning, the pruning. The
# notebook then sweeps ANP's trade-off $\alpha$ and pruning threshold against every attack.
# (9) Answer the questions at the end.
#
# **About the support package.** `labsupport.backdoor` has its own versions of the triggers,
# stamping, poisoning and attack-success code: the later labs (Neural Cleanse, Fine-Pruning)
# build their backdoored models with them, and the test cells use them as references. They
# are not there for you to call: inside a function you define in this notebook they refuse
# to run (they raise `WriteYourOwn`), and the tests check that each function they grade is
# one you wrote here. The tests grade *your* functions on their behaviour (shapes, positions,
# the exact formulae, what is poisoned), and every experiment below runs on them. The
# package's `Trigger` class is the container your trigger functions return, and its `pgd`
# attack is yours to use in task 5.
#
# Each task ends with its **Requirements**: one line per thing your code must get right.
# The tests check every one of them.
#
# Run the cells from the top. Cells marked *YOUR CODE HERE* are yours; after each one, run
# the test cell below it. The `profile` parameter chooses the size of the experiments
# (`smoke`: seconds, `cpu`: minutes on a laptop, `full`: the assignment scale, GPU
# recommended; `auto` picks `full` on a GPU and `cpu` otherwise). The profile changes sizes,
# never the algorithm. To change it, edit the `parameters` cell below and run the cells from
# there; the autograder ignores your edits there and always runs `smoke`. The figures, the
# tables (`.csv`) and the results (`lab5-results.json`) are saved beside this notebook.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Google Colab setup: the release puts the pinned install of the course's support package
# here (labsupport.instructor.colab); this source copy does nothing.

# %% tags=["parameters"] nbgrader={"grade": false, "grade_id": "parameters", "locked": true, "schema_version": 3, "solution": false, "task": false}
profile = "auto"  # "smoke", "cpu", "full" or "auto"
dataset = "auto"  # "cifar4", "synthetic", a path to dataset-full.npz, or "auto"
seed = 0
target = 0  # the attacks' target class
poison_rate = 0.05  # fraction of the training set that is poisoned
blend_alpha = 0.2  # opacity of the Blend trigger
clean_label_eps = 16 / 255  # L-inf budget of the clean-label adversarial perturbation
clean_label_steps = 10  # PGD steps per restart
clean_label_restarts = 3  # PGD restarts (a sample stops once the clean model misclassifies it)
anp_eps = 0.4  # bound on the neurons' multiplicative perturbations
anp_alpha = 0.2  # weight of the natural loss (1 - alpha on the robust loss)
anp_threshold = 0.2  # the paper's pruning threshold (prune the neurons whose mask is below it)
anp_max_drop = 0.02  # the defender's threshold: clean-split accuracy may drop this much
anp_lr = 0.2  # learning rate of the mask (SGD, momentum 0.9)
anp_iters = None  # mask-learning iterations (None: the profile's)
anp_alphas = None  # the sweep over alpha (None: the profile's)
anp_thresholds = None  # the sweep over the threshold (None: the profile's)
n_clean = None  # clean images ANP learns its masks on, from the training set (None: the profile's)
n_val = None  # the defender's held-out clean images for choosing the threshold (None: the profile's)

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labsupport import backdoor as bd
from labsupport.answers import assert_own
from labsupport.attacks import pgd
from labsupport.backdoor import Trigger
from labsupport.checks import backdoor as fx
from labsupport.data import load_course_data
from labsupport.models import SimpleCNN
from labsupport.report import caption, save_figure, save_table, use_style, write_results
from labsupport.runtime import Timer, get_device, resolve_profile, seed_everything
from labsupport.train import evaluate, make_loader, predict, train_standard

PROFILE = resolve_profile(profile)
DEVICE = get_device()
SIZES = {
    "smoke": dict(n_train=800, n_test=200, n_clean=128, n_val=64, epochs=2, channels=(8, 16, 32),
                  hidden=64, anp_iters=4, anp_batch=64, anp_alphas=[0.2, 1.0],
                  anp_thresholds=[0.0, 0.2, 0.5], table_neurons=2),
    # cpu: every alpha of the sweep costs one more mask per attack (200 iterations, most of
    # the run on 2 cores), so the sweep keeps its two ends and the default; `full` has eight.
    "cpu": dict(n_train=6000, n_test=2000, n_clean=500, n_val=250, epochs=4, channels=(16, 32, 64),
                hidden=128, anp_iters=200, anp_batch=128, anp_alphas=[0.0, 0.2, 1.0],
                anp_thresholds=[round(t, 2) for t in np.arange(0.0, 0.91, 0.1)],
                table_neurons=12),
    "full": dict(n_train=19_000, n_test=4000, n_clean=500, n_val=500, epochs=20,
                 channels=(32, 64, 128), hidden=256, anp_iters=2000, anp_batch=128,
                 anp_alphas=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0],
                 anp_thresholds=[round(t, 2) for t in np.arange(0.0, 0.91, 0.05)],
                 table_neurons=30),
}[PROFILE]
for key, value in dict(anp_iters=anp_iters, anp_alphas=anp_alphas,
                       anp_thresholds=anp_thresholds, n_clean=n_clean, n_val=n_val).items():
    if value is not None:
        SIZES[key] = value
# The smoke profile checks the plumbing; it never downloads a dataset.
DATA = load_course_data("synthetic" if PROFILE == "smoke" and dataset == "auto" else dataset)
# The defender's clean data comes first: the images ANP learns its masks on, then a held-out
# validation split for choosing the threshold. The attacker poisons (part of) the rest.
SPLITS = {"mask": (0, SIZES["n_clean"]),
          "validation": (SIZES["n_clean"], SIZES["n_clean"] + SIZES["n_val"]),
          "train": (SIZES["n_clean"] + SIZES["n_val"],
                    SIZES["n_clean"] + SIZES["n_val"] + SIZES["n_train"])}
X_CLEAN, Y_CLEAN = (t[slice(*SPLITS["mask"])] for t in (DATA.x_train, DATA.y_train))
X_VAL, Y_VAL = (t[slice(*SPLITS["validation"])] for t in (DATA.x_train, DATA.y_train))
X_TRAIN, Y_TRAIN = (t[slice(*SPLITS["train"])] for t in (DATA.x_train, DATA.y_train))
X_TEST, Y_TEST = DATA.x_test[: SIZES["n_test"]], DATA.y_test[: SIZES["n_test"]]
IMAGE_SHAPE = tuple(X_TRAIN.shape[1:])
CAPTION = caption(profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)
use_style()
print(f"profile {PROFILE} on {DEVICE}; {DATA.name}: {len(X_TRAIN)} training, {len(X_CLEAN)} "
      f"mask-learning, {len(X_VAL)} validation and {len(X_TEST)} test images; classes {DATA.classes}; target {target} "
      f"({DATA.classes[target]})")

# %% [markdown] nbgrader={"grade": false, "grade_id": "triggers_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Triggers
#
# A `Trigger(mask, pattern, alpha, name)` holds a mask shaped `(1, H, W)` (one value for all
# channels) or `(C, H, W)`, a pattern shaped `(C, H, W)`, both with values in $[0, 1]$, and
# the opacity `alpha` in $[0, 1]$. It checks its arguments and says what is wrong.
#
# **Task.** Write three trigger constructors for images shaped `image_shape = (C, H, W)`:
#
# - `make_bottom_right_trigger(image_shape, size=3)` (BadNets): a `size` x `size`
#   black-and-white **checkerboard** pasted in the bottom-right corner.
# - `make_four_corner_trigger(image_shape, size=3)` (the clean-label attack's trigger, as in
#   Turner et al.): the checkerboard pasted in each of the four corners.
# - `make_gaussian_trigger(image_shape, *, seed=0, alpha=0.2)` (Blend): Gaussian noise over
#   the whole image, blended in (use a seeded `torch.Generator` or
#   `numpy.random.RandomState`).
#
# The ANP authors' code differs in two details, which we state rather than copy: its 3 x 3
# patch is the checkerboard with a black top-left pixel (we use the exact checkerboard, white
# where row + column is even), and its Blend pattern is an image file,
# `cifar_gaussian_noise.png`. The experiments below load such a file too, the committed
# `assets/triggers/gaussian-noise-seed0.png` (Gaussian noise as your function draws it,
# fixed once so every machine and lab uses the same trigger); your `make_gaussian_trigger`
# shows how it is made.
#
# **Requirements**
#
# - `make_bottom_right_trigger` has `alpha = 1` and a mask that is 1 on exactly the last
#   `size` rows and the last `size` columns and 0 elsewhere.
# - The checkerboard is 1 (white) where row + column, counted inside the patch from its
#   top-left, is even and 0 (black) where it is odd, the same in every channel.
# - `make_four_corner_trigger` has `alpha = 1` and masks exactly a `size` x `size` patch in
#   each corner, each holding the checkerboard mirrored into that corner (flipped left-right
#   on the right, upside down at the bottom).
# - `make_gaussian_trigger` has a full mask (all ones), the given `alpha`, and a pattern of
#   independent Gaussian noise with mean 0.5 and standard deviation 0.25 in every pixel and
#   channel, clipped to $[0, 1]$.
# - `make_gaussian_trigger` is deterministic in `seed`: the same seed gives the same pattern,
#   and different seeds give different patterns.

# %% nbgrader={"grade": false, "grade_id": "triggers", "locked": false, "schema_version": 3, "solution": true, "task": false}
def make_bottom_right_trigger(image_shape=(3, 32, 32), size=3):
    """BadNets' trigger: a size x size checkerboard in the bottom-right corner, alpha 1."""
    ### BEGIN SOLUTION
    c, h, w = image_shape
    mask, pattern = torch.zeros(1, h, w), torch.zeros(c, h, w)
    mask[:, h - size :, w - size :] = 1
    pattern[:, h - size :, w - size :] = checkerboard(size)
    return Trigger(mask, pattern, alpha=1.0, name="bottom-right")
    ### END SOLUTION


def make_four_corner_trigger(image_shape=(3, 32, 32), size=3):
    """The checkerboard in all four corners, alpha 1."""
    ### BEGIN SOLUTION
    c, h, w = image_shape
    mask, pattern = torch.zeros(1, h, w), torch.zeros(c, h, w)
    board = checkerboard(size)
    for rows, flip_rows in ((slice(0, size), False), (slice(h - size, h), True)):
        for cols, flip_cols in ((slice(0, size), False), (slice(w - size, w), True)):
            dims = [d for d, flip in ((0, flip_rows), (1, flip_cols)) if flip]
            mask[:, rows, cols] = 1
            pattern[:, rows, cols] = board.flip(dims) if dims else board
    return Trigger(mask, pattern, alpha=1.0, name="four-corner")
    ### END SOLUTION


def make_gaussian_trigger(image_shape=(3, 32, 32), *, seed=0, alpha=0.2):
    """Blend's trigger: full mask, N(0.5, 0.25^2) noise clipped to [0, 1], seeded."""
    ### BEGIN SOLUTION
    generator = torch.Generator().manual_seed(seed)
    pattern = (0.5 + 0.25 * torch.randn(image_shape, generator=generator)).clamp(0, 1)
    return Trigger(torch.ones(1, *image_shape[1:]), pattern, alpha=alpha, name="gaussian-noise")


def checkerboard(size):
    """A size x size board: 1 where row + column is even, else 0."""
    idx = torch.arange(size)
    return ((idx[:, None] + idx[None, :]) % 2 == 0).float()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_triggers_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(make_bottom_right_trigger, "make_bottom_right_trigger")
assert_own(make_four_corner_trigger, "make_four_corner_trigger")
assert_own(make_gaussian_trigger, "make_gaussian_trigger")
with fx.silent():
    t = make_bottom_right_trigger()
    t4, t4_even = make_four_corner_trigger(), make_four_corner_trigger(size=4)
    g1, g2 = make_gaussian_trigger(seed=0), make_gaussian_trigger(seed=0)
    g3 = make_gaussian_trigger(seed=1, alpha=0.5)
assert isinstance(t, Trigger), "return a labsupport.backdoor.Trigger"
assert t.pattern.shape == (3, 32, 32) and t.mask.shape[-2:] == (32, 32), (
    f"pattern {tuple(t.pattern.shape)}, mask {tuple(t.mask.shape)}: expected (3, 32, 32)")
expected_region = torch.zeros(32, 32, dtype=torch.bool)
expected_region[-3:, -3:] = True
assert torch.equal(fx.trigger_region(t), expected_region), (
    "the bottom-right trigger's mask must cover exactly the last 3 rows and columns")
assert torch.equal(t.pattern[:, -3:, -3:], bd.checkerboard(3).expand(3, 3, 3)), (
    f"the patch must be the checkerboard {bd.checkerboard(3).tolist()} in every channel; "
    f"got {t.pattern[0, -3:, -3:].tolist()}")
assert t.alpha == 1, f"BadNets pastes the trigger: alpha 1, got {t.alpha}"
region = fx.trigger_region(t4)
assert int(region.sum()) == 36 and all(
    bool(region[r, c].all()) for r in (slice(0, 3), slice(29, 32)) for c in (slice(0, 3), slice(29, 32))
), "the four-corner trigger's mask must cover exactly a 3x3 patch in each corner"
assert t4.alpha == 1
reference = bd.four_corner_trigger(size=4)  # an even size: mirroring shows
on = fx.trigger_region(reference).expand(3, -1, -1)
assert torch.equal(fx.trigger_region(t4_even), fx.trigger_region(reference)) and torch.equal(
    t4_even.pattern[on], reference.pattern[on]), (
    f"size 4: each corner must hold the checkerboard mirrored into it; top-right corner "
    f"expected {reference.pattern[0, :4, -4:].tolist()}, got {t4_even.pattern[0, :4, -4:].tolist()}")
assert torch.equal(g1.pattern, g2.pattern), "the Gaussian pattern must be deterministic in seed"
assert not torch.equal(g1.pattern, g3.pattern), "different seeds must give different patterns"
assert bool((g1.mask == 1).all()) and g1.alpha == 0.2 and g3.alpha == 0.5, (
    "Blend: a full mask and the given alpha")
p = g1.pattern
near = ((p - 0.5).abs() < 0.25).float().mean().item()  # N(0.5, 0.25^2): 68% within one std
clipped = ((p <= 0.5 / 255) | (p >= 1 - 0.5 / 255)).float().mean().item()  # 4.6% beyond two
assert 0.62 < near < 0.75 and 0.02 < clipped < 0.08 and 0.45 < p.mean().item() < 0.55, (
    f"the pattern does not look like N(0.5, 0.25^2) clipped to [0, 1]: {near:.1%} of its values "
    f"lie within 0.25 of 0.5 (expected 68%), {clipped:.1%} at 0 or 1 (expected 4.6%)")
assert not torch.equal(p[0], p[1]), "independent noise in each channel"
print("triggers: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_triggers_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(make_bottom_right_trigger, "make_bottom_right_trigger")
assert_own(make_four_corner_trigger, "make_four_corner_trigger")
assert_own(make_gaussian_trigger, "make_gaussian_trigger")
for shape, size in (((3, 16, 24), 5), ((1, 12, 12), 3), ((3, 16, 16), 4), ((3, 20, 12), 2)):
    c, h, w = shape
    with fx.silent():
        t = make_bottom_right_trigger(shape, size=size)
        t4 = make_four_corner_trigger(shape, size=size)
    assert t.pattern.shape == shape and t.alpha == 1 and t4.alpha == 1
    region = torch.zeros(h, w, dtype=torch.bool)
    region[h - size :, w - size :] = True
    assert torch.equal(fx.trigger_region(t), region)
    assert torch.equal(t.pattern[:, h - size :, w - size :], bd.checkerboard(size).expand(c, -1, -1))
    reference = bd.four_corner_trigger(size=size, image_shape=shape)
    assert torch.equal(fx.trigger_region(t4), fx.trigger_region(reference))
    on = fx.trigger_region(reference).expand(c, -1, -1)
    assert torch.equal(t4.pattern[on], reference.pattern[on])
with fx.silent():
    g = make_gaussian_trigger((3, 24, 24), seed=3, alpha=0.5)
    again = make_gaussian_trigger((3, 24, 24), seed=3, alpha=0.5)
    other = make_gaussian_trigger((3, 24, 24), seed=4)
    small = make_gaussian_trigger((1, 8, 8), seed=0)
assert g.alpha == 0.5 and other.alpha == 0.2 and bool((g.mask == 1).all())
assert torch.equal(g.pattern, again.pattern) and not torch.equal(g.pattern, other.pattern)
for p in (g.pattern, other.pattern):
    near = ((p - 0.5).abs() < 0.25).float().mean().item()
    clipped = ((p <= 0.5 / 255) | (p >= 1 - 0.5 / 255)).float().mean().item()
    assert 0.62 < near < 0.75 and 0.02 < clipped < 0.08 and 0.45 < p.mean().item() < 0.55
    assert 0.2 < p.std().item() < 0.28
    assert not torch.equal(p[0], p[1]) and not torch.equal(p[1], p[2]), "independent noise in each channel"
    assert abs(torch.corrcoef(p.flatten(1))[0, 1].item()) < 0.2
assert small.pattern.shape == (1, 8, 8) and bool((small.mask == 1).all())
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "stamp_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Stamping
#
# **Task.** Write `stamp(x, trigger)` for a batch `x` of images shaped `(N, C, H, W)` in
# $[0, 1]$ and a trigger whose mask has 1 or `C` channels (broadcasting handles both).
#
# **Requirements**
#
# - It returns $(1 - m) \odot x + m \odot ((1 - \alpha) x + \alpha p)$ for the trigger's mask
#   $m$, pattern $p$ and opacity $\alpha$.
# - It returns a new tensor and never modifies `x`.
# - The result is on `x`'s device and in `x`'s dtype (move the trigger's tensors there).

# %% nbgrader={"grade": false, "grade_id": "stamp", "locked": false, "schema_version": 3, "solution": true, "task": false}
def stamp(x, trigger):
    """Stamp ``trigger`` on every image of the batch ``x``; return a new tensor."""
    ### BEGIN SOLUTION
    m = trigger.mask.to(device=x.device, dtype=x.dtype)
    p = trigger.pattern.to(device=x.device, dtype=x.dtype)
    a = trigger.alpha
    return (1 - m) * x + m * ((1 - a) * x + a * p)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_stamp_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(stamp, "stamp")
x = fx.images(8)
x_before = x.clone()
t = fx.soft_trigger(alpha=0.3)  # a fractional mask and opacity
with fx.silent():
    out = stamp(x, t)
assert torch.equal(x, x_before), "stamp must not modify x"
m, p, a = t.mask, t.pattern, t.alpha
expected = (1 - m) * x + m * ((1 - a) * x + a * p)
fx.assert_close(out, expected, what="stamp(x, trigger)")
with fx.silent():
    out = stamp(x.half(), t)
assert out.dtype == torch.float16, f"stamp(x) must have x's dtype (float16 here); got {out.dtype}"
fx.assert_close(out, expected, what="stamp(x.half(), trigger)", atol=2e-3)
print("stamp: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_stamp_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(stamp, "stamp")
x = fx.images(5, seed=3)
x_before = x.clone()
t = fx.soft_trigger(alpha=0.7, per_channel=True, seed=4)
m, p, a = t.mask, t.pattern, t.alpha
with fx.silent():
    out = stamp(x, t)
fx.assert_close(out, (1 - m) * x + m * ((1 - a) * x + a * p), what="per-channel mask")
assert torch.equal(x, x_before)
t = bd.bottom_right_trigger(image_shape=fx.IMAGE_SHAPE)
with fx.silent():
    out = stamp(x, t)
    transparent = stamp(x, t.with_alpha(0.0))
    one = stamp(x[:1], t)
    wide = stamp(x.double(), fx.soft_trigger(alpha=0.4, seed=5))
    half = stamp(x.half(), fx.soft_trigger(alpha=0.4, seed=5))
fx.assert_close(out[:, :, -3:, -3:], t.pattern[:, -3:, -3:].expand(5, -1, -1, -1), what="the patch")
fx.assert_close(out[:, :, :-3], x[:, :, :-3], what="outside the patch")
fx.assert_close(transparent, x, what="alpha 0")
assert one.shape == (1, *fx.IMAGE_SHAPE)
assert wide.dtype == torch.float64 and half.dtype == torch.float16
fx.assert_close(half, wide, what="float16", atol=2e-3)
assert torch.equal(x, x_before)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "poison_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. Poisoning a training set
#
# **Task.** Write `poison_dataset(x, y, trigger, *, target, rate, eligible="non-target",
# relabel=True, transform=None, seed=0)` returning `(x_poisoned, y_poisoned, indices)`: the
# poisoned copies of `x` and `y`, and `indices`, a 1-d integer tensor listing the poisoned
# samples. BadNets and Blend poison samples of other classes and relabel them
# (`eligible="non-target"`, `relabel=True`); the clean-label attack poisons samples of the
# target class and keeps their labels (`eligible="target"`, `relabel=False`), perturbing
# them first with a `transform(images, labels)` that returns images.
#
# The poison rate is a fraction of the whole training set, the usual definition, which keeps
# the attacks comparable across datasets. (The ANP authors' code takes 5% of the
# *non-target* samples: 4.5% of all of CIFAR-10, but only 3.75% of four balanced classes.)
#
# **Requirements**
#
# - It poisons exactly `round(rate * len(x))` samples: `rate` is a fraction of the whole set,
#   not of the eligible samples.
# - It draws the poisoned samples without replacement (no sample twice).
# - The draw is reproducible from `seed`: the same seed gives the same samples, and a
#   different seed different ones.
# - With `eligible="non-target"` only the samples whose label is not `target` can be
#   poisoned, with `eligible="target"` only those whose label is `target`.
# - Each poisoned image is stamped with your `stamp`, after `transform` when one is given
#   (which gets the chosen images and their original labels).
# - With `relabel=True` the poisoned samples get the label `target`; with `relabel=False`
#   they keep theirs.
# - Every other sample is unchanged, and `x` and `y` themselves are never modified.
# - It raises a `ValueError` (saying what is wrong) when `rate` is outside $[0, 1]$, when
#   `target` is not one of the labels in `y`, or when fewer samples are eligible than the
#   rate asks for.

# %% nbgrader={"grade": false, "grade_id": "poison_dataset", "locked": false, "schema_version": 3, "solution": true, "task": false}
def poison_dataset(x, y, trigger, *, target, rate, eligible="non-target", relabel=True,
                   transform=None, seed=0):
    """Poison a fraction ``rate`` of (x, y); return (x_poisoned, y_poisoned, indices)."""
    ### BEGIN SOLUTION
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be a fraction in [0, 1]; got {rate}")
    if not bool((y == target).any()):
        raise ValueError(f"unknown target class {target}: the labels are {y.unique().tolist()}")
    if eligible == "non-target":
        candidates = torch.nonzero(y != target).flatten()
    elif eligible == "target":
        candidates = torch.nonzero(y == target).flatten()
    else:
        raise ValueError(f"eligible must be 'non-target' or 'target'; got {eligible!r}")
    n_poison = round(rate * len(x))
    if n_poison > len(candidates):
        raise ValueError(f"rate {rate} asks for {n_poison} samples; only "
                         f"{len(candidates)} are eligible")
    generator = torch.Generator().manual_seed(seed)
    indices = candidates[torch.randperm(len(candidates), generator=generator)[:n_poison]]
    x_poisoned, y_poisoned = x.clone(), y.clone()
    images = x[indices]
    if transform is not None:
        images = transform(images, y[indices])
    x_poisoned[indices] = stamp(images, trigger)
    if relabel:
        y_poisoned[indices] = target
    return x_poisoned, y_poisoned, indices
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_poison_dataset_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(poison_dataset, "poison_dataset")
x, y = fx.images(200), fx.balanced_labels(200)  # 50 samples of each of 4 classes
x_before, y_before = x.clone(), y.clone()
t = fx.soft_trigger(alpha=0.6)
with fx.silent():
    xp, yp, idx = poison_dataset(x, y, t, target=1, rate=0.1, seed=0)
idx = torch.as_tensor(idx).flatten().long()
assert len(idx) == 20 and len(set(idx.tolist())) == 20, (
    f"rate 0.1 of 200 samples: expected 20 distinct poisoned indices, got {idx.tolist()}")
assert bool((y[idx] != 1).all()), "BadNets/Blend poison only samples whose label is not the target"
assert bool((yp[idx] == 1).all()), "poisoned samples must be relabelled to the target"
with fx.silent():
    fx.assert_close(xp[idx], stamp(x[idx], t), what="poisoned images (stamped with your stamp)")
clean = torch.ones(200, dtype=torch.bool)
clean[idx] = False
assert torch.equal(xp[clean], x[clean]) and torch.equal(yp[clean], y[clean]), (
    "samples that are not poisoned must be unchanged")
assert torch.equal(x, x_before) and torch.equal(y, y_before), "x and y must not be modified"
x40, y40 = fx.images(40, seed=1), fx.balanced_labels(40, seed=1)
with fx.silent():
    _, _, every = poison_dataset(x40, y40, t, target=0, rate=0.75, seed=0)
    _, _, again = poison_dataset(x, y, t, target=1, rate=0.1, seed=0)
    _, _, other = poison_dataset(x, y, t, target=1, rate=0.1, seed=1)
every = torch.as_tensor(every).flatten().long()
assert sorted(every.tolist()) == torch.nonzero(y40 != 0).flatten().tolist(), (
    f"rate 0.75 of 40 samples asks for all 30 non-target samples, each once; got {sorted(every.tolist())}")
assert torch.equal(torch.as_tensor(again).flatten().long(), idx), "the same seed must poison the same samples"
assert set(torch.as_tensor(other).tolist()) != set(idx.tolist()), "another seed must poison other samples"
seen = {}


def halve(images, labels):
    seen["labels"] = labels.clone()
    return images * 0.5


with fx.silent():
    xp, yp, idx = poison_dataset(x, y, t, target=1, rate=0.1, relabel=False, transform=halve, seed=0)
    expected = stamp(x[idx] * 0.5, t)
idx = torch.as_tensor(idx).flatten().long()
assert torch.equal(yp, y), "relabel=False keeps every label"
assert sorted(seen["labels"].tolist()) == sorted(y[idx].tolist()), (
    "transform gets the chosen images' original labels")
fx.assert_close(xp[idx], expected, what="poisoned images with a transform (transform, then stamp)")
for kwargs in (dict(target=0, rate=1.5), dict(target=0, rate=-0.1), dict(target=9, rate=0.1),
               dict(target=1, rate=0.5, eligible="target")):
    try:
        with fx.silent():
            poison_dataset(x, y, t, **kwargs)
    except ValueError:
        pass
    else:
        raise AssertionError(f"poison_dataset(..., {kwargs}) must raise a ValueError")
print("poison_dataset: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_poison_dataset_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(poison_dataset, "poison_dataset")
x, y = fx.images(120, seed=5), fx.balanced_labels(120, seed=5)
x_before, y_before = x.clone(), y.clone()
t = bd.gaussian_noise_trigger(image_shape=fx.IMAGE_SHAPE)
with fx.silent():
    xp, yp, idx = poison_dataset(x, y, t, target=3, rate=0.5, seed=1)
idx = torch.as_tensor(idx).flatten().long()
assert len(idx) == 60 and len(set(idx.tolist())) == 60 and bool((y[idx] != 3).all())
assert bool((yp[idx] == 3).all())
with fx.silent():
    fx.assert_close(xp[idx], stamp(x[idx], t), what="poisoned images")
clean = torch.ones(120, dtype=torch.bool)
clean[idx] = False
assert torch.equal(xp[clean], x[clean]) and torch.equal(yp[clean], y[clean])
assert torch.equal(x, x_before) and torch.equal(y, y_before)
seen = {}


def halve(images, labels):
    seen["labels"] = labels.clone()
    return images * 0.5


with fx.silent():
    xp, yp, idx = poison_dataset(x, y, t, target=2, rate=0.1, eligible="target", relabel=False,
                                 transform=halve, seed=0)
    expected = stamp(x[torch.as_tensor(idx).flatten().long()] * 0.5, t)
idx = torch.as_tensor(idx).flatten().long()
assert len(idx) == 12 and bool((y[idx] == 2).all()), "clean-label: only target-class samples"
assert torch.equal(yp, y), "clean-label keeps every label"
assert sorted(seen["labels"].tolist()) == sorted(y[idx].tolist())
fx.assert_close(xp[idx], expected, what="transform, then stamp")
with fx.silent():
    xp, yp, idx = poison_dataset(x, y, t, target=0, rate=0.3, relabel=False, transform=halve, seed=2)
    expected = stamp(x[torch.as_tensor(idx).flatten().long()] * 0.5, t)
idx = torch.as_tensor(idx).flatten().long()
assert len(idx) == 36 and bool((y[idx] != 0).all()) and torch.equal(yp, y)
assert sorted(seen["labels"].tolist()) == sorted(y[idx].tolist())
fx.assert_close(xp[idx], expected, what="transform, then stamp")
with fx.silent():
    _, _, whole = poison_dataset(x, y, t, target=2, rate=0.25, eligible="target", seed=3)
assert sorted(torch.as_tensor(whole).tolist()) == torch.nonzero(y == 2).flatten().tolist()
with fx.silent():
    _, _, a = poison_dataset(x, y, t, target=0, rate=0.2, seed=7)
    _, _, b = poison_dataset(x, y, t, target=0, rate=0.2, seed=7)
    _, _, c = poison_dataset(x, y, t, target=0, rate=0.2, seed=8)
assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), "seeded: same seed, same samples"
assert set(torch.as_tensor(a).tolist()) != set(torch.as_tensor(c).tolist())
with fx.silent():
    xp, yp, idx = poison_dataset(x, y, t, target=0, rate=0.0)
assert len(torch.as_tensor(idx)) == 0 and torch.equal(xp, x) and torch.equal(yp, y)
for kwargs in (dict(target=0, rate=1.5), dict(target=0, rate=-0.1), dict(target=9, rate=0.1),
               dict(target=0, rate=0.5, eligible="target"), dict(target=1, rate=0.8)):
    try:
        with fx.silent():
            poison_dataset(x, y, t, **kwargs)
    except ValueError:
        pass
    else:
        raise AssertionError(f"poison_dataset(..., {kwargs}) must raise a ValueError")
assert torch.equal(x, x_before) and torch.equal(y, y_before)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "attack_success_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. Attack success rate
#
# The attack succeeds on a test image when the model classifies the *triggered* image as the
# target. Images whose true label is the target would count as successes without any
# backdoor, so they are **excluded**.
#
# **Task.** Write `attack_success_rate(model, x, y, trigger, *, target)`, which returns a
# float. The package's `predict(model, x)` returns predicted labels (batched, on the model's
# device, in eval mode).
#
# **Requirements**
#
# - Only the test images whose label is not `target` count.
# - Each of them is stamped with the trigger (with your `stamp`) before `model` classifies it.
# - The result is the fraction of them that `model` classifies as `target`.

# %% nbgrader={"grade": false, "grade_id": "attack_success", "locked": false, "schema_version": 3, "solution": true, "task": false}
def attack_success_rate(model, x, y, trigger, *, target):
    """Fraction of triggered non-target test images classified as ``target``."""
    ### BEGIN SOLUTION
    keep = y != target
    predictions = predict(model, stamp(x[keep], trigger))
    return (predictions == target).float().mean().item()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_attack_success_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(attack_success_rate, "attack_success_rate")
t = bd.bottom_right_trigger(image_shape=fx.IMAGE_SHAPE)
x, y = fx.oracle_data(40, marked=0.5)
with fx.silent():
    stamped = stamp(x.clone(), t)
# A stand-in backdoored model: it classifies clean images right, and sends the images your
# stamp produces to the target when they carry a marker (half of each class does).
oracle = fx.BackdoorOracle(t, target=0, stamped=stamped)
marked = x[:, 1, 8, 8] > 0.5
expected = marked[y != 0].float().mean().item()
with fx.silent():
    rate = attack_success_rate(oracle, x, y, t, target=0)
assert abs(float(rate) - expected) < 1e-6, (
    f"attack success {float(rate):.4f}, expected {expected:.4f} (the fraction of triggered "
    "non-target images classified as the target); are target-class images excluded?")
with fx.silent():
    elsewhere = attack_success_rate(fx.BackdoorOracle(t, target=1, stamped=stamped), x, y, t, target=0)
assert float(elsewhere) == 0.0, (
    f"a backdoor to class 1 is no success for target 0 (got {float(elsewhere):.4f}): count the "
    "images classified as the target, not the misclassified ones")
print("attack_success_rate: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_attack_success_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(attack_success_rate, "attack_success_rate")
t = bd.four_corner_trigger(image_shape=fx.IMAGE_SHAPE)
x, y = fx.oracle_data(60, marked=0.25, seed=2)
x_before = x.clone()
with fx.silent():
    stamped = stamp(x.clone(), t)
oracle = fx.BackdoorOracle(t, target=2, stamped=stamped)
marked = x[:, 1, 8, 8] > 0.5
expected = marked[y != 2].float().mean().item()
with fx.silent():
    rate = attack_success_rate(oracle, x, y, t, target=2)
    elsewhere = attack_success_rate(fx.BackdoorOracle(t, target=1, stamped=stamped), x, y, t, target=2)
assert isinstance(float(rate), float) and abs(float(rate) - expected) < 1e-6
assert float(elsewhere) == 0.0
assert torch.equal(x, x_before)
with fx.silent():
    other = attack_success_rate(fx.BackdoorOracle(t, target=3, stamped=stamped), x, y, t, target=3)
assert abs(float(other) - marked[y != 3].float().mean().item()) < 1e-6
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "clean_label_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 5. The clean-label perturbation
#
# Turner et al. poison images of the target class *without* changing their labels. Stamped
# as they are, such images teach the model little: their natural features already explain
# their label. So each one is first perturbed, within an $L_\infty$ ball of radius
# $\epsilon$, to *maximise the loss of a clean model on its true label* (PGD), which destroys
# the natural evidence for its class; the model trained on the poisoned set must then use
# the trigger to get these images right, and learns "trigger $\Rightarrow$ target".
#
# **Task.** Write `clean_label_perturb(model, x, y, *, eps, steps=10, restarts=3, seed=0)`,
# which returns the perturbed images. Each PGD run is the package's `pgd(model, x, y,
# eps=eps, steps=steps, random_start=True, seed=...)` (L-inf, untargeted: it maximises the
# loss on `y`), and a sample that a run already brought across the decision boundary is not
# attacked again. `pgd`'s step size is $2.5\,\epsilon/\text{steps}$ (Madry et al.'s rule):
# with the lab's $\epsilon = 16/255$ and 10 steps, $4/255$ per step.
#
# **Requirements**
#
# - Every PGD run takes all its steps: `pgd`'s `early_stop` stays off.
# - It makes up to `restarts` runs, each from the clean images `x` with a new random start
#   (a different seed derived from `seed`).
# - It stops early between runs: a sample that the clean model misclassifies after a run
#   keeps that run's result and is not attacked again, and a sample never misclassified keeps
#   the last run's result.
# - The result stays within `eps` of `x` (L-inf) and in $[0, 1]$, and `x` itself is never
#   modified.
#
# (Why not stop *inside* a run at the first misclassified step? That gives images just
# across the decision boundary, whose natural features still mostly say "target": measured
# with the `cpu` profile on the offline dataset, the attack success drops from 100% to 6%.)

# %% nbgrader={"grade": false, "grade_id": "clean_label", "locked": false, "schema_version": 3, "solution": true, "task": false}
def clean_label_perturb(model, x, y, *, eps, steps=10, restarts=3, seed=0):
    """PGD with restarts against ``model`` on the true labels ``y`` (Turner et al., 2019)."""
    ### BEGIN SOLUTION
    x_adv = x.clone()
    todo = torch.arange(len(x))  # the samples not misclassified yet
    for restart in range(restarts):
        if len(todo) == 0:
            break
        candidate = pgd(model, x[todo], y[todo], eps=eps, steps=steps, random_start=True,
                        seed=seed + restart)
        x_adv[todo] = candidate
        fooled = predict(model, candidate) != y[todo].cpu()
        todo = todo[~fooled]
    return x_adv
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_clean_label_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(clean_label_perturb, "clean_label_perturb")
# A model that PGD fools from about half of its random starts (never from the image itself).
model = fx.OneSidedModel()
x, y = fx.one_sided_data(48)
x_before = x.clone()
eps = fx.ONE_SIDED_EPS
with fx.silent():
    x_adv = clean_label_perturb(model, x, y, eps=eps, steps=4, restarts=4, seed=0)
    x_one = clean_label_perturb(model, x, y, eps=eps, steps=4, restarts=1, seed=0)
assert x_adv.shape == x.shape and torch.equal(x, x_before), "return new images; keep x unchanged"
gap = float((x_adv - x).abs().max())
assert gap <= eps + 1e-6, f"the perturbation leaves the eps-ball: max |x_adv - x| = {gap:.4f} > {eps:.4f}"
assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1, "images must stay in [0, 1]"
fooled = (predict(model, x_adv) != y).float().mean().item()
fooled_one = (predict(model, x_one) != y).float().mean().item()
assert fooled >= 0.75 and fooled > fooled_one, (
    f"{fooled:.0%} of the images misclassified after 4 restarts, {fooled_one:.0%} after 1: each "
    "restart needs a new random start, and a sample once misclassified keeps that result")
# On a linear model every full PGD run ends on the same corner of the eps-ball.
linear = fx.linear_classifier()
x, y = fx.clean_label_data(linear, 32)
corner = pgd(linear, x, y, eps=0.05, steps=10, seed=0)
with fx.silent():
    x_adv = clean_label_perturb(linear, x, y, eps=0.05, steps=10, restarts=2, seed=0)
fx.assert_close(x_adv, corner, atol=1e-6,
                what="the result on a linear model (every run must take all its steps)")
# Restarts stop for misclassified images: here the first run misclassifies them all.
counted = fx.CountingModel(linear)
with fx.silent():
    clean_label_perturb(counted, x, y, eps=0.3, steps=10, restarts=1, seed=0)
single = counted.images_seen
counted.images_seen = 0
with fx.silent():
    clean_label_perturb(counted, x, y, eps=0.3, steps=10, restarts=6, seed=0)
assert counted.images_seen <= 1.5 * single, (
    f"restarts must stop for misclassified images ({counted.images_seen} vs {single} images seen)")
print("clean_label_perturb: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_clean_label_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(clean_label_perturb, "clean_label_perturb")
model = fx.OneSidedModel()
x, y = fx.one_sided_data(64, seed=2)
x_before = x.clone()
eps = fx.ONE_SIDED_EPS
with fx.silent():
    runs = {r: clean_label_perturb(model, x, y, eps=eps, steps=3, restarts=r, seed=7) for r in (1, 2, 6)}
    again = clean_label_perturb(model, x, y, eps=eps, steps=3, restarts=6, seed=7)
assert torch.equal(x, x_before) and torch.equal(again, runs[6]), "seeded: the same call, the same result"
fooled = {r: (predict(model, x_adv) != y).float().mean().item() for r, x_adv in runs.items()}
assert fooled[6] >= 0.85 and fooled[6] >= fooled[2] > fooled[1] >= 0.2, fooled
for x_adv in runs.values():
    assert float((x_adv - x).abs().max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
# Full runs on a linear model, at another budget and seed.
linear = fx.linear_classifier(seed=2)
x, y = fx.clean_label_data(linear, 24, seed=2)
corner = pgd(linear, x, y, eps=0.08, steps=12, seed=1)
with fx.silent():
    fx.assert_close(clean_label_perturb(linear, x, y, eps=0.08, steps=12, restarts=3, seed=4),
                    corner, atol=1e-6, what="full runs")
# Early stop: once every image is misclassified, later restarts attack nothing.
counted = fx.CountingModel(linear)
with fx.silent():
    clean_label_perturb(counted, x, y, eps=0.4, steps=5, restarts=1, seed=0)
single = counted.images_seen
counted.images_seen = 0
with fx.silent():
    clean_label_perturb(counted, x, y, eps=0.4, steps=5, restarts=8, seed=0)
assert counted.images_seen <= 1.5 * single, (
    f"restarts must stop for misclassified images ({counted.images_seen} vs {single} images seen)")
# A less contrived model: most images fall within the budget, some resist.
model = fx.mlp_classifier(seed=1)
x, y = fx.clean_label_data(model, 24, seed=1)
with fx.silent():
    x_adv = clean_label_perturb(model, x, y, eps=fx.CLEAN_LABEL_EPS, steps=4, restarts=2, seed=3)
assert float((x_adv - x).abs().max()) <= fx.CLEAN_LABEL_EPS + 1e-6
assert (predict(model, x_adv) != y).float().mean().item() >= 0.6
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "attacks_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 6. The attacks
#
# Four models with the same architecture, recipe and seed: one trained on the clean training
# set, and one per attack trained on a poisoned copy (poison rate `poison_rate` of the whole
# training set). The clean model is also the one the clean-label attack perturbs against.
# Attack success is measured on the test set without its target-class images.
#
# The recipe augments the training images much as the ANP authors' training script does
# (`RandomCrop(32, padding=4)` and `RandomHorizontalFlip()`): each image is flipped left-right
# with probability 1/2 and the batch is shifted by up to 4 pixels in each direction, with
# reflected borders. As in the authors' code, the trigger is stamped on the stored training
# images *before* augmentation, so a poisoned image's trigger moves with it (the BadNets
# patch lands in the bottom-left corner of a flipped image). Where this differs from the
# authors' code, and why: their crop is drawn per image and fills the uncovered border with
# zeros, which at the `cpu` budget (a few epochs) cut the 3x3 corner patch off too often for
# the backdoor to implant (measured on the synthetic data on 2026-12-01: BadNets attack
# success 0.00); one shift per batch with reflected borders keeps the patch in
# view. In both cases the backdoor has to be recognised wherever the trigger lands, as in the
# paper's ResNets with their global pooling. (Without augmentation, SimpleCNN's classifier
# reads each position separately and the backdoor hides in position-specific paths; question
# 5 comes back to this.)

# %% nbgrader={"grade": false, "grade_id": "train_attacks", "locked": true, "schema_version": 3, "solution": false, "task": false}
def flip_and_shift(generator, pad=4):
    """Augmentation: flip each image left-right with probability 1/2, then shift the batch
    by a random offset of up to ``pad`` pixels (reflected borders)."""

    def augment(batch):
        flip = (torch.rand(len(batch), generator=generator) < 0.5).to(batch.device)
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        i, j = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
        padded = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
        return padded[:, :, i : i + batch.shape[2], j : j + batch.shape[3]]

    return augment


def train_model(x, y):
    """A fresh SimpleCNN trained with the course recipe (same seed for every model)."""
    seed_everything(seed)
    model = SimpleCNN(num_classes=DATA.num_classes, channels=SIZES["channels"],
                      hidden=SIZES["hidden"]).to(DEVICE)
    augment = flip_and_shift(torch.Generator().manual_seed(seed))
    train_standard(model, x, y, epochs=SIZES["epochs"], seed=seed, augment=augment)
    return model.eval()


TRIGGERS = {
    "BadNets": make_bottom_right_trigger(IMAGE_SHAPE),
    # The committed Gaussian-noise image, as the authors load cifar_gaussian_noise.png.
    "Blend": bd.blend_trigger(alpha=blend_alpha, image_shape=IMAGE_SHAPE),
    "Clean-label": make_four_corner_trigger(IMAGE_SHAPE),
}
with Timer(DEVICE) as timer:
    CLEAN_MODEL = train_model(X_TRAIN, Y_TRAIN)
print(f"clean model trained in {timer.seconds:.1f} s")


def perturb_against_clean_model(images, labels):
    return clean_label_perturb(CLEAN_MODEL, images, labels, eps=clean_label_eps,
                               steps=clean_label_steps, restarts=clean_label_restarts, seed=seed)


POISONED = {
    "BadNets": poison_dataset(X_TRAIN, Y_TRAIN, TRIGGERS["BadNets"], target=target,
                              rate=poison_rate, seed=seed),
    "Blend": poison_dataset(X_TRAIN, Y_TRAIN, TRIGGERS["Blend"], target=target,
                            rate=poison_rate, seed=seed),
    "Clean-label": poison_dataset(X_TRAIN, Y_TRAIN, TRIGGERS["Clean-label"], target=target,
                                  rate=poison_rate, eligible="target", relabel=False,
                                  transform=perturb_against_clean_model, seed=seed),
}
MODELS = {}
for name, (xp, yp, idx) in POISONED.items():
    with Timer(DEVICE) as timer:
        MODELS[name] = train_model(xp, yp)
    print(f"{name}: {len(idx)} poisoned samples, trained in {timer.seconds:.1f} s")

CLEAN_ACCURACY = evaluate(CLEAN_MODEL, X_TEST, Y_TEST)
ATTACKS = {}
for name, model in MODELS.items():
    ATTACKS[name] = {
        "clean_accuracy": evaluate(model, X_TEST, Y_TEST),
        "attack_success": attack_success_rate(model, X_TEST, Y_TEST, TRIGGERS[name], target=target),
        "clean_model_attack_success": attack_success_rate(CLEAN_MODEL, X_TEST, Y_TEST,
                                                          TRIGGERS[name], target=target),
    }
print(f"{'model':>12} | {'clean accuracy':>14} | {'attack success':>14} | "
      f"{'(clean model)':>13}")
print(f"{'clean':>12} | {CLEAN_ACCURACY:>14.3f} | {'':>14} |")
for name, row in ATTACKS.items():
    print(f"{name:>12} | {row['clean_accuracy']:>14.3f} | {row['attack_success']:>14.3f} | "
          f"{row['clean_model_attack_success']:>13.3f}")

# %% nbgrader={"grade": false, "grade_id": "plot_triggers", "locked": true, "schema_version": 3, "solution": false, "task": false}
fig, axes = plt.subplots(2, 4, figsize=(9, 4.6))
panels = [("clean image", X_TRAIN[POISONED["BadNets"][2][0]])]
for name in TRIGGERS:
    xp, _, idx = POISONED[name]
    panels.append((f"{name} poisoned", xp[idx[0]]))
panels.append(("clean-label source", X_TRAIN[POISONED["Clean-label"][2][0]]))
for name, trigger in TRIGGERS.items():
    panels.append((f"{name} trigger (alpha {trigger.alpha:g})",
                   (trigger.mask * trigger.pattern).expand(IMAGE_SHAPE)))
for ax, (title, image) in zip(axes.flat, panels, strict=True):
    ax.imshow(image.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
fig.suptitle("Triggers and poisoned training images")
fig.tight_layout()
save_figure(fig, "backdoor-triggers", caption=CAPTION)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "anp_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 7. Adversarial Neuron Pruning
#
# **Neurons.** In each convolutional block of the network a batch-norm layer computes, for
# channel $k$, $\;w_k \hat z_k + b_k$ (with $\hat z_k$ the normalised convolution output).
# These channels are ANP's *neurons*; `neuron_layers(model)` (below) lists the BN layers by
# name. ANP gives every neuron a mask value $m_k \in [0, 1]$ and perturbs it
# *multiplicatively*:
#
# $$ w_k \hat z_k + b_k \;\longrightarrow\; w_k (m_k + \delta_k)\, \hat z_k + b_k (1 + \xi_k),
#    \qquad |\delta_k|, |\xi_k| \le \epsilon. $$
#
# **Objective.** With only a small clean set $D$, ANP learns the mask by
#
# $$ \min_{m \in [0,1]^n} \;\; \alpha\, \mathcal{L}_D(m, 0, 0) \;+\; (1 - \alpha)
#    \max_{\|\delta\|_\infty, \|\xi\|_\infty \le \epsilon} \mathcal{L}_D(m, \delta, \xi), $$
#
# the natural loss (weight $\alpha$) traded against the loss under the worst neuron
# perturbation (weight $1 - \alpha$). Neurons that carry the backdoor are the ones whose
# perturbation most easily flips clean predictions to the target class; the robust loss
# drives their masks to 0. Finally, every neuron whose mask is **below** a threshold is
# pruned: its weight $w_k$ is set to 0 (its bias stays, as in the authors' code).
#
# **The lab's choices**, following the authors' reference code (`csdongxian/ANP_backdoor`):
# one signed-gradient ascent step of size $\epsilon$ from a uniform random start per
# minibatch (`anp_steps = 1`); defaults $\epsilon = 0.4$, $\alpha = 0.2$, threshold 0.2;
# the mask starts at 1 and is trained by SGD (learning rate 0.2, momentum 0.9) and clipped
# to $[0, 1]$ after every step; minibatches of 128 from 500 clean images (the authors use 1%
# of CIFAR-10's training set and 2,000 iterations; the `cpu` and `smoke` profiles use fewer
# iterations). As in the reference, the mask is learned with the network in *training mode*
# (batch-norm layers normalise with the minibatch's statistics, which keeps a perturbation
# of one layer from blowing up through the next), on a copy, so the model itself is never
# changed. The defender's clean images are the only data ANP sees: the test set is used to
# *report* results, never to choose anything.

# %% nbgrader={"grade": false, "grade_id": "neuron_layers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def neuron_layers(model):
    """The model's BatchNorm2d layers by name (e.g. 'conv1.1'): their channels are the neurons."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.BatchNorm2d)}


print({name: layer.num_features for name, layer in neuron_layers(CLEAN_MODEL).items()})

# %% [markdown] nbgrader={"grade": false, "grade_id": "anp_perturb_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### 7a. The perturbed network and the adversarial neuron perturbation
#
# A mask is a dict `{layer name: tensor of shape (num_features,)}`; a perturbation is a dict
# `{layer name: (delta, xi)}` of two such tensors.
#
# **Task.** Write
#
# - `anp_forward(model, x, mask, noise=None)`: the logits of `model` on `x` with masked (and,
#   with `noise`, perturbed) neurons. Run the model with substituted parameters, e.g.
#   `torch.func.functional_call(model, {"conv1.1.weight": ..., "conv1.1.bias": ...}, (x,))`.
# - `anp_perturb(model, x, y, mask, *, eps, steps=1, generator=None)`: the adversarial
#   neuron perturbation `{name: (delta, xi)}` for the minibatch `(x, y)`, detached;
#   `generator` is a seeded `torch.Generator` on the CPU.
#
# **Requirements**
#
# - `anp_forward` computes every BN neuron with weight `w * mask` and bias `b` without
#   `noise`, and with weight `w * (mask + delta)` and bias `b * (1 + xi)` with it,
#   differentiably in the mask and the noise.
# - `anp_forward` leaves the model as it was: its parameters and its mode (training or
#   evaluation) do not change.
# - `anp_perturb` starts `delta` and `xi` uniformly at random in $[-\epsilon, \epsilon]$,
#   drawn from `generator`.
# - It then takes `steps` ascent steps on the cross-entropy of `anp_forward(model, x, mask,
#   noise)` (the mask held constant), each adding `eps / steps` times the sign of the
#   gradient.
# - After every step it clips `delta` and `xi` to $[-\epsilon, \epsilon]$.

# %% nbgrader={"grade": false, "grade_id": "anp_perturb", "locked": false, "schema_version": 3, "solution": true, "task": false}
def anp_forward(model, x, mask, noise=None):
    """Logits of ``model`` on ``x`` with masked (and perturbed) neurons."""
    ### BEGIN SOLUTION
    params = {}
    for name, layer in neuron_layers(model).items():
        if noise is None:
            params[f"{name}.weight"] = layer.weight * mask[name]
        else:
            delta, xi = noise[name]
            params[f"{name}.weight"] = layer.weight * (mask[name] + delta)
            params[f"{name}.bias"] = layer.bias * (1 + xi)
    return torch.func.functional_call(model, params, (x,))
    ### END SOLUTION


def anp_perturb(model, x, y, mask, *, eps, steps=1, generator=None):
    """The adversarial neuron perturbation {name: (delta, xi)} within [-eps, eps]."""
    ### BEGIN SOLUTION
    mask = {name: m.detach() for name, m in mask.items()}
    noise = {}
    for name, m in mask.items():
        start = torch.rand((2, len(m)), generator=generator).to(m.device) * 2 - 1
        noise[name] = (start[0] * eps, start[1] * eps)
    for _ in range(steps):
        flat = [t.requires_grad_(True) for pair in noise.values() for t in pair]
        loss = F.cross_entropy(anp_forward(model, x, mask, noise), y)
        grads = torch.autograd.grad(loss, flat)
        with torch.no_grad():
            moved = [(t + eps / steps * g.sign()).clamp(-eps, eps) for t, g in zip(flat, grads, strict=True)]
        noise = {name: (moved[2 * i], moved[2 * i + 1]) for i, name in enumerate(noise)}
    return {name: (delta.detach(), xi.detach()) for name, (delta, xi) in noise.items()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_anp_perturb_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(anp_forward, "anp_forward")
assert_own(anp_perturb, "anp_perturb")
model = fx.bn_cnn()
x, y = fx.anp_data(model)
state = fx.model_state(model)
layers = fx.neuron_layers(model)
g = torch.Generator().manual_seed(0)
mask = {n: torch.rand(layer.num_features, generator=g) for n, layer in layers.items()}
noise = {n: (torch.rand(layer.num_features, generator=g) - 0.5, torch.rand(layer.num_features, generator=g) - 0.5)
         for n, layer in layers.items()}
ones = {n: torch.ones(layer.num_features) for n, layer in layers.items()}
with torch.no_grad(), fx.silent():
    plain, masked, noisy = (anp_forward(model, x, ones), anp_forward(model, x, mask),
                            anp_forward(model, x, mask, noise))
with torch.no_grad():
    fx.assert_close(plain, model(x), what="anp_forward with mask 1", atol=1e-5)
    fx.assert_close(masked, fx.perturbed_copy(model, mask)(x),
                    what="anp_forward(model, x, mask): weights w * mask", atol=1e-5)
    fx.assert_close(noisy, fx.perturbed_copy(model, mask, noise)(x),
                    what="anp_forward with noise: w * (mask + delta), b * (1 + xi)", atol=1e-5)
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"anp_forward changed the model's {key}"
model.train()  # ANP learns its masks in training mode
with torch.no_grad(), fx.silent():
    anp_forward(model, x, mask, noise)
assert model.training, "anp_forward must not change the model's mode (it was in training mode)"
model.load_state_dict(state)  # batch-norm statistics move in training mode
model.eval()
leaves = {n: (mask[n].clone().requires_grad_(True), noise[n][0].clone().requires_grad_(True),
              noise[n][1].clone().requires_grad_(True)) for n in layers}
with fx.silent():
    logits = anp_forward(model, x, {n: m for n, (m, _, _) in leaves.items()},
                         {n: (d, s) for n, (_, d, s) in leaves.items()})
F.cross_entropy(logits, y).backward()
assert all(t.grad is not None and float(t.grad.abs().sum()) > 0 for pair in leaves.values() for t in pair), (
    "gradients must flow from anp_forward's logits back to the mask, delta and xi")
eps = 0.3
with fx.silent():
    adv = anp_perturb(model, x, y, ones, eps=eps, generator=torch.Generator().manual_seed(0))
    adv_other = anp_perturb(model, x, y, ones, eps=eps, generator=torch.Generator().manual_seed(1))
assert set(adv) == set(layers), f"one (delta, xi) per BN layer {sorted(layers)}; got {sorted(adv)}"
for name, (delta, xi) in adv.items():
    assert delta.shape == xi.shape == (layers[name].num_features,)
    worst = max(float(delta.abs().max()), float(xi.abs().max()))
    assert worst <= eps + 1e-6, f"{name}: the perturbation leaves [-eps, eps] (max {worst:.3f})"
sizes = torch.cat([t.abs().flatten() for pair in adv.values() for t in pair])
assert bool(((sizes > 1e-6) & (sizes < eps - 1e-6)).any()) and any(
    not torch.equal(adv[n][0], adv_other[n][0]) for n in adv), (
    "one step of size eps from a uniform random start leaves some values strictly inside "
    "(-eps, eps), and another generator gives another start")
with torch.no_grad():
    natural = fx.cross_entropy(model(x), y)
    robust = fx.cross_entropy(fx.perturbed_copy(model, ones, adv)(x), y)
assert robust > natural, f"the perturbation must increase the loss ({robust:.3f} <= {natural:.3f})"
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"the model's {key} changed"
print("anp_forward, anp_perturb: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_anp_perturb_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(anp_forward, "anp_forward")
assert_own(anp_perturb, "anp_perturb")
model = fx.bn_cnn(seed=2, width=(5, 7))
x, y = fx.anp_data(model, seed=2)
state = fx.model_state(model)
layers = fx.neuron_layers(model)
# anp_forward's gradients against finite differences of the reference, in float64.
wide, xw = copy.deepcopy(model).double(), x.double()
g = torch.Generator().manual_seed(3)
point = {n: (torch.rand(layer.num_features, generator=g, dtype=torch.float64),
             (torch.rand(layer.num_features, generator=g, dtype=torch.float64) - 0.5) * 0.4,
             (torch.rand(layer.num_features, generator=g, dtype=torch.float64) - 0.5) * 0.4)
         for n, layer in layers.items()}
leaves = {n: tuple(t.clone().requires_grad_(True) for t in triple) for n, triple in point.items()}
with fx.silent():
    logits = anp_forward(wide, xw, {n: m for n, (m, _, _) in leaves.items()},
                         {n: (d, s) for n, (_, d, s) in leaves.items()})
grads = torch.autograd.grad(F.cross_entropy(logits, y),
                            [t for triple in leaves.values() for t in triple])
direction = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in grads]
analytic = float(sum((gr * d).sum() for gr, d in zip(grads, direction, strict=True)))
h, losses = 1e-6, []
for sign in (1.0, -1.0):
    offsets = iter(direction)
    shifted = {n: tuple(t + sign * h * next(offsets) for t in triple) for n, triple in point.items()}
    with torch.no_grad():
        losses.append(fx.cross_entropy(fx.perturbed_copy(
            wide, {n: m for n, (m, _, _) in shifted.items()},
            {n: (d, s) for n, (_, d, s) in shifted.items()})(xw), y))
numeric = (losses[0] - losses[1]) / (2 * h)
assert abs(numeric - analytic) <= 1e-4 * max(1.0, abs(analytic)), (numeric, analytic)
assert not wide.training
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key])
half = {n: torch.full((layer.num_features,), 0.5) for n, layer in layers.items()}
trained = copy.deepcopy(model).train()
parameters = {k: v.detach().clone() for k, v in trained.named_parameters()}
with fx.silent():
    anp_forward(trained, x, half)
    anp_perturb(trained, x, y, half, eps=0.2, generator=torch.Generator().manual_seed(0))
assert trained.training, "anp_forward and anp_perturb keep the model in training mode"
assert all(torch.equal(v, parameters[k]) for k, v in trained.named_parameters())
for steps, eps in ((1, 0.2), (4, 0.25)):
    with fx.silent():
        adv = anp_perturb(model, x, y, half, eps=eps, steps=steps,
                          generator=torch.Generator().manual_seed(1))
    for delta, xi in adv.values():
        assert float(delta.abs().max()) <= eps + 1e-6 and float(xi.abs().max()) <= eps + 1e-6
    with torch.no_grad():
        robust = fx.cross_entropy(fx.perturbed_copy(model, half, adv)(x), y)
        g = torch.Generator().manual_seed(5)
        random_losses = []
        for _ in range(8):
            rnd = {n: ((torch.rand(layer.num_features, generator=g) * 2 - 1) * eps,
                       (torch.rand(layer.num_features, generator=g) * 2 - 1) * eps)
                   for n, layer in layers.items()}
            random_losses.append(fx.cross_entropy(fx.perturbed_copy(model, half, rnd)(x), y))
    assert robust > max(random_losses), "the perturbation must beat random ones of the same size"
with fx.silent():
    zero = anp_perturb(model, x, y, half, eps=0.0, generator=torch.Generator().manual_seed(1))
    a = anp_perturb(model, x, y, half, eps=0.2, generator=torch.Generator().manual_seed(9))
    b = anp_perturb(model, x, y, half, eps=0.2, generator=torch.Generator().manual_seed(9))
    c = anp_perturb(model, x, y, half, eps=0.2, generator=torch.Generator().manual_seed(10))
assert all(float(d.abs().max()) == 0 and float(s.abs().max()) == 0 for d, s in zero.values())
assert all(torch.equal(a[n][0], b[n][0]) and torch.equal(a[n][1], b[n][1]) for n in a)
assert any(not torch.equal(a[n][1], c[n][1]) for n in a), "the start is drawn from the generator"
sizes = torch.cat([t.abs().flatten() for pair in a.values() for t in pair])
assert bool(((sizes > 1e-6) & (sizes < 0.2 - 1e-6)).any()), "a uniform random start"
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key])
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "anp_mask_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### 7b. Learning the mask
#
# **Task.** Write `anp_mask(model, x, y, *, eps, alpha, iters, lr=0.2, batch_size=128,
# steps=1, seed=0)`, which learns the masks on the clean data `(x, y)` and returns them,
# detached, as `{layer name: mask}`.
#
# **Requirements**
#
# - It works on a copy of the model in training mode (`copy.deepcopy(model).train()`), so
#   the model it is given is not changed, not even its batch-norm statistics.
# - Every mask starts at 1, and only the masks are optimised, by SGD with learning rate
#   `lr` and momentum 0.9.
# - Each of the `iters` iterations takes the next minibatch of `make_loader(x, y,
#   batch_size=batch_size, shuffle=True, seed=seed)`, restarting the loader when it runs
#   out.
# - Each iteration's loss is `alpha * natural + (1 - alpha) * robust`: the cross-entropies of
#   `anp_forward` without and with the perturbation that your `anp_perturb` computes for the
#   minibatch (with `eps`, `steps` and one `torch.Generator().manual_seed(seed)` for the
#   whole run).
# - After every optimizer step the masks are clipped to $[0, 1]$.

# %% nbgrader={"grade": false, "grade_id": "anp_mask", "locked": false, "schema_version": 3, "solution": true, "task": false}
def anp_mask(model, x, y, *, eps, alpha, iters, lr=0.2, batch_size=128, steps=1, seed=0):
    """Learn ANP's neuron masks on the clean data (x, y)."""
    ### BEGIN SOLUTION
    model = copy.deepcopy(model).train()
    device = next(model.parameters()).device
    masks = {name: torch.ones(layer.num_features, device=device, requires_grad=True)
             for name, layer in neuron_layers(model).items()}
    optimizer = torch.optim.SGD(list(masks.values()), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    loader = make_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    batches = iter(loader)
    for _ in range(iters):
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        xb, yb = xb.to(device), yb.to(device)
        noise = anp_perturb(model, xb, yb, masks, eps=eps, steps=steps, generator=generator)
        natural = F.cross_entropy(anp_forward(model, xb, masks), yb)
        robust = F.cross_entropy(anp_forward(model, xb, masks, noise), yb)
        loss = alpha * natural + (1 - alpha) * robust
        optimizer.zero_grad()
        grads = torch.autograd.grad(loss, list(masks.values()))
        for m, grad in zip(masks.values(), grads, strict=True):
            m.grad = grad
        optimizer.step()
        with torch.no_grad():
            for m in masks.values():
                m.clamp_(0, 1)
    return {name: m.detach() for name, m in masks.items()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_anp_mask_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(anp_mask, "anp_mask")
model = fx.bn_cnn()
x, y = fx.anp_data(model, 48)
state = fx.model_state(model)
layers = fx.neuron_layers(model)
with fx.silent():  # 12 iterations over 3 minibatches of 16: the loader restarts
    masks = anp_mask(model, x, y, eps=0.3, alpha=0.2, iters=12, lr=0.5, batch_size=16, seed=0)
assert set(masks) == set(layers), f"one mask per BN layer {sorted(layers)}; got {sorted(masks)}"
for name, m in masks.items():
    assert m.shape == (layers[name].num_features,), f"{name}: mask shape {tuple(m.shape)}"
    assert float(m.min()) >= 0 and float(m.max()) <= 1, (
        f"{name}: masks must stay in [0, 1]; got [{float(m.min()):.3f}, {float(m.max()):.3f}]")
assert any(float(m.min()) < 1 for m in masks.values()), "the masks never moved from 1"
assert not model.training, "anp_mask changed the model's mode"
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"anp_mask changed the model's {key}"
# alpha = 1 weighs only the natural loss: the perturbation's size must not matter.
kwargs = dict(alpha=1.0, iters=4, lr=0.3, batch_size=48, seed=1)
with fx.silent():
    calm, perturbed = anp_mask(model, x, y, eps=0.0, **kwargs), anp_mask(model, x, y, eps=0.4, **kwargs)
for name in calm:
    fx.assert_close(perturbed[name], calm[name], what=f"{name} with alpha=1 (natural loss only)", atol=1e-5)
# Momentum 0.9: with a small learning rate the gradient barely changes, so the second step
# is about 1.9 times the first.
kwargs = dict(eps=0.0, alpha=1.0, lr=1e-2, batch_size=48, seed=0)
y_other = fx.balanced_labels(48)  # labels the model disagrees with: large gradients
with fx.silent():
    first = anp_mask(model, x, y_other, iters=1, **kwargs)
    second = anp_mask(model, x, y_other, iters=2, **kwargs)
step1 = torch.cat([1 - first[n] for n in layers])
step2 = torch.cat([first[n] - second[n] for n in layers])
moved = step1 > 0.01 * step1.max()
ratio = (step2[moved] / step1[moved]).median().item()
assert float(step1.max()) > 0 and 1.7 < ratio < 2.1, (
    f"the second SGD step is {ratio:.2f} times the first; with momentum 0.9 it is about 1.9")
print("anp_mask: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_anp_mask_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(anp_mask, "anp_mask")
model = fx.bn_cnn(seed=3, width=(5, 6))
x, y = fx.anp_data(model, 32, seed=3)
state = fx.model_state(model)
kwargs = dict(alpha=1.0, iters=8, lr=0.3, batch_size=64, seed=1)  # full batches
with fx.silent():
    natural_only = anp_mask(model, x, y, eps=0.0, **kwargs)
    with_eps = anp_mask(model, x, y, eps=0.4, **kwargs)
    robust_a = anp_mask(model, x, y, eps=0.4, alpha=0.2, iters=8, lr=0.3, batch_size=64, seed=1)
    robust_b = anp_mask(model, x, y, eps=0.4, alpha=0.2, iters=8, lr=0.3, batch_size=64, seed=1)
for m in natural_only.values():
    assert float(m.min()) >= 0 and float(m.max()) <= 1
for name in natural_only:
    fx.assert_close(with_eps[name], natural_only[name], what=f"{name} with alpha=1", atol=1e-4)
assert all(torch.equal(robust_a[n], robust_b[n]) for n in robust_a), "seeded: same masks"
assert any(float((robust_a[n] - natural_only[n]).abs().max()) > 1e-3 for n in robust_a)
for m in robust_a.values():
    assert float(m.min()) >= 0 and float(m.max()) <= 1
assert not model.training
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key])
# The whole loop, against the same loop written out here on your anp_forward and anp_perturb
# (so only anp_mask itself is tested): a copy in training mode, masks from 1, SGD with
# momentum, the seeded loader restarted, one generator, clipping.
model = fx.bn_cnn(seed=5, width=(4, 6))
x, y = fx.anp_data(model, 40, seed=5)
for eps, alpha, steps, lr, iters, batch_size in ((0.4, 0.2, 1, 0.5, 3, 16), (0.3, 0.6, 2, 0.8, 5, 40)):
    with fx.silent():
        got = anp_mask(model, x, y, eps=eps, alpha=alpha, iters=iters, lr=lr,
                       batch_size=batch_size, steps=steps, seed=2)
    net = copy.deepcopy(model).train()
    expected = {n: torch.ones(layer.num_features, requires_grad=True)
                for n, layer in fx.neuron_layers(net).items()}
    optimizer = torch.optim.SGD(list(expected.values()), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(2)
    loader = make_loader(x, y, batch_size=batch_size, shuffle=True, seed=2)
    batches = iter(loader)
    for _ in range(iters):
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        xb, yb = batch
        with fx.silent():
            noise = anp_perturb(net, xb, yb, expected, eps=eps, steps=steps, generator=generator)
            optimizer.zero_grad()
            loss = (alpha * F.cross_entropy(anp_forward(net, xb, expected), yb)
                    + (1 - alpha) * F.cross_entropy(anp_forward(net, xb, expected, noise), yb))
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for m in expected.values():
                m.clamp_(0, 1)
    assert set(got) == set(expected)
    for name, m in expected.items():
        fx.assert_close(got[name], m.detach(), what=f"the masks of {name} (eps={eps}, alpha={alpha}, "
                        f"steps={steps}, {iters} iterations)", atol=1e-4)
# Momentum, on another model.
model = fx.bn_cnn(seed=6)
x, y = fx.anp_data(model, 24, seed=6)
layers = fx.neuron_layers(model)
y = fx.balanced_labels(24, seed=6)
kwargs = dict(eps=0.0, alpha=1.0, lr=1e-2, batch_size=24, seed=4)
with fx.silent():
    first, second = anp_mask(model, x, y, iters=1, **kwargs), anp_mask(model, x, y, iters=2, **kwargs)
step1 = torch.cat([1 - first[n] for n in layers])
step2 = torch.cat([first[n] - second[n] for n in layers])
moved = step1 > 0.01 * step1.max()
assert float(step1.max()) > 0 and 1.7 < (step2[moved] / step1[moved]).median().item() < 2.1
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "anp_prune_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### 7c. Pruning
#
# **Task.** Write `anp_prune(model, mask, threshold)`, which returns the pruned model.
#
# **Requirements**
#
# - It returns a pruned copy: `model` itself is never changed.
# - Exactly the neurons whose mask is strictly below `threshold` are pruned.
# - Pruning a neuron sets its batch-norm weight to 0 and changes nothing else (its bias, the
#   other weights and the batch-norm statistics stay as they are).

# %% nbgrader={"grade": false, "grade_id": "anp_prune", "locked": false, "schema_version": 3, "solution": true, "task": false}
def anp_prune(model, mask, threshold):
    """A copy of ``model`` with the neurons whose mask is below ``threshold`` pruned."""
    ### BEGIN SOLUTION
    pruned = copy.deepcopy(model)
    layers = neuron_layers(pruned)
    with torch.no_grad():
        for name, m in mask.items():
            layers[name].weight[m.to(layers[name].weight.device) < threshold] = 0
    return pruned
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_anp_prune_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(anp_prune, "anp_prune")
model = fx.bn_cnn()
state = fx.model_state(model)
layers = fx.neuron_layers(model)
g = torch.Generator().manual_seed(0)
mask = {n: torch.rand(layer.num_features, generator=g) for n, layer in layers.items()}
with fx.silent():
    pruned = anp_prune(model, mask, 0.4)
pruned_state = fx.model_state(pruned)
for name in layers:
    weight = state[f"{name}.weight"]
    expected = torch.where(mask[name] < 0.4, torch.zeros_like(weight), weight)
    assert torch.equal(pruned_state[f"{name}.weight"], expected), (
        f"{name}: exactly the neurons with mask < 0.4 must have weight 0")
for key, value in state.items():
    if not (key.endswith(".weight") and key.rsplit(".", 1)[0] in layers):
        assert torch.equal(pruned_state[key], value), f"pruning must not change {key}"
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"anp_prune changed the original model's {key}"
print("anp_prune: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_anp_prune_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(anp_prune, "anp_prune")
model = fx.bn_cnn(seed=4)
state = fx.model_state(model)
layers = fx.neuron_layers(model)
x, _ = fx.anp_data(model, 8)
mask = {n: torch.linspace(0, 1, layer.num_features) for n, layer in layers.items()}
with fx.silent():
    none_pruned = anp_prune(model, mask, 0.0)
    everything = anp_prune(model, mask, 1.01)
    middle = anp_prune(model, mask, 0.5)
    at = anp_prune(model, {n: torch.full((layer.num_features,), 0.5) for n, layer in layers.items()}, 0.5)
with torch.no_grad():
    assert torch.equal(none_pruned.eval()(x), model(x)), "threshold 0 prunes nothing"
    for pruned_model, threshold in ((everything, 1.01), (middle, 0.5)):
        kept = {n: (m >= threshold).float() for n, m in mask.items()}
        fx.assert_close(pruned_model.eval()(x), fx.perturbed_copy(model, kept)(x), atol=1e-6,
                        what=f"the model pruned at {threshold}")
everything = fx.model_state(everything)
assert all(float(everything[f"{n}.weight"].abs().max()) == 0 for n in layers)
for key, value in state.items():
    if not (key.endswith(".weight") and key.rsplit(".", 1)[0] in layers):
        assert torch.equal(everything[key], value), f"pruning must not change {key}"
at = fx.model_state(at)
assert all(torch.equal(at[f"{n}.weight"], state[f"{n}.weight"]) for n in layers), (
    "a mask equal to the threshold is not below it")
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key])
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "anp_experiment_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 8. ANP against the three attacks
#
# For each backdoored model: learn the masks on the clean split with the default $\alpha$
# and prune at every threshold of the sweep; then learn the masks for every $\alpha$ of the
# sweep (it includes $\alpha = 1$, the natural loss alone: question 4). Clean accuracy and
# attack success are measured on the test set, and clean accuracy on the defender's
# held-out validation split too: the only number a defender can look at.
#
# **The defender's threshold.** The paper prunes below 0.2. How low the masks of the
# backdoor neurons fall depends on the network (its width, how redundant the backdoor is)
# and on the number of iterations, so the lab also lets the defender choose, on clean data
# *held out from the mask learning* (the validation split; choosing on the images the masks
# were fitted to would flatter every threshold): the largest threshold of the sweep up to
# which validation accuracy stays within `anp_max_drop` of the unpruned model's
# (`choose_threshold` below). The table reports both; the $\alpha$ sweep uses the
# defender's threshold for each $\alpha$.
#
# **Neuron by neuron.** The authors' `prune_neuron_cifar.py` also prunes the neurons one at
# a time, smallest mask first, and reports each neuron's layer, index and mask value with
# the accuracy and attack success after pruning it (the paper's Figure 2 shows such
# curves). The lab prints this table for the first neurons of each attack and saves it as
# `anp-neurons-<attack>.csv`.

# %% nbgrader={"grade": false, "grade_id": "anp_choose", "locked": true, "schema_version": 3, "solution": false, "task": false}
def choose_threshold(model, mask, thresholds, max_drop):
    """The defender's pruning threshold, chosen on the held-out validation split alone: the
    largest of ``thresholds`` (in increasing order) such that the pruned model's validation
    accuracy stays within ``max_drop`` of the unpruned model's at that threshold and every
    smaller one."""
    floor = evaluate(model, X_VAL, Y_VAL) - max_drop
    chosen = 0.0
    for threshold in sorted(thresholds):
        if evaluate(anp_prune(model, mask, threshold), X_VAL, Y_VAL) < floor:
            break
        chosen = threshold
    return chosen


# %% nbgrader={"grade": false, "grade_id": "anp_experiment", "locked": true, "schema_version": 3, "solution": false, "task": false}
def measure(model, name):
    return {"clean_accuracy": evaluate(model, X_TEST, Y_TEST),
            "attack_success": attack_success_rate(model, X_TEST, Y_TEST, TRIGGERS[name],
                                                  target=target),
            "validation_accuracy": evaluate(model, X_VAL, Y_VAL)}


def learn_mask(model, alpha):
    return anp_mask(model, X_CLEAN, Y_CLEAN, eps=anp_eps, alpha=alpha, iters=SIZES["anp_iters"],
                    lr=anp_lr, batch_size=SIZES["anp_batch"], seed=seed)


def pruned_count(mask, threshold):
    return int(sum(int((m < threshold).sum()) for m in mask.values()))


def pruned_at(model, mask, threshold, name):
    return {"threshold": threshold, "pruned": pruned_count(mask, threshold),
            **measure(anp_prune(model, mask, threshold), name)}


def chosen(model, mask, name):
    threshold = choose_threshold(model, mask, SIZES["anp_thresholds"], anp_max_drop)
    return pruned_at(model, mask, threshold, name)


def neuron_table(model, mask, name, unpruned):
    """Prune the neurons one by one, smallest mask first (the authors' pruning by number):
    layer, index and mask of each, with clean accuracy and attack success after it."""
    keep = {layer: torch.ones_like(m) for layer, m in mask.items()}
    rows = [{"pruned": 0, "layer": "-", "index": -1, "mask": float("nan"), **unpruned}]
    for k, (layer, index, value) in enumerate(bd.neuron_order(mask)[: SIZES["table_neurons"]], 1):
        keep[layer][index] = 0.0
        pruned = anp_prune(model, keep, 0.5)  # your anp_prune: exactly the zeros fall below 0.5
        rows.append({"pruned": k, "layer": layer, "index": index, "mask": value,
                     **measure(pruned, name)})
    return rows


ANP, NEURONS, MASKS = {}, {}, {}
for name, model in MODELS.items():
    with Timer(DEVICE) as timer:
        masks = {anp_alpha: learn_mask(model, anp_alpha)}
    seconds = timer.seconds
    by_threshold = [pruned_at(model, masks[anp_alpha], th, name)
                    for th in SIZES["anp_thresholds"]]
    defender = chosen(model, masks[anp_alpha], name)
    by_alpha = []
    for alpha in SIZES["anp_alphas"]:
        if alpha not in masks:
            masks[alpha] = learn_mask(model, alpha)
        by_alpha.append({"alpha": alpha, **(defender if alpha == anp_alpha
                                             else chosen(model, masks[alpha], name))})
    MASKS[name] = masks
    NEURONS[name] = neuron_table(model, masks[anp_alpha], name, measure(model, name))
    ANP[name] = {"paper_threshold": {"alpha": anp_alpha,
                                     **pruned_at(model, masks[anp_alpha], anp_threshold, name)},
                 "defender_threshold": {"alpha": anp_alpha, **defender},
                 "by_threshold": by_threshold, "by_alpha": by_alpha, "mask_seconds": seconds,
                 "neurons": int(sum(len(m) for m in masks[anp_alpha].values()))}
    print(f"{name}: masks learned in {seconds:.1f} s; defender's threshold "
          f"{ANP[name]['defender_threshold']['threshold']}")

# %% nbgrader={"grade": false, "grade_id": "anp_report", "locked": true, "schema_version": 3, "solution": false, "task": false}
header = (f"{'attack':>12} | {'clean acc':>9} | {'ASR':>5} || {'ANP, threshold':>14} | "
          f"{'pruned':>6} | {'clean acc':>9} | {'ASR':>5} || {'ANP, threshold':>14} | "
          f"{'pruned':>6} | {'clean acc':>9} | {'ASR':>5}")
print(header)
print("-" * len(header))
print(f"{'(no attack)':>12} | {CLEAN_ACCURACY:>9.3f} |")
for name in MODELS:
    row = ATTACKS[name]
    line = f"{name:>12} | {row['clean_accuracy']:>9.3f} | {row['attack_success']:>5.3f}"
    for key, label in (("paper_threshold", "paper"), ("defender_threshold", "defender")):
        anp = ANP[name][key]
        line += (f" || {label + ' ' + format(anp['threshold'], 'g'):>14} | {anp['pruned']:>6d} | "
                 f"{anp['clean_accuracy']:>9.3f} | {anp['attack_success']:>5.3f}")
    print(line)

for name, rows in NEURONS.items():
    save_table(rows, f"anp-neurons-{name.lower()}")
print(f"\nNeurons pruned one by one, smallest mask first (alpha = {anp_alpha}; "
      "accuracy and attack success on the test set):")
for name, rows in NEURONS.items():
    print(f"{name}:\n{'pruned':>6} | {'layer':>8} | {'index':>5} | {'mask':>6} | "
          f"{'clean acc':>9} | {'ASR':>5}")
    for r in rows:
        print(f"{r['pruned']:>6} | {r['layer']:>8} | {r['index']:>5} | {r['mask']:>6.3f} | "
              f"{r['clean_accuracy']:>9.3f} | {r['attack_success']:>5.3f}")

for key, label, figure_name in (("by_threshold", "pruning threshold", "anp-vs-threshold"),
                                ("by_alpha", "trade-off alpha", "anp-vs-alpha")):
    fig, axes = plt.subplots(1, len(MODELS), figsize=(3.4 * len(MODELS), 3.2), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), MODELS, strict=True):
        rows = ANP[name][key]
        xs = [r["threshold" if key == "by_threshold" else "alpha"] for r in rows]
        ax.plot(xs, [r["clean_accuracy"] for r in rows], "o-", label="clean accuracy")
        ax.plot(xs, [r["attack_success"] for r in rows], "s-", color="C3", label="attack success")
        if key == "by_threshold":
            ax.axvline(anp_threshold, color="0.6", ls=":", lw=1)
            ax.axvline(ANP[name]["defender_threshold"]["threshold"], color="C2", ls="--", lw=1)
        ax.set_title(name)
        ax.set_xlabel(label)
        ax.set_ylim(-0.03, 1.03)
    np.atleast_1d(axes)[0].legend(loc="center left")
    fixed = (f"alpha = {anp_alpha}; dotted: paper's threshold, dashed: defender's"
             if key == "by_threshold" else "defender's threshold for each alpha")
    fig.suptitle(f"ANP (eps = {anp_eps}, {SIZES['anp_iters']} iterations; {fixed})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, figure_name, caption=CAPTION)
    plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "explore_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Explore: the pruning threshold
#
# Choose an attack and move the threshold: the left panel shows the learned masks of every
# neuron (default $\alpha$) and which of them the threshold prunes, the right one clean
# accuracy and attack success of the model pruned there. (In a batch run the figure is
# drawn once, for BadNets at the defender's threshold, and saved as `explore-anp.pdf`.)

# %% nbgrader={"grade": false, "grade_id": "explore", "locked": true, "schema_version": 3, "solution": false, "task": false}
from labsupport.explore import explore


def render_threshold(attack, threshold):
    """ANP's masks for `attack` and the model pruned at `threshold` (from the sweep above)."""
    values = np.sort(torch.cat([m.flatten().cpu() for m in MASKS[attack][anp_alpha].values()]).numpy())
    rows = {r["threshold"]: r for r in ANP[attack]["by_threshold"]}
    row = rows[threshold]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    pruned = values < threshold
    left.bar(np.arange(len(values)), values, width=1.0, color=np.where(pruned, "C3", "C0"))
    left.axhline(threshold, color="0.3", ls="--", lw=1)
    left.set_xlabel("neurons, smallest mask first")
    left.set_ylabel("mask value")
    left.set_ylim(0, 1.02)
    left.set_title(f"{attack}: {int(pruned.sum())} of {len(values)} neurons pruned", fontsize=9)
    xs = sorted(rows)
    right.plot(xs, [rows[t]["clean_accuracy"] for t in xs], "o-", label="clean accuracy")
    right.plot(xs, [rows[t]["attack_success"] for t in xs], "s-", color="C3", label="attack success")
    right.axvline(threshold, color="0.3", ls="--", lw=1)
    right.set_xlabel("pruning threshold")
    right.set_ylim(-0.03, 1.03)
    right.legend(loc="center left", fontsize=8)
    right.set_title(f"threshold {threshold:g}: clean accuracy {row['clean_accuracy']:.3f}, "
                    f"attack success {row['attack_success']:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


first = next(iter(MODELS))
figure = explore(render_threshold,
                 static={"attack": first,
                         "threshold": ANP[first]["defender_threshold"]["threshold"]},
                 attack=list(MODELS), threshold=list(SIZES["anp_thresholds"]))
if isinstance(figure, plt.Figure):  # a batch run: the static view, saved with the others
    save_figure(figure, "explore-anp", caption=CAPTION)

# %% nbgrader={"grade": false, "grade_id": "anp_results", "locked": true, "schema_version": 3, "solution": false, "task": false}
write_results(
    {"target": target, "poison_rate": poison_rate, "blend_alpha": blend_alpha,
     "clean_label": {"eps": clean_label_eps, "steps": clean_label_steps,
                     "restarts": clean_label_restarts},
     "anp": {"eps": anp_eps, "alpha": anp_alpha, "threshold": anp_threshold, "lr": anp_lr,
             "max_drop": anp_max_drop, "iters": SIZES["anp_iters"],
             "batch_size": SIZES["anp_batch"], "mask_images": len(X_CLEAN),
             "validation_images": len(X_VAL)},
     "splits": SPLITS,
     "sizes": {k: SIZES[k] for k in ("n_train", "n_test", "n_clean", "n_val", "epochs")},
     "clean_model_accuracy": CLEAN_ACCURACY,
     "attacks": {name: {**ATTACKS[name], "anp": ANP[name], "neurons": NEURONS[name]}
                 for name in MODELS}},
    lab="lab5", profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)

# %% [markdown] nbgrader={"grade": false, "grade_id": "questions", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 9. Questions for the write-up
#
# Answer in the cell below, using the tables and the figures (`backdoor-triggers.pdf`,
# `anp-vs-threshold.pdf`, `anp-vs-alpha.pdf`, `anp-neurons-*.csv`, saved beside this
# notebook; under `labsupport run`, in `build/lab5/`).
#
# 1. **Attacks.** Compare the three attacks' clean accuracy and attack success. Why does the
#    clean-label attack need the adversarial perturbation, and why does it keep the labels?
#    Which attack would you find first by looking at the training images, and why?
# 2. **Excluding the target class.** What would the attack-success rate of the *clean*
#    model be if target-class test images were counted?
# 3. **The threshold.** How do clean accuracy and attack success change with the pruning
#    threshold, for each attack, and as the neurons are pruned one by one? How would a
#    defender, who has no triggered images, choose the threshold, and why on clean images
#    held out from the mask learning?
# 4. **The trade-off $\alpha$.** What happens at $\alpha = 1$ (natural loss only) and at
#    $\alpha = 0$ (robust loss only)? Why?
# 5. **Limits.** For which attack does ANP work worst, and why might that be? What could an
#    attacker who knows about ANP do?
# 6. **Poison rate.** The attacks poison 5% of the training set. What would a much higher
#    rate (say 30%) do to the backdoored model's clean accuracy and to the attack's
#    stealth, and why?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answers", "locked": false, "points": 5, "schema_version": 3, "solution": true, "task": false}
# 1. All three reach high attack success with almost no loss of clean accuracy. Stamped
#    target-class images keep their natural features, which already explain their label, so
#    the model need not learn the trigger; the adversarial perturbation removes that
#    evidence. Keeping labels means no mislabelled image for an inspector to find. BadNets
#    and the clean-label corners are visible patches; Blend at opacity 0.2 is the hardest to
#    see, but mislabelled images give BadNets and Blend away to anyone who checks labels.
# 2. About one quarter higher: all target-class images would count as successes (the
#    target is one of four balanced classes), without any backdoor.
# 3. Small thresholds prune the few most sensitive neurons: attack success falls while
#    clean accuracy stays; large thresholds prune useful neurons and clean accuracy falls.
#    A defender picks the threshold on clean data only, e.g. the largest threshold whose
#    validation accuracy stays within a point or two of the unpruned model (the lab's
#    `choose_threshold`), on images held out from the mask learning: the masks were fitted
#    to keep the mask-learning images right, so accuracy there overstates how well a pruned
#    model generalises. Measured at `cpu` on the synthetic data (2026-12-01): pruned one by
#    one, Blend's third neuron takes attack success from 0.98 to 0.22, but the first one
#    alone costs 7 points; on this small network every neuron ANP prunes first also serves
#    the clean task, so the 2-point rule prunes nothing for any attack, while the paper's
#    0.2 removes Blend for 7 points.
# 4. alpha = 1 ignores the perturbation: the masks only fit the natural loss, stay near 1
#    and nothing is pruned. alpha = 0 only fights the perturbation: masks of many ordinary
#    neurons fall too, pruning hurts clean accuracy. The backdoor neurons are those whose
#    perturbation is most harmful, so an intermediate alpha separates them.
# 5. Measured at the `cpu` profile on the synthetic data (2026-12-01), as on real CIFAR-10
#    images: ANP removes Blend (10 neurons below 0.1: attack success 0.985 -> 0.02 for about
#    7 points of clean accuracy) but not BadNets, whose attack success stays at 1.00 until
#    pruning has cost about 6 points and falls only when accuracy has dropped by 20. The
#    BadNets patch is read by the same edge and corner detectors the clean task needs, so no
#    small set of neurons carries it; the paper's ResNet-18 trained on 50,000 images has far
#    more, more specialised neurons. ANP also needs the backdoor to act through neurons whose
#    perturbation sends clean images to the target: trained without augmentation,
#    SimpleCNN's position-specific classifier keeps the BadNets path tied to the corner and
#    clean images under perturbation go to the target no more often than with a clean
#    model, so ANP finds nothing. An adaptive attacker can regularise training so that no
#    neuron is unusually sensitive to perturbation, or spread the backdoor over many neurons.
# 6. Every poisoned BadNets/Blend image is a mislabelled image: at 30% the model must fit a
#    large set of images whose visible content contradicts their label, and with the
#    trigger partly hidden (Blend) or moved by augmentation it cannot always separate them,
#    so clean accuracy drops, most on the classes whose images were relabelled; the target
#    class also absorbs many predictions. The attack becomes easy to notice: clean
#    accuracy falls, and a glance at the labels shows many wrong ones. A few percent is
#    enough to implant the backdoor, so attackers keep the rate low.
