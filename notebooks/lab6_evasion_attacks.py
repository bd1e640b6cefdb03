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
# # Lab 6 — Evasion attacks compared
#
# An *evasion attack* changes a test input $x$ a little, $x' = x + \delta$, so that a trained
# classifier $f$ gets it wrong. Attacks differ in what they may know and what they pay:
#
# | attack | knows | budget | paper |
# | --- | --- | --- | --- |
# | FGSM | gradients | one step of size $\epsilon$ in $L_\infty$ | Goodfellow et al., ICLR 2015 |
# | iterative FGSM (BIM) | gradients | small steps, projected to the $\epsilon$-ball | Kurakin et al., ICLR 2017 (workshop) |
# | PGD | gradients | as BIM, from a random start | Madry et al., ICLR 2018 |
# | DeepFool | gradients | the smallest $L_2$ step that crosses the (linearised) boundary | Moosavi-Dezfooli et al., CVPR 2016 |
# | HopSkipJump | the predicted label only | queries | Chen, Jordan & Wainwright, S&P 2020 |
# | One-Pixel | the output probabilities | changes $k$ pixels, any amount | Su, Vargas & Sakurai, IEEE TEVC 2019 |
#
# This lab reproduces a comparative study that ran these attacks on a digits dataset and on a
# colour image dataset and compared them by accuracy under attack, perturbation budget,
# runtime, and 95% confidence intervals; you add what a fair comparison needs: the number of
# **model queries** each attack makes, and the right statistical test for two attacks run
# **on the same images** (McNemar's).
#
# **What you do.** (1) FGSM, untargeted and targeted. (2) Iterative FGSM with early stopping.
# (3) DeepFool, batched. (4) One-Pixel with differential evolution. (5) A query counter.
# (6) Paired and unpaired comparisons of two attacks. Then the study runs every attack on
# both datasets and you answer the questions at the end. PGD comes from the package
# (`labsupport.attacks.pgd`) and HopSkipJump from the Adversarial Robustness Toolbox (ART).
#
# Run the cells from the top. Cells marked *YOUR CODE HERE* are yours; after each one, run the
# test cell below it. The `profile` parameter chooses the size of the study (`smoke`:
# seconds, `cpu`: minutes on a laptop, `full`: the assignment scale, GPU recommended); it
# changes sizes, never the algorithms.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Google Colab setup: the release puts the pinned install of the course's support package
# here (labsupport.instructor.colab); this source copy does nothing.

# %% tags=["parameters"] nbgrader={"grade": false, "grade_id": "parameters", "locked": true, "schema_version": 3, "solution": false, "task": false}
profile = "auto"  # "smoke", "cpu", "full" or "auto"
dataset = "auto"  # course dataset: "cifar4", "synthetic", a path to dataset-full.npz, or "auto"
digits = "auto"  # digits dataset: "mnist", "digits" (offline stand-in), a path, or "auto"
seed = 0
eps_digits = 0.3  # L-inf budget of FGSM, I-FGSM and PGD on the digits
eps_course = 8 / 255  # ... and on the course dataset
targeted_eps = (0.1, 0.3, 0.5)  # targeted FGSM on the digits
pgd_steps = 20  # PGD iterations (step 2.5 * eps / steps, random start)
overshoot = 0.02  # DeepFool's overshoot (the authors' value)
n_images = None  # images attacked by the gradient attacks (None: the profile's)
n_slow = None  # images attacked by HopSkipJump and One-Pixel (None: the profile's)

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labsupport.assets import load_asset
from labsupport.attacks import pgd
from labsupport.data import load_course_data
from labsupport.digits import load_digits
from labsupport.explore import explore
from labsupport.report import caption, save_figure, save_table, use_style, write_results
from labsupport.runtime import get_device, resolve_profile, seed_everything
from labsupport.train import predict

PROFILE = resolve_profile(profile)
DEVICE = get_device()
SIZES = {
    "smoke": dict(n_images=8, n_slow=3, hsj_iter=1, hsj_max_eval=20, hsj_init_eval=5,
                  hsj_init_size=20, pixel_popsize=30, pixel_maxiter=2),
    "cpu": dict(n_images=300, n_slow=30, hsj_iter=10, hsj_max_eval=1000, hsj_init_eval=100,
                hsj_init_size=100, pixel_popsize=200, pixel_maxiter=20),
    "full": dict(n_images=2000, n_slow=200, hsj_iter=40, hsj_max_eval=10_000,
                 hsj_init_eval=100, hsj_init_size=100, pixel_popsize=400, pixel_maxiter=100),
}[PROFILE]
for key, value in dict(n_images=n_images, n_slow=n_slow).items():
    if value is not None:
        SIZES[key] = int(value)
print(f"profile {PROFILE} on {DEVICE}; sizes {SIZES}")

# %% nbgrader={"grade": false, "grade_id": "libraries", "locked": true, "schema_version": 3, "solution": false, "task": false}
# The libraries the tasks use: scipy's differential evolution and normal quantiles,
# statsmodels' McNemar test, ART's PyTorchClassifier (for HopSkipJump and a test).
from art.estimators.classification import PyTorchClassifier
from scipy.optimize import differential_evolution
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar

# %% [markdown] nbgrader={"grade": false, "grade_id": "fgsm_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. FGSM, untargeted and targeted
#
# The fast gradient sign method linearises the loss $\ell$ (the cross-entropy) around $x$ and
# takes the best step of $L_\infty$ size $\epsilon$ against it:
#
# $$ x' = \mathrm{clip}_{[0,1]}\big(x + \epsilon\,\mathrm{sign}(\nabla_x \ell(f(x), y))\big). $$
#
# A **targeted** attack wants the model to answer a chosen class $t$: it *descends* the loss of
# $t$, $x' = \mathrm{clip}_{[0,1]}(x - \epsilon\,\mathrm{sign}(\nabla_x \ell(f(x), t)))$.
#
# **Task.** Write `fgsm(model, x, y, eps, targeted=False, target=None)` for a batch `x`
# (N, C, H, W) in [0, 1] with labels `y`; with `targeted=True`, `target` holds the target
# classes. The model normalises inside and is in eval mode. (`labsupport.attacks` has an FGSM;
# it refuses to run inside your function: the tests grade yours.)
#
# **Requirements**
#
# - Untargeted, return `clip(x + eps * sign(grad), 0, 1)` with `grad` the gradient of the cross-entropy of the true labels `y` with respect to the input.
# - With `targeted=True`, return `clip(x - eps * sign(grad), 0, 1)` with `grad` the gradient of the cross-entropy of the `target` classes.
# - Keep every pixel of the result in the image range [0, 1].
# - Leave the input `x` unchanged.

# %% nbgrader={"grade": false, "grade_id": "fgsm", "locked": false, "schema_version": 3, "solution": true, "task": false}
def fgsm(model, x, y, eps, targeted=False, target=None):
    """One signed-gradient step of size ``eps`` (targeted: towards ``target``)."""
    ### BEGIN SOLUTION
    if targeted and target is None:
        raise ValueError("a targeted FGSM needs the target classes (target=...)")
    labels = target if targeted else y
    x_in = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_in), labels)
    (input_grad,) = torch.autograd.grad(loss, x_in)
    direction = -input_grad.sign() if targeted else input_grad.sign()
    return (x.detach() + eps * direction).clamp(0, 1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_fgsm_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# fx.check_fgsm runs your function on a small ReLU network and images spanning [0, 1], and
# compares it with the package's FGSM (labsupport.attacks.fgsm, withheld: it refuses to run
# inside your function), untargeted and targeted (target = y + 1 mod C).
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(fgsm, "fgsm")
fx.check_fgsm(fgsm)
print("fgsm: visible tests passed")


# %% nbgrader={"grade": true, "grade_id": "test_fgsm_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(fgsm, "fgsm")
# Another network, three colour channels, three classes, another budget.
fx.check_fgsm(fgsm, seed=3, shape=(3, 4, 5), classes=3, eps=0.07)
fx.check_fgsm(fgsm, seed=5, n=4, eps=0.4)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "ifgsm_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Iterative FGSM, stopped per sample
#
# The basic iterative method (Kurakin et al.) takes many small FGSM steps of size $\alpha$ and
# after each one projects back onto the $L_\infty$ ball of radius $\epsilon$ around the
# original image (and into the image range):
#
# $$ x'_0 = x, \qquad x'_{t+1} = \mathrm{clip}_{[0,1]}\Big(\mathrm{clip}_{x,\epsilon}\big(x'_t +
#    \alpha\,\mathrm{sign}(\nabla_x \ell(f(x'_t), y))\big)\Big). $$
#
# Each sample stops **as soon as the model misclassifies it**: the examples stay as close to
# the original as the attack allows, and a broken sample costs no more queries.
#
# **Task.** Write `iterative_fgsm(model, x, y, eps, step, max_iter)` returning
# `(x_adv, iterations)`: the adversarial batch and an int64 tensor with the number of steps
# each sample took. Attack the batch at once (the samples that are still classified
# correctly).
#
# **Requirements**
#
# - Take steps of size `step` along the sign of the input gradient of the cross-entropy of `y`, at most `max_iter` of them per sample.
# - After each step, project onto the L-inf ball of radius `eps` around the original `x`, so that the total perturbation never exceeds `eps`.
# - Keep every pixel in the image range [0, 1].
# - Stop updating a sample as soon as the model misclassifies it (a sample misclassified from the start takes no step); the other samples go on.
# - Return the adversarial images and, per sample, the number of steps it took (an int64 tensor).

# %% nbgrader={"grade": false, "grade_id": "iterative_fgsm", "locked": false, "schema_version": 3, "solution": true, "task": false}
def iterative_fgsm(model, x, y, eps, step, max_iter):
    """Iterative FGSM with per-sample early stopping; returns (x_adv, iterations)."""
    ### BEGIN SOLUTION
    x = x.detach()
    x_adv = x.clone()
    iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
    active = torch.arange(len(x), device=x.device)  # samples still classified correctly
    for _ in range(max_iter):
        x_now = x_adv[active].clone().requires_grad_(True)
        logits = model(x_now)
        loss = F.cross_entropy(logits, y[active], reduction="sum")
        (input_grad,) = torch.autograd.grad(loss, x_now)
        keep = logits.argmax(1) == y[active]  # early stop: the others are fooled already
        active, x_now, input_grad = active[keep], x_now.detach()[keep], input_grad[keep]
        if len(active) == 0:
            break
        x_next = x_now + step * input_grad.sign()
        origin = x[active]
        x_next = torch.min(torch.max(x_next, origin - eps), origin + eps)  # into the eps-ball
        x_adv[active] = x_next.clamp(0, 1)
        iterations[active] += 1
    return x_adv, iterations
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_iterative_fgsm_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# fx.check_iterative_fgsm compares your batched function with a reference that attacks one
# image at a time, straight from the update rule above (fx.ifgsm_reference): the same images
# and the same steps per sample, on images spanning [0, 1] with one sample misclassified from
# the start, then with a budget too small to flip anything.
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(iterative_fgsm, "iterative_fgsm")
fx.check_iterative_fgsm(iterative_fgsm)
print("iterative_fgsm: visible tests passed")


# %% nbgrader={"grade": true, "grade_id": "test_iterative_fgsm_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(iterative_fgsm, "iterative_fgsm")
fx.check_iterative_fgsm(iterative_fgsm, seed=7, shape=(3, 4, 4), classes=3, eps=0.1,
                        step=0.03, max_iter=7)
fx.check_iterative_fgsm(iterative_fgsm, seed=9, n=20, eps=0.2, step=0.01, max_iter=25)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "deepfool_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. DeepFool, batched
#
# DeepFool (Moosavi-Dezfooli et al., Algorithm 2) looks for the *smallest* $L_2$ perturbation
# that changes the label. At the current point it linearises the classifier: for each
# candidate class $k$ other than the original label $\hat k$,
# $w_k = \nabla f_k - \nabla f_{\hat k}$ and $f'_k = f_k - f_{\hat k}$ (logits), so the
# linearised boundary with class $k$ is at distance $|f'_k| / \|w_k\|_2$. It steps to the
# closest one, $l = \arg\min_k |f'_k| / \|w_k\|_2$:
#
# $$ r_i = \Big(\frac{|f'_l|}{\|w_l\|_2} + 10^{-4}\Big) \frac{w_l}{\|w_l\|_2},
#    \qquad r_{tot} \leftarrow r_{tot} + r_i, $$
#
# and repeats until the label changes. The candidate classes are the `num_classes` classes with
# the highest logits at the original image (the authors' `num_classes`, 10 by default). The
# $10^{-4}$ and the **overshoot** come from the authors' code (`deepfool.py`): the iterate is
# $x + (1 + \text{overshoot})\, r_{tot}$ (the overshoot, 0.02, multiplies the *total*
# perturbation, so the point lands just past the boundary). We also clip it to [0, 1]: our
# images must stay images (the authors' code does not clip).
#
# **Task.** Write `deepfool(model, x, num_classes, overshoot=0.02, max_iter=50)` returning
# `(x_adv, iterations)`, **batched**: all samples that are still classified as their original
# label advance together (one forward pass per iteration, and one backward pass per candidate
# class), no Python loop over samples. torchattacks' DeepFool loops over samples; the
# benchmark shows what batching buys.
#
# **Requirements**
#
# - Rank the classes once, by the model's logits at the original `x`, and use only the `num_classes` highest as candidates (the first one is the original label).
# - At each iteration, step towards the closest linearised boundary among them: `r_i = (|f_l| / ||w_l|| + 1e-4) * w_l / ||w_l||`, with `l` minimising `|f_k| / ||w_k||`.
# - Apply the overshoot as the authors' code does: the iterate is `x + (1 + overshoot) * r_tot`, clipped to [0, 1], where `r_tot` is the sum of the steps `r_i`.
# - Stop each sample as soon as its predicted label differs from the original one, or after `max_iter` iterations, and return the iterations each sample took (an int64 tensor).
# - Attack the whole batch at once: no Python loop over the samples.

# %% nbgrader={"grade": false, "grade_id": "deepfool", "locked": false, "schema_version": 3, "solution": true, "task": false}
def deepfool(model, x, num_classes, overshoot=0.02, max_iter=50):
    """Batched multi-class DeepFool (the authors' overshoot); returns (x_adv, iterations)."""
    ### BEGIN SOLUTION
    x = x.detach()
    with torch.no_grad():
        candidates = model(x).argsort(dim=1, descending=True)[:, :num_classes]
    original = candidates[:, 0]
    r_tot = torch.zeros_like(x)
    x_adv = x.clone()
    iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
    active = torch.arange(len(x), device=x.device)
    for _ in range(max_iter):
        x_now = x_adv[active].clone().requires_grad_(True)
        logits = model(x_now)
        keep = logits.argmax(1) == original[active]  # stop once the label has changed
        if not keep.any():
            break
        chosen = logits.gather(1, candidates[active])  # (B, K): logits of the candidates
        grads = torch.stack([torch.autograd.grad(chosen[:, k].sum(), x_now, retain_graph=True)[0]
                             for k in range(chosen.shape[1])], dim=1)  # (B, K, C, H, W)
        active, chosen, grads = active[keep], chosen.detach()[keep], grads[keep]
        w = (grads[:, 1:] - grads[:, :1]).flatten(2)  # w_k, (B, K-1, D)
        f = chosen[:, 1:] - chosen[:, :1]  # f_k, (B, K-1)
        distance = f.abs() / w.norm(dim=2)
        closest = distance.argmin(dim=1)
        rows = torch.arange(len(active), device=x.device)
        w_l, d_l = w[rows, closest], distance[rows, closest]
        r_i = (d_l + 1e-4)[:, None] * w_l / w_l.norm(dim=1, keepdim=True)
        r_tot[active] += r_i.view_as(x[active])
        x_adv[active] = (x[active] + (1 + overshoot) * r_tot[active]).clamp(0, 1)
        iterations[active] += 1
    return x_adv, iterations
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_deepfool_visible", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# fx.check_deepfool compares your function with the authors' algorithm run one image at a
# time (fx.deepfool_reference): two candidate classes with overshoot 0.1, all classes with
# the default overshoot, images spanning [0, 1] with max_iter=2. A query counter
# (fx.QueryCounter) records how often your function calls the model.
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(deepfool, "deepfool")
fx.check_deepfool(deepfool)
print("deepfool: visible tests passed")


# %% nbgrader={"grade": true, "grade_id": "test_deepfool_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(deepfool, "deepfool")
fx.check_deepfool(deepfool, seed=11, shape=(3, 4, 4), classes=5, n=16)
fx.check_deepfool(deepfool, seed=13, classes=8, n=16)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "one_pixel_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. One-Pixel attack
#
# Su et al. change only `pixels` pixels, each to any colour, and search for them with
# **differential evolution** (DE), which needs the output probabilities but no gradients. A
# candidate is a vector of `pixels` tuples (row, column, one value per channel); DE keeps a
# population of candidates, mixes them, and keeps a child when it lowers the objective: the
# model's probability of the true class. As in the authors' setup, the population is about
# `popsize` candidates in total (scipy multiplies its `popsize` argument by the number of
# variables: pass `max(1, popsize // number_of_variables)`), with `recombination=1`,
# `atol=-1` (no convergence stop) and `polish=False` (no gradient polish at the end).
#
# `scipy.optimize.differential_evolution(func, bounds, ..., vectorized=True,
# updating="deferred")` calls `func` with the whole population at once, an array shaped
# (number of variables, population size), and expects one objective value per candidate: so
# the whole population takes **one batched forward pass**. Its `callback(xk, convergence)` is
# called after every generation; returning `True` stops the search. A row or column is a real
# number in `[0, H)` or `[0, W)`: take its integer part.
#
# **Task.** Write `one_pixel(model, x, y, pixels=1, popsize=400, maxiter=100, seed=0)`: attack
# each image of `x` (its label in `y`) and return the batch of perturbed images. Use `seed`
# for scipy's `seed` so the attack is reproducible.
#
# **Requirements**
#
# - Search with `scipy.optimize.differential_evolution` over `pixels` tuples (row, column, one value per channel), rows in [0, H), columns in [0, W), values in [0, 1].
# - A candidate sets each of its pixels to its values in every channel and leaves all other pixels unchanged.
# - Minimise the model's probability of the true class `y`; for an image that no candidate fools, return the best candidate found.
# - Evaluate the whole population in one batched forward pass per generation (`vectorized=True`).
# - Stop the search of an image as soon as a candidate makes the model misclassify it, and return that candidate.

# %% nbgrader={"grade": false, "grade_id": "one_pixel", "locked": false, "schema_version": 3, "solution": true, "task": false}
def one_pixel(model, x, y, pixels=1, popsize=400, maxiter=100, seed=0):
    """The One-Pixel attack (Su et al.) by differential evolution; returns the images."""
    ### BEGIN SOLUTION
    _, channels, height, width = x.shape
    bounds = ([(0, height), (0, width)] + [(0, 1)] * channels) * pixels
    x_adv = x.detach().clone()
    for i in range(len(x)):
        image, label = x[i].detach(), int(y[i])
        fooling = []  # the first candidate that fools the model

        def apply(population, image=image):
            """Images with each candidate's pixels set; population is (variables, N)."""
            genes = torch.as_tensor(np.asarray(population).T, dtype=x.dtype, device=x.device)
            genes = genes.reshape(len(genes), pixels, 2 + channels)
            batch = image.repeat(len(genes), 1, 1, 1)
            rows = genes[..., 0].long().clamp(0, height - 1)
            cols = genes[..., 1].long().clamp(0, width - 1)
            members = torch.arange(len(genes), device=x.device)[:, None].expand_as(rows)
            batch[members, :, rows, cols] = genes[..., 2:]
            return batch

        def objective(population, label=label, fooling=fooling, apply=apply):
            with torch.no_grad():
                probs = F.softmax(model(apply(population)), dim=1)
            fooled = (probs.argmax(1) != label).nonzero()
            if len(fooled) and not fooling:
                fooling.append(np.asarray(population)[:, int(fooled[0])])
            return probs[:, label].cpu().numpy()

        result = differential_evolution(
            objective, bounds, maxiter=maxiter, popsize=max(1, popsize // len(bounds)),
            recombination=1, atol=-1, polish=False, seed=seed, vectorized=True,
            updating="deferred", callback=lambda xk, convergence, fooling=fooling: bool(fooling))
        best = fooling[0] if fooling else result.x
        x_adv[i] = apply(best[:, None])[0]
    return x_adv
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_one_pixel_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# fx.check_one_pixel: models fooled exactly when one pixel is bright in every channel (or,
# on bright images, dark), or never; fx.QueryCounter counts the model's calls and images.
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(one_pixel, "one_pixel")
fx.check_one_pixel(one_pixel)
print("one_pixel: visible tests passed")


# %% nbgrader={"grade": true, "grade_id": "test_one_pixel_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(one_pixel, "one_pixel")
fx.check_one_pixel(one_pixel, seed=1)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "counting_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 5. Counting queries
#
# White-box attacks pay in gradient computations, black-box attacks in **queries**: how many
# images they ask the model about. To compare them fairly, every attack in the study runs on
# a wrapper that counts the images passed through the model, whoever calls it: your attacks,
# the package's PGD, or ART's HopSkipJump (ART's `PyTorchClassifier` calls the wrapped
# module's forward).
#
# **Task.** Write `CountingModel(model)`, a `torch.nn.Module` that wraps `model` (store it as
# an attribute, so `.to()` and `.eval()` reach it), with an attribute `queries` and a method
# `reset()`.
#
# **Requirements**
#
# - Count every image passed to `forward` in `queries` (a batch of n images adds n), starting from 0.
# - Return the wrapped model's output unchanged, so that gradients flow through the wrapper.
# - `reset()` sets `queries` back to 0.

# %% nbgrader={"grade": false, "grade_id": "counting_model", "locked": false, "schema_version": 3, "solution": true, "task": false}
class CountingModel(nn.Module):
    """Wraps a model and counts the images it is asked to classify (``queries``)."""

    ### BEGIN SOLUTION
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.queries = 0

    def forward(self, x):
        self.queries += x.shape[0]
        return self.model(x)

    def reset(self):
        """Start counting from zero again."""
        self.queries = 0
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_counting_model_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# fx.check_counting_model: batches under torch.no_grad() and with gradients, the output and
# the input gradient through the wrapper, reset().
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(CountingModel, "CountingModel")
fx.check_counting_model(CountingModel)
print("CountingModel: visible tests passed")


# %% nbgrader={"grade": true, "grade_id": "test_counting_model_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(CountingModel, "CountingModel")
fx.check_counting_model(CountingModel, seed=2, n=7)
# Through ART's PyTorchClassifier: 7 images predicted in batches of 4 are 7 queries.
with fx.silent():
    counter = CountingModel(fx.mlp(seed=3))
    classifier = PyTorchClassifier(model=counter, loss=nn.CrossEntropyLoss(),
                                   input_shape=(1, 6, 6), nb_classes=4, clip_values=(0.0, 1.0),
                                   device_type="cpu")
    classifier.predict(fx.images(7, seed=4).numpy(), batch_size=4)
assert counter.queries == 7, f"7 images predicted through ART counted as {counter.queries}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "compare_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 6. Comparing two attacks: unpaired and paired
#
# The seed study compared two attacks' accuracies $p_a$ and $p_b$ (each measured on the same
# $n$ images) with the 95% normal (Wald) interval for a difference of two proportions,
#
# $$ (p_a - p_b) \pm z \sqrt{\frac{p_a(1-p_a)}{n} + \frac{p_b(1-p_b)}{n}}, \qquad
#    z = \Phi^{-1}\big(1 - \tfrac{1 - \text{confidence}}{2}\big) \;(1.96 \text{ at } 95\%). $$
#
# That interval treats the two accuracies as **independent** samples. But both attacks ran
# on the *same* images: an image that one attack breaks is usually broken by the other too.
# The paired test looks only at the images the two attacks disagree on, the discordant pairs
# $b$ (correct under attack $a$, wrong under $b$) and $c$ (the reverse); under "the attacks are
# equally strong", each discordant image is $b$ or $c$ with probability 1/2: **McNemar's exact
# test**, a binomial test of $b$ out of $b + c$. It lives in `statsmodels`:
# `mcnemar(table, exact=True)` on the 2x2 table `[[both correct, only a correct], [only b
# correct, both wrong]]`.
#
# **Task.** Write `compare(correct_a, correct_b, confidence=0.95)`: the inputs are the two
# attacks' per-image outcomes on the same images (1/True: the model is still correct on the
# adversarial image), as lists, numpy arrays or tensors. Return a dict with `accuracy_a`,
# `accuracy_b`, `difference`, `ci_low`, `ci_high`, `b`, `c` and `p_value`.
#
# **Requirements**
#
# - Return the accuracies `accuracy_a` and `accuracy_b` and their difference `difference = accuracy_a - accuracy_b`.
# - Return the unpaired interval `difference ± z * sqrt(pa (1 - pa) / n + pb (1 - pb) / n)` as `ci_low`, `ci_high`, with `z` the two-sided normal quantile for `confidence`.
# - Return the discordant counts `b` (correct under a, wrong under b) and `c` (wrong under a, correct under b).
# - Return the p-value of McNemar's exact test on the paired 2x2 table as `p_value`.
# - Raise a `ValueError` when the two outcome vectors are empty or differ in length.

# %% nbgrader={"grade": false, "grade_id": "compare", "locked": false, "schema_version": 3, "solution": true, "task": false}
def compare(correct_a, correct_b, confidence=0.95):
    """Unpaired Wald interval and McNemar's exact test for two attacks on the same images."""
    ### BEGIN SOLUTION
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"compare needs both attacks' outcomes on the same (non-empty) images; "
                         f"got {len(a)} and {len(b)} outcomes")
    n = len(a)
    pa, pb = a.mean(), b.mean()
    z = norm.ppf(1 - (1 - confidence) / 2)  # two-sided: 1.96 at 95%
    half_width = z * math.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    paired = mcnemar(table, exact=True)
    return {"accuracy_a": float(pa), "accuracy_b": float(pb), "difference": float(pa - pb),
            "ci_low": float(pa - pb - half_width), "ci_high": float(pa - pb + half_width),
            "b": table[0][1], "c": table[1][0], "p_value": float(paired.pvalue)}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_compare_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# fx.check_compare compares your function with a reference (the Wald interval and McNemar's
# exact test written as a binomial test of the discordant pairs), on a hand-made example,
# random paired outcomes (confidence 0.9, 0.95, 0.99; lists, arrays, tensors), few
# discordant pairs, and inputs that must raise a ValueError.
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(compare, "compare")
fx.check_compare(compare)
print("compare: visible tests passed")


# %% nbgrader={"grade": true, "grade_id": "test_compare_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks import evasion as fx

assert_own(compare, "compare")
fx.check_compare(compare, seed=3)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "study_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 7. The study
#
# Two pre-trained models (built by the package from their recipes and cached): a small digits
# CNN (`lab6-digits-cnn`) and the course CNN (`lab6-course-cnn`). Every attack runs on the
# first `n_images` test images of each dataset (HopSkipJump and One-Pixel, which cost far more
# queries, on the first `n_slow` of them), through your `CountingModel`:
#
# - **FGSM**, **I-FGSM** (step $\alpha = 1/255$, Kurakin et al.'s
#   $\min(\epsilon \cdot 255 + 4,\ 1.25\,\epsilon \cdot 255)$ iterations) and **PGD**
#   (`labsupport.attacks.pgd`, random start) at $\epsilon$ = `eps_digits` / `eps_course`;
# - **DeepFool** over all classes, overshoot 0.02;
# - **HopSkipJump** from ART (`art.attacks.evasion.HopSkipJump`, $L_2$, on a
#   `PyTorchClassifier` around the counter);
# - **One-Pixel** (one pixel, the profile's population and generations).
#
# For each: benign and adversarial accuracy, the success rate (the share of correctly
# classified images that the attack makes wrong), the mean and median $L_2$ and $L_\infty$
# norms of the successful perturbations, the runtime and the queries per image.

# %% nbgrader={"grade": false, "grade_id": "models", "locked": true, "schema_version": 3, "solution": false, "task": false}
import matplotlib.pyplot as plt

# The smoke profile checks the plumbing; it never downloads a dataset. The digits follow the
# course dataset: the offline stand-in when that is the synthetic one.
DATA = load_course_data("synthetic" if PROFILE == "smoke" and dataset == "auto" else dataset)
if digits == "auto" and (PROFILE == "smoke" or DATA.name == "synthetic"):
    digits = "digits"
DIGITS = load_digits(digits)
CAPTION = caption(profile=PROFILE, dataset=f"{DIGITS.name} + {DATA.name}", seed=seed,
                  device=DEVICE)
use_style()
print(f"{DIGITS}; {DATA}")
seed_everything(seed)
SETS = {
    "digits": dict(data=DIGITS, eps=eps_digits,
                   model=load_asset("lab6-digits-cnn", dataset=DIGITS, profile=PROFILE,
                                    device=DEVICE)),
    "course": dict(data=DATA, eps=eps_course,
                   model=load_asset("lab6-course-cnn", dataset=DATA, profile=PROFILE,
                                    device=DEVICE)),
}
for name, entry in SETS.items():
    data = entry["data"]
    n = min(SIZES["n_images"], len(data.x_test))
    entry["x"], entry["y"] = data.x_test[:n].to(DEVICE), data.y_test[:n].to(DEVICE)
    entry["num_classes"] = data.num_classes
    print(f"{name}: {data.name}, {n} test images, model clean accuracy "
          f"{entry['model'].asset_meta['test_accuracy']:.3f}")


# %% nbgrader={"grade": false, "grade_id": "attacks", "locked": true, "schema_version": 3, "solution": false, "task": false}
def kurakin_iterations(eps):
    """Kurakin et al.'s number of I-FGSM iterations at step 1/255."""
    return max(1, round(min(eps * 255 + 4, 1.25 * eps * 255)))


def hop_skip_jump(counted, x, y, num_classes):
    """ART's HopSkipJump (L2, untargeted) on a PyTorchClassifier around the counter."""
    from art.attacks.evasion import HopSkipJump

    class Float32(nn.Module):
        """ART hands some queries over as float64 arrays: cast them for the model."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, batch):
            return self.model(batch.float())

    classifier = PyTorchClassifier(
        model=Float32(counted), loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
        nb_classes=num_classes, clip_values=(0.0, 1.0),
        device_type="gpu" if DEVICE.type == "cuda" else "cpu")
    attack = HopSkipJump(classifier, targeted=False, norm=2, max_iter=SIZES["hsj_iter"],
                         max_eval=SIZES["hsj_max_eval"], init_eval=SIZES["hsj_init_eval"],
                         init_size=SIZES["hsj_init_size"], batch_size=128, verbose=False)
    np.random.seed(seed)  # ART draws its random directions from numpy's global generator
    x_adv = attack.generate(x.cpu().numpy())
    return torch.from_numpy(x_adv).to(x.device, x.dtype)


def attack_suite(entry):
    """name -> (attack(counted_model, x, y) -> x_adv, images it runs on)."""
    eps, k = entry["eps"], entry["num_classes"]
    slow = min(SIZES["n_slow"], len(entry["x"]))
    return {
        "FGSM": (lambda m, x, y: fgsm(m, x, y, eps), None),
        "I-FGSM": (lambda m, x, y: iterative_fgsm(m, x, y, eps, 1 / 255,
                                                  kurakin_iterations(eps))[0], None),
        "PGD": (lambda m, x, y: pgd(m, x, y, eps=eps, steps=pgd_steps, seed=seed,
                                    optimize=False), None),
        "DeepFool": (lambda m, x, y: deepfool(m, x, k, overshoot=overshoot)[0], None),
        "HopSkipJump": (lambda m, x, y: hop_skip_jump(m, x, y, k), slow),
        "One-Pixel": (lambda m, x, y: one_pixel(m, x, y, pixels=1,
                                                popsize=SIZES["pixel_popsize"],
                                                maxiter=SIZES["pixel_maxiter"], seed=seed), slow),
    }


def measure(model, x, y, x_adv, seconds, queries):
    """One row of the table, and the per-image outcomes (still correct under attack)."""
    clean = predict(model, x) == y.cpu()
    adversarial = predict(model, x_adv) == y.cpu()
    fooled = clean & ~adversarial
    delta = (x_adv - x).flatten(1).cpu()
    l2, linf = delta.norm(dim=1)[fooled], delta.abs().amax(dim=1)[fooled]

    def stat(values, how):
        return float(how(values)) if len(values) else float("nan")

    row = {"n": len(x), "benign_accuracy": clean.float().mean().item(),
           "adversarial_accuracy": adversarial.float().mean().item(),
           "success_rate": (fooled.sum() / clean.sum().clamp_min(1)).item(),
           "l2_mean": stat(l2, torch.mean), "l2_median": stat(l2, torch.median),
           "linf_mean": stat(linf, torch.mean), "linf_median": stat(linf, torch.median),
           "seconds": seconds, "queries_per_image": queries / len(x)}
    return row, adversarial.numpy()


RESULTS, OUTCOMES, EXAMPLES = {}, {}, {}
for name, entry in SETS.items():
    RESULTS[name], OUTCOMES[name], EXAMPLES[name] = {}, {}, {}
    for attack_name, (attack, limit) in attack_suite(entry).items():
        x, y = entry["x"][:limit], entry["y"][:limit]
        counted = CountingModel(entry["model"]).eval()
        start = time.perf_counter()
        x_adv = attack(counted, x, y).detach()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        row, outcome = measure(entry["model"], x, y, x_adv, seconds, counted.queries)
        RESULTS[name][attack_name], OUTCOMES[name][attack_name] = row, outcome
        EXAMPLES[name][attack_name] = x_adv.cpu()
        print(f"{name:>6} {attack_name:>11}: n {row['n']:>4}, accuracy "
              f"{row['benign_accuracy']:.3f} -> {row['adversarial_accuracy']:.3f}, success "
              f"{row['success_rate']:.3f}, median L2 {row['l2_median']:.3f}, median Linf "
              f"{row['linf_median']:.3f}, {seconds:.2f} s, "
              f"{row['queries_per_image']:.0f} queries/image")

# %% [markdown] nbgrader={"grade": false, "grade_id": "targeted_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Targeted FGSM on the digits
#
# Target: the next digit, $t = (y + 1) \bmod 10$. The targeted success rate is the share of
# images the model now classifies as $t$.

# %% nbgrader={"grade": false, "grade_id": "targeted", "locked": true, "schema_version": 3, "solution": false, "task": false}
entry = SETS["digits"]
TARGETED = {}
target = (entry["y"] + 1) % entry["num_classes"]
for eps_t in targeted_eps:
    x_adv = fgsm(entry["model"], entry["x"], entry["y"], eps_t, targeted=True, target=target)
    predicted = predict(entry["model"], x_adv)
    TARGETED[eps_t] = {"targeted_success": (predicted == target.cpu()).float().mean().item(),
                       "misclassified": (predicted != entry["y"].cpu()).float().mean().item()}
    print(f"targeted FGSM, eps {eps_t}: hits the target on {TARGETED[eps_t]['targeted_success']:.3f}"
          f" of the images, misclassifies {TARGETED[eps_t]['misclassified']:.3f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "paired_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Paired comparisons
#
# Three pairs, on each dataset: FGSM vs I-FGSM, I-FGSM vs HopSkipJump (on the images both
# ran on), DeepFool vs PGD. Compare the width of the unpaired interval with McNemar's
# p-value.

# %% nbgrader={"grade": false, "grade_id": "paired", "locked": true, "schema_version": 3, "solution": false, "task": false}
PAIRS = [("FGSM", "I-FGSM"), ("I-FGSM", "HopSkipJump"), ("DeepFool", "PGD")]
COMPARISONS = {}
for name in SETS:
    for first, second in PAIRS:
        a, b = OUTCOMES[name][first], OUTCOMES[name][second]
        n = min(len(a), len(b))
        result = compare(a[:n], b[:n])
        COMPARISONS[f"{name}: {first} vs {second}"] = {"n": n, **result}
        print(f"{name:>6}: {first} vs {second} (n {n}): accuracy {result['accuracy_a']:.3f} vs "
              f"{result['accuracy_b']:.3f}, difference {result['difference']:+.3f}, 95% CI "
              f"[{result['ci_low']:+.3f}, {result['ci_high']:+.3f}]; discordant b {result['b']}"
              f", c {result['c']}; McNemar exact p = {result['p_value']:.3g}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "report_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Table and figures for the write-up

# %% nbgrader={"grade": false, "grade_id": "report", "locked": true, "schema_version": 3, "solution": false, "task": false}
COLUMNS = ["n", "benign_accuracy", "adversarial_accuracy", "success_rate", "l2_mean",
           "l2_median", "linf_mean", "linf_median", "seconds", "queries_per_image"]
table_path = save_table([{"dataset": SETS[name]["data"].name, "attack": attack_name,
                          **{c: row[c] for c in COLUMNS}}
                         for name in SETS for attack_name, row in RESULTS[name].items()],
                        "evasion-attacks")
print(f"table written to {table_path}")
header = f"{'dataset':>8} {'attack':>11} | " + " | ".join(f"{c:>10.10}" for c in COLUMNS)
print(header)
print("-" * len(header))
for name in SETS:
    for attack_name, row in RESULTS[name].items():
        print(f"{name:>8} {attack_name:>11} | " + " | ".join(f"{row[c]:>10.4g}" for c in COLUMNS))

ATTACKS = list(RESULTS["digits"])
fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
panels = [("adversarial_accuracy", "accuracy under attack", False),
          ("l2_median", "median L2 of successful perturbations", False),
          ("linf_median", "median L-inf of successful perturbations", False),
          ("queries_per_image", "model queries per image (log)", True)]
positions = np.arange(len(ATTACKS))
for ax, (key, title, log) in zip(axes, panels, strict=True):
    for offset, name in ((-0.2, "digits"), (0.2, "course")):
        values = [RESULTS[name][a][key] for a in ATTACKS]
        ax.bar(positions + offset, values, width=0.4, label=f"{name} ({SETS[name]['data'].name})")
    ax.set_xticks(positions, ATTACKS, rotation=35, ha="right")
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
axes[0].set_ylim(0, 1)
axes[0].legend()
fig.suptitle(f"Evasion attacks compared (eps {eps_digits:g} digits, {eps_course * 255:.0f}/255 "
             "course; DeepFool, HopSkipJump, One-Pixel unbounded)")
fig.tight_layout()
save_figure(fig, "evasion-attacks-comparison", caption=CAPTION)
plt.show()


def show(ax, image, title):
    """Draw one (C, H, W) image in [0, 1]."""
    image = image.detach().cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1))
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def amplified(delta):
    """A perturbation scaled to fill [0, 1] around grey 0.5, so small changes show."""
    scale = delta.abs().max().clamp_min(1e-12)
    return (0.5 + 0.5 * delta / scale).clamp(0, 1)


fig, axes = plt.subplots(4, len(ATTACKS) + 1, figsize=(1.7 * (len(ATTACKS) + 1), 7.2))
for r, name in enumerate(SETS):
    # The first image (among those every attack ran on) that the model gets right.
    model, slow = SETS[name]["model"], len(EXAMPLES[name]["One-Pixel"])
    right = (predict(model, SETS[name]["x"][:slow]) == SETS[name]["y"][:slow].cpu()).nonzero()
    i = int(right[0]) if len(right) else 0
    x, y = SETS[name]["x"][i : i + 1], SETS[name]["y"][i : i + 1]
    classes = SETS[name]["data"].classes
    show(axes[2 * r, 0], x[0], f"{name}: original\n{classes[int(y[0])]}")
    axes[2 * r + 1, 0].axis("off")
    for c, attack_name in enumerate(ATTACKS, 1):
        x_adv = EXAMPLES[name][attack_name][i : i + 1].to(DEVICE)
        predicted = classes[int(predict(model, x_adv)[0])]
        show(axes[2 * r, c], x_adv[0], f"{attack_name}\n-> {predicted}")
        delta = (x_adv - x)[0]
        show(axes[2 * r + 1, c], amplified(delta),
             f"L2 {float(delta.norm()):.2f}, Linf {float(delta.abs().max()):.2f}")
fig.suptitle("Adversarial examples (top) and their perturbations, amplified (bottom)")
fig.tight_layout()
save_figure(fig, "evasion-attacks-examples", caption=CAPTION)
plt.show()

write_results(
    {"eps_digits": eps_digits, "eps_course": eps_course, "pgd_steps": pgd_steps,
     "overshoot": overshoot, "sizes": SIZES, "digits_dataset": DIGITS.name,
     "course_dataset": DATA.name, "attacks": RESULTS,
     "targeted_fgsm_digits": {str(k): v for k, v in TARGETED.items()},
     "comparisons": COMPARISONS, "table": table_path.name},
    lab="lab6", profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)

# %% [markdown] nbgrader={"grade": false, "grade_id": "explore_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Explore
#
# Browse the digits' adversarial examples per attack and budget. FGSM, I-FGSM and PGD are
# recomputed here at a few $\epsilon$ (on a few images); DeepFool, HopSkipJump and One-Pixel
# have no $\epsilon$ (they look for the smallest change that works) and show the study's
# examples whatever $\epsilon$ says.

# %% nbgrader={"grade": false, "grade_id": "explore", "locked": true, "schema_version": 3, "solution": false, "task": false}
EXPLORE_EPS = [0.05, 0.1, 0.2, 0.3]
entry = SETS["digits"]
x_few, y_few = entry["x"][:4], entry["y"][:4]
BROWSE = {}
for eps_e in EXPLORE_EPS:
    BROWSE[("FGSM", eps_e)] = fgsm(entry["model"], x_few, y_few, eps_e)
    BROWSE[("I-FGSM", eps_e)] = iterative_fgsm(entry["model"], x_few, y_few, eps_e, 1 / 255,
                                               kurakin_iterations(eps_e))[0]
    BROWSE[("PGD", eps_e)] = pgd(entry["model"], x_few, y_few, eps=eps_e, steps=pgd_steps,
                                 seed=seed)


def render(attack, eps, image):
    """Original, adversarial example and amplified perturbation of one digit."""
    found = BROWSE.get((attack, eps))
    x_adv = found if found is not None else EXAMPLES["digits"][attack].to(DEVICE)
    i = min(image, len(x_adv) - 1)
    x, adv = x_few[i], x_adv[i]
    predicted = int(predict(entry["model"], adv[None])[0])
    fig, axes = plt.subplots(1, 3, figsize=(6.5, 2.5))
    show(axes[0], x, f"original: {int(y_few[i])}")
    budget = f"eps {eps}" if found is not None else "no eps"
    show(axes[1], adv, f"{attack} ({budget}) -> {predicted}")
    delta = adv - x
    show(axes[2], amplified(delta), f"L2 {float(delta.norm()):.2f}, Linf {float(delta.abs().max()):.2f}")
    fig.tight_layout()
    return fig


figure = explore(render, attack=ATTACKS, eps=EXPLORE_EPS, image=list(range(len(x_few))),
                 static={"attack": "I-FGSM", "eps": 0.1})
if isinstance(figure, plt.Figure):  # a batch run: the static view, saved with the others
    save_figure(figure, "explore-evasion", caption=CAPTION)

# %% [markdown] nbgrader={"grade": false, "grade_id": "questions", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 8. Questions for the write-up
#
# Answer in the cell below, using the table (`evasion-attacks.csv`), the figures
# (`evasion-attacks-comparison.pdf`, `evasion-attacks-examples.pdf`) and the comparisons.
#
# 1. **Iterations.** Why does I-FGSM fool more images than FGSM at the same $\epsilon$, and
#    with a smaller median $L_\infty$ than $\epsilon$ (look at the table)? What does the
#    early stop contribute?
# 2. **Queries.** What does the decision-based attack (HopSkipJump) pay, in queries per image,
#    compared with the white-box attacks, and what does it get for it (perturbation size)?
#    Why does One-Pixel need so many queries for so few changed pixels?
# 3. **Norms.** Why do the $L_2$ and $L_\infty$ columns rank the attacks differently (compare
#    DeepFool, PGD and One-Pixel)? Which norm would you report for which threat model?
# 4. **Statistics.** Why is the unpaired interval conservative for two attacks run on the same
#    images, and what does McNemar's test use instead? Give a comparison from your run where
#    the two disagree (or say why none does at this sample size).
# 5. **Targeted.** How does targeted FGSM's success rate change with $\epsilon$ on the digits,
#    and why is it far below the untargeted misclassification rate?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answers", "locked": false, "points": 5, "schema_version": 3, "solution": true, "task": false}
# 1. FGSM takes one step along the sign of the gradient at $x$: it trusts a linear model of the
#    loss over the whole $\epsilon$-ball, and the loss surface of a ReLU network bends within
#    it, so the single step often overshoots or points the wrong way. I-FGSM re-linearises
#    after every small step and follows the curved surface, so it finds misclassified points
#    FGSM misses. With the early stop, each image stops at the first iterate that is
#    misclassified: most need only part of the budget, so the median $L_\infty$ of the
#    successful perturbations is below $\epsilon$ (FGSM's is exactly $\epsilon$).
# 2. HopSkipJump sees only labels: it estimates the boundary's normal by sampling hundreds to
#    thousands of random directions per iteration and binary-searches along the way, so it
#    costs orders of magnitude more queries per image than FGSM (1), I-FGSM (a few tens) or
#    DeepFool (a few forward and backward passes); in exchange it needs no gradients and finds
#    small $L_2$ perturbations, close to DeepFool's with enough iterations. One-Pixel evaluates
#    a population of hundreds of candidates per generation over many generations: a
#    combinatorial search over positions and colours with no gradient to guide it.
# 3. $L_2$ sums the change over all pixels; $L_\infty$ takes the largest single change.
#    DeepFool minimises $L_2$ and spreads small changes over the image (small $L_2$, moderate
#    $L_\infty$); PGD and FGSM use their whole $L_\infty$ budget on almost every pixel (large
#    $L_2$, $L_\infty = \epsilon$); One-Pixel changes one pixel by a lot ($L_\infty$ close to 1,
#    small $L_2$, an $L_0$ of 1). Each attack is small in the norm it optimises. Report the norm
#    of the threat model: $L_\infty$ for imperceptible changes everywhere, $L_2$ for total
#    energy, $L_0$ for sparse physical changes (stickers, dead pixels).
# 4. The unpaired interval adds the two variances as if the samples were independent; the
#    variance of the paired difference is smaller by twice the covariance, which is large
#    because the attacks succeed and fail on largely the same images. McNemar's test
#    conditions on the discordant images only (b and c), so a consistent edge of one attack
#    shows as significant even where the unpaired interval still covers 0 (a 0.06 difference
#    between accuracies near 0.5 on a hundred images has a CI of about ±0.14, while 6
#    discordant pairs all in one direction give p = 0.03). At tiny samples the Wald interval
#    is also wrong the other way: with an accuracy of 0 its variance term vanishes, and it
#    can exclude 0 where the exact test cannot reject (30 images with b = 4, c = 0, as an
#    earlier `cpu` run had for I-FGSM vs HopSkipJump: CI [+0.01, +0.26], McNemar p = 0.125).
# 5. The targeted success rate grows with $\epsilon$ but stays well below the untargeted
#    rate: one step must reach one particular class, not any wrong class, and at large
#    $\epsilon$ the single linear step overshoots into other classes; the untargeted
#    misclassification rate counts every wrong answer.
