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
# # Lab 1 — Free adversarial training
#
# **Adversarial Training for Free!** (Shafahi, Najibi, Ghiasi, Xu, Dickerson, Studer, Davis,
# Taylor & Goldstein, NeurIPS 2019).
#
# A classifier that is accurate on clean images can be fooled by a perturbation $\delta$ too
# small to see: with $\|\delta\|_\infty \le \epsilon = 8/255$, projected gradient descent
# (PGD, Madry et al. 2018) flips most predictions of a normally trained network.
# *Adversarial training* trains on such perturbed images instead of clean ones,
#
# $$ \min_\theta \; \mathbb{E}_{(x, y)} \Big[ \max_{\|\delta\|_\infty \le \epsilon}
#    \ell\big(f_\theta(x + \delta), y\big) \Big], $$
#
# and Madry et al. solve the inner maximisation with a $K$-step PGD attack for every
# minibatch: each training step costs $K + 1$ forward and backward passes.
#
# **The free trick.** A backward pass through the loss gives the gradient with respect to
# the weights *and*, at almost no extra cost, with respect to the input. Free adversarial
# training uses both from the same backward pass: the weights take a descent step and the
# perturbation takes an ascent step. Each minibatch is *replayed* $m$ times in a row, so
# the perturbation is refined $m$ times on it, and the perturbation is *not* reset between
# minibatches: it is carried over, a warm start for the next one. To keep the total cost
# equal to standard training, the number of epochs is divided by $m$. The paper's
# Algorithm 1:
#
# ```
# Require: training samples X, perturbation bound ε, learning rate τ, hop steps m
# Initialize θ
# δ ← 0
# for epoch = 1 ... N_ep / m do
#     for minibatch B ⊂ X do
#         for i = 1 ... m do
#             x_adv ← clip(x + δ, 0, 1)        # keep a valid image (see below)
#             # Update θ with stochastic gradient descent
#             g_θ ← E_(x,y)∈B [∇_θ l(x_adv, y, θ)]
#             g_adv ← ∇_x l(x_adv, y, θ)
#             θ ← θ − τ g_θ
#             # Use gradients calculated for the minimization step to update δ
#             δ ← δ + ε · sign(g_adv)
#             δ ← clip(δ, −ε, ε)
#         end for
#     end for
# end for
# ```
#
# The paper's printed algorithm feeds the network $x + \delta$ as it is; the authors' code
# (and this lab) first clips it to the image range $[0, 1]$, the line marked above, so the
# network only ever sees valid images.
#
# **What you do.** (1) Implement standard training, `standard_train`. (2) Implement free
# adversarial training, `free_adv_train`. (3) Train both with $\epsilon = 8/255$, $m = 4$ and
# time them. (4) Measure benign accuracy and the success rate of PGD against both.
# (5) Re-train with $m = 7$ and compare. (6) Answer the questions at the end.
#
# Run the cells from the top. Cells marked *YOUR CODE HERE* are yours; after each one, run
# the test cell below it. The `profile` parameter chooses the size of the experiments
# (`smoke`: seconds, `cpu`: minutes on a laptop, `full`: the assignment scale, 20,000
# training images, GPU recommended; `auto` picks `full` on a GPU and `cpu` otherwise). The
# profile changes sizes, never the algorithm. To change it, edit the `parameters` cell below
# (e.g. `profile = "smoke"` for a quick check) and run the cells from there; the autograder
# ignores your edits there and always runs `smoke`. The figure, the table (`.csv`), the
# results (`lab1-results.json`) and the trained weights (`trained-models/`) are saved beside
# this notebook.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Google Colab setup: the release puts the pinned install of the course's support package
# here (labsupport.instructor.colab); this source copy does nothing.

# %% tags=["parameters"] nbgrader={"grade": false, "grade_id": "parameters", "locked": true, "schema_version": 3, "solution": false, "task": false}
profile = "auto"  # "smoke", "cpu", "full" or "auto"
dataset = "auto"  # "cifar4", "synthetic", a path to dataset-full.npz, or "auto"
seed = 0
eps = 8 / 255  # L-inf radius of the perturbations, for training and for the PGD attack
m = 4  # replays of each minibatch ("hop steps") in free adversarial training
m_rerun = 7  # the re-run of step 5
lr = 0.05  # peak learning rate of the one-cycle schedule (SGD, momentum 0.9, weight decay 5e-4)
epochs = None  # epochs of standard training (None: the profile's); free AT runs epochs / m
batch_size = None  # minibatch size (None: the profile's)
pgd_steps = 10  # PGD iterations (step size 2.5 * eps / pgd_steps, random start)

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from labsupport.attacks import pgd, success_rate
from labsupport.data import load_course_data
from labsupport.models import SimpleCNN
from labsupport.report import (
    caption,
    save_figure,
    save_table,
    save_weights,
    use_style,
    write_results,
)
from labsupport.runtime import Timer, get_device, resolve_profile, seed_everything
from labsupport.train import evaluate, fit, make_loader

PROFILE = resolve_profile(profile)
DEVICE = get_device()
SIZES = {
    "smoke": dict(n_train=64, n_test=32, epochs=1, batch_size=32),
    "cpu": dict(n_train=4000, n_test=1000, epochs=8, batch_size=128),
    "full": dict(n_train=20_000, n_test=4000, epochs=28, batch_size=128),
}[PROFILE]
for key, value in dict(epochs=epochs, batch_size=batch_size).items():
    if value is not None:
        SIZES[key] = int(value)
# The smoke profile checks the plumbing; it never downloads a dataset.
DATA = load_course_data("synthetic" if PROFILE == "smoke" and dataset == "auto" else dataset)
DATA = DATA.subset(SIZES["n_train"], SIZES["n_test"])
CAPTION = caption(profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)
use_style()
print(f"profile {PROFILE} on {DEVICE}; {DATA}; sizes {SIZES}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "standard_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Standard training
#
# **What the package gives you, and what is yours.** The package's
# `fit(model, loader, step, epochs=...)` runs the loop for you: for each of `epochs` epochs it
# calls `step(model, x, y)` on every minibatch of `loader` (moved to the model's device),
# shows a progress bar, times each epoch and returns a `History`. You write the *step*: what
# one minibatch does to the model; it returns that minibatch's loss as a number
# (`loss.item()`), which `fit` records in the `History` (`history.loss`, one mean per epoch). The package has no training step for you to call, and the
# references the tests use refuse to run inside your functions: the tests grade your code.
#
# **Task.** Write `standard_train(model, loader, optimizer, *, epochs)`: minimise the mean
# cross-entropy (`F.cross_entropy`) of `model` on the minibatches of `loader` for `epochs`
# epochs, one optimizer step per minibatch (clear the gradients, forward, backward, step).
#
# **Requirements**
#
# - Run `epochs` epochs, each visiting every minibatch of `loader` once, in the loader's order.
# - Train on the clean minibatch and minimise its mean cross-entropy (`F.cross_entropy` of the model's logits).
# - Clear the old gradients before each backward pass, so that every step uses the current minibatch's gradient only.
# - Take exactly one optimizer step per minibatch, after one forward and one backward pass.
# - Return the `History` that `fit` returns.

# %% nbgrader={"grade": false, "grade_id": "standard_train", "locked": false, "schema_version": 3, "solution": true, "task": false}
def standard_train(model, loader, optimizer, *, epochs):
    """Train ``model`` on ``loader`` for ``epochs`` epochs with ``optimizer``; return the History."""
    ### BEGIN SOLUTION
    def step(model, x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return fit(model, loader, step, epochs=epochs, desc="standard")
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_standard_train_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Your function runs on a tiny fixture (3 minibatches of 8 images, a tiny CNN) whose model
# and optimizer record every forward pass, backward pass and optimizer step;
# fx.check_standard_train checks the requirements above on that record, including that your
# function returns the `History` that `fit` returned (one entry per epoch).
from labsupport.answers import assert_own
from labsupport.checks import free_at as fx

assert_own(standard_train, "standard_train")
trace = fx.trace_training(standard_train, epochs=2)
fx.check_standard_train(trace, epochs=2)
from labsupport.train import History

assert isinstance(trace.returned, History), (
    f"standard_train must return the History that fit returns; got {trace.returned!r}")
print("standard_train: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_standard_train_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks import free_at as fx

assert_own(standard_train, "standard_train")
# Another epoch count, and a shorter last minibatch (8, 8 and 4 images).
trace = fx.trace_training(standard_train, epochs=3, n=20, batch_size=8, seed=3)
fx.check_standard_train(trace, epochs=3)

# It learns: a tiny CNN fits the robustness fixture.
model, loader, optimizer = fx.robustness_setup()
with fx.silent():
    standard_train(model, loader, optimizer, epochs=8)
accuracy, _ = fx.pgd_success(model)
assert accuracy > 0.95, f"benign accuracy after standard training is only {accuracy:.2f}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "free_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Free adversarial training
#
# **Task.** Write `free_adv_train(model, loader, optimizer, *, epochs, eps, m)`, Algorithm 1
# above, again as a step function for `fit`:
#
# - keep **one** perturbation `delta` (the shape of a minibatch), starting at zero, that
#   lives across steps: it is carried over from one replay to the next *and* from one
#   minibatch to the next (a shorter last minibatch uses the first `len(x)` rows of it);
# - replay each minibatch `m` times; in each replay do **one** forward and **one** backward
#   pass of the mean cross-entropy on `x + delta` (clipped to the image range [0, 1]) that
#   gives the gradients for the weights and for the input ($g_{adv}$, the gradient for
#   `delta`); take the optimizer step; then move `delta` by `eps * sign(g_adv)` and clip it
#   to `[-eps, eps]`;
# - run `math.ceil(epochs / m)` epochs (as the authors' code does), so the number of
#   forward/backward passes matches `epochs` of standard training.
#
# Only `fit` (the loop) comes from the package; the perturbation, the replays and the step
# are yours.
#
# **Requirements**
#
# - Keep one perturbation `delta` that starts at zero and is carried over from each replay to the next and from each minibatch to the next.
# - For a shorter minibatch, use (and update) the first `len(x)` rows of `delta`, keeping the others.
# - Replay each minibatch `m` times in a row, for `math.ceil(epochs / m)` epochs.
# - In each replay, make exactly one forward and one backward pass of the mean cross-entropy: that backward pass gives both the weight gradient and `g_adv`.
# - Feed the model `x + delta` clipped to the image range [0, 1].
# - Clear the gradients before each replay's backward pass and take one optimizer step per replay.
# - After the step, update `delta` to `clip(delta + eps * sign(g_adv), -eps, eps)`.
# - Return the `History` that `fit` returns.

# %% nbgrader={"grade": false, "grade_id": "free_adv_train", "locked": false, "schema_version": 3, "solution": true, "task": false}
def free_adv_train(model, loader, optimizer, *, epochs, eps, m):
    """Free adversarial training (Shafahi et al. 2019, Algorithm 1); returns the History."""
    ### BEGIN SOLUTION
    delta = None  # the perturbation, carried over between replays and minibatches

    def step(model, x, y):
        nonlocal delta
        if delta is None:
            delta = torch.zeros_like(x)
        d = delta[: len(x)]  # a view: updated in place, so it carries over
        for _ in range(m):
            optimizer.zero_grad(set_to_none=True)
            x_adv = (x + d).clamp(0, 1).requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            loss.backward()  # one backward pass: gradients for the weights and the input
            optimizer.step()
            with torch.no_grad():
                d += eps * x_adv.grad.sign()  # FGSM ascent step on the perturbation
                d.clamp_(-eps, eps)  # back into the eps-ball
        return loss.item()

    return fit(model, loader, step, epochs=math.ceil(epochs / m), desc=f"free AT, m={m}")
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_free_adv_train_visible", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# fx.check_free_adv_train checks the requirements above on the record of a run.
from labsupport.answers import assert_own
from labsupport.checks import free_at as fx

assert_own(free_adv_train, "free_adv_train")
# 20 images in minibatches of 8, 8 and 4 (pixels in [0.25, 0.75]: the model's input minus
# the clean image is delta); epochs=2, m=2: ceil(2 / 2) = 1 epoch of 2 replays each.
trace = fx.trace_training(free_adv_train, epochs=2, eps=fx.EPS, m=2, n=20)
fx.check_free_adv_train(trace, epochs=2, eps=fx.EPS, m=2)
# Pixels exactly 0 or 1: clipping the image to [0, 1] matters.
trace = fx.trace_training(free_adv_train, epochs=2, eps=0.1, m=2, low=0.0, high=1.0)
fx.check_free_adv_train(trace, epochs=2, eps=0.1, m=2, exact=False)
print("free_adv_train: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_free_adv_train_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
from labsupport.answers import assert_own
from labsupport.checks import free_at as fx

assert_own(free_adv_train, "free_adv_train")
# Epochs divided by m and rounded up, another m and eps, a shorter minibatch mid-run.
trace = fx.trace_training(free_adv_train, epochs=5, eps=0.03, m=3, n=20, batch_size=8, seed=5)
fx.check_free_adv_train(trace, epochs=5, eps=0.03, m=3)
trace = fx.trace_training(free_adv_train, epochs=3, eps=0.2, m=4, n=16, low=0.0, high=1.0,
                          seed=6)
fx.check_free_adv_train(trace, epochs=3, eps=0.2, m=4, exact=False)

# A robustness gain: free AT resists PGD far better than standard training on a fixture
# whose faint checkerboard is predictive but not robust.
model, loader, optimizer = fx.robustness_setup()
with fx.quiet():
    fx.train_standard_reference(model, loader, optimizer, epochs=8)
_, standard_success = fx.pgd_success(model)
model, loader, optimizer = fx.robustness_setup()
with fx.silent():
    free_adv_train(model, loader, optimizer, epochs=8, eps=fx.EPS, m=4)
accuracy, free_success = fx.pgd_success(model)
assert accuracy > 0.7, f"benign accuracy after free AT is only {accuracy:.2f}"
assert free_success < standard_success - 0.2, (
    f"PGD success {free_success:.2f} after free AT vs {standard_success:.2f} after standard "
    "training: no robustness gain")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "experiment_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. Train both, and time them
#
# Both models start from the same initial weights and see the same minibatches. Free
# adversarial training with $m$ replays runs $\lceil N_{ep} / m \rceil$ epochs, so it makes
# the same number of forward and backward passes over the data as standard training when $m$
# divides the number of epochs $N_{ep}$ (the table below counts them): compare the wall times.
#
# The learning rate follows a one-cycle schedule (a warm-up, then a decay to zero) over all
# optimizer steps of a run. It is attached to the optimizer (`register_step_post_hook`), so
# your training functions only call `optimizer.step()`.

# %% nbgrader={"grade": false, "grade_id": "train_models", "locked": true, "schema_version": 3, "solution": false, "task": false}
def passes(kind, m=None):
    """Forward/backward passes over the training set: epochs, or ceil(epochs / m) * m."""
    return SIZES["epochs"] if kind == "standard" else math.ceil(SIZES["epochs"] / m) * m


def train(kind, m=None):
    """Train a fresh SimpleCNN (same seed, same minibatches) and time it."""
    seed_everything(seed)
    model = SimpleCNN(num_classes=DATA.num_classes).to(DEVICE)
    loader = make_loader(DATA.x_train, DATA.y_train, batch_size=SIZES["batch_size"], seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4,
                                nesterov=True)
    steps = passes(kind, m) * len(loader)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=0.25)
    optimizer.register_step_post_hook(lambda *_: schedule.step())
    with Timer(DEVICE) as timer:
        if kind == "standard":
            standard_train(model, loader, optimizer, epochs=SIZES["epochs"])
        else:
            free_adv_train(model, loader, optimizer, epochs=SIZES["epochs"], eps=eps, m=m)
    return model.eval(), timer.seconds


MODELS, SECONDS = {}, {}
PASSES = {"standard": passes("standard"), f"free m={m}": passes("free", m)}
MODELS["standard"], SECONDS["standard"] = train("standard")
MODELS[f"free m={m}"], SECONDS[f"free m={m}"] = train("free", m=m)
for name, seconds in SECONDS.items():
    print(f"{name:>12}: trained in {seconds:.1f} s")

# %% [markdown] nbgrader={"grade": false, "grade_id": "evaluate_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. Benign accuracy and PGD
#
# The package's `pgd(model, x, y, eps=..., steps=..., random_start=True)` is the L-inf PGD
# attack of Madry et al. (step size $2.5\,\epsilon/\text{steps}$, a uniform random start in
# the ball); `success_rate` is the fraction of test images it misclassifies.

# %% nbgrader={"grade": false, "grade_id": "evaluate_models", "locked": true, "schema_version": 3, "solution": false, "task": false}
def measure(name):
    """Benign accuracy and PGD success rate of MODELS[name] on the test images."""
    model = MODELS[name]
    accuracy = evaluate(model, DATA.x_test, DATA.y_test)
    x_adv = pgd(model, DATA.x_test, DATA.y_test, eps=eps, steps=pgd_steps,
                random_start=True, seed=seed)
    return {"passes": PASSES[name], "train_seconds": SECONDS[name], "benign_accuracy": accuracy,
            "pgd_success": success_rate(model, x_adv, DATA.y_test)}


RESULTS = {name: measure(name) for name in MODELS}
for name, row in RESULTS.items():
    print(f"{name:>12}: benign accuracy {row['benign_accuracy']:.3f}, "
          f"PGD success {row['pgd_success']:.3f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "rerun_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 5. Re-train with m = 7
#
# More replays refine the perturbation more on each minibatch, but with the epochs divided by
# $m$ the model sees each minibatch in fewer epochs.

# %% nbgrader={"grade": false, "grade_id": "rerun", "locked": true, "schema_version": 3, "solution": false, "task": false}
name = f"free m={m_rerun}"
PASSES[name] = passes("free", m_rerun)
MODELS[name], SECONDS[name] = train("free", m=m_rerun)
RESULTS[name] = measure(name)
print(f"{name:>12}: trained in {SECONDS[name]:.1f} s, benign accuracy "
      f"{RESULTS[name]['benign_accuracy']:.3f}, PGD success {RESULTS[name]['pgd_success']:.3f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "report_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 6. Table and figure for the write-up

# %% nbgrader={"grade": false, "grade_id": "report", "locked": true, "schema_version": 3, "solution": false, "task": false}
header = (f"{'model':>12} | {'passes':>6} | {'train time (s)':>14} | {'benign accuracy':>15} | "
          f"{'PGD success':>11}")
print(header)
print("-" * len(header))
for name, row in RESULTS.items():
    print(f"{name:>12} | {row['passes']:>6} | {row['train_seconds']:>14.1f} | "
          f"{row['benign_accuracy']:>15.3f} | "
          f"{row['pgd_success']:>11.3f}")

names = list(RESULTS)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, key, label in zip(axes, ("train_seconds", "benign_accuracy", "pgd_success"),
                          ("training time (s)", "benign accuracy", "PGD success rate"),
                          strict=True):
    labels = [f"{n}\n{RESULTS[n]['passes']} pass{'es' if RESULTS[n]['passes'] != 1 else ''}"
              for n in names]
    ax.bar(labels, [RESULTS[n][key] for n in names], color=["0.55", "C0", "C1"][: len(names)])
    ax.set_title(label)
    if key != "train_seconds":
        ax.set_ylim(0, 1)
fig.suptitle(f"Standard vs free adversarial training (eps = {eps * 255:.0f}/255, "
             f"PGD-{pgd_steps})")
fig.tight_layout()
save_figure(fig, "free-adversarial-training", caption=CAPTION)
save_table([{"model": name, **row} for name, row in RESULTS.items()], "free-adversarial-training")
for name, model in MODELS.items():  # the trained weights, as the assignment asks
    save_weights(model, "lab1-" + name.replace(" ", "-").replace("=", ""))
write_results(
    {"eps": eps, "pgd_steps": pgd_steps, "epochs": SIZES["epochs"], "n_train": len(DATA.x_train),
     "n_test": len(DATA.x_test), "models": RESULTS,
     "time_ratio_free_over_standard": SECONDS[f"free m={m}"] / SECONDS["standard"]},
    lab="lab1", profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "explore_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Explore: the perturbation budget
#
# Move the slider: PGD attacks a few test images at each radius $\epsilon$, and the figure
# shows the perturbed images with each model's prediction (green: right, red: wrong) and
# the PGD success rate of each model at that radius on them. (In a batch run the figure is
# drawn once, at the lab's $\epsilon$, and saved as `explore-eps.pdf`.)

# %% nbgrader={"grade": false, "grade_id": "explore", "locked": true, "schema_version": 3, "solution": false, "task": false}
from labsupport.explore import explore

X_SHOW, Y_SHOW = DATA.x_test[:6], DATA.y_test[:6]
X_RATE, Y_RATE = DATA.x_test[:64], DATA.y_test[:64]
_ADVERSARIAL = {}


def adversarial(name, radius, x, y):
    """PGD examples at `radius` against MODELS[name] (cached: the slider revisits values)."""
    key = (name, radius, len(x))
    if key not in _ADVERSARIAL:
        _ADVERSARIAL[key] = x.clone() if radius == 0 else pgd(
            MODELS[name], x, y, eps=radius, steps=pgd_steps, random_start=True, seed=seed)
    return _ADVERSARIAL[key]


def render_eps(eps_255):
    """PGD examples at eps_255 / 255 against each model, with predictions and success rates."""
    radius = eps_255 / 255
    fig, axes = plt.subplots(len(MODELS), len(X_SHOW), figsize=(1.5 * len(X_SHOW), 1.8 * len(MODELS)),
                             squeeze=False)
    for row, name in zip(axes, MODELS, strict=True):
        model = MODELS[name]
        x_adv = adversarial(name, radius, X_SHOW, Y_SHOW)
        with torch.no_grad():
            predictions = model(x_adv.to(DEVICE)).argmax(1).cpu()
        rate = success_rate(model, adversarial(name, radius, X_RATE, Y_RATE), Y_RATE)
        for ax, image, label, guess in zip(row, x_adv, Y_SHOW, predictions, strict=True):
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_title(DATA.classes[int(guess)], fontsize=8,
                         color="C2" if int(guess) == int(label) else "C3")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{name}\nPGD success {rate:.2f}", fontsize=8)
    fig.suptitle(f"PGD-{pgd_steps} at eps = {eps_255:g}/255 (true classes: "
                 f"{', '.join(DATA.classes[int(c)] for c in Y_SHOW)})", fontsize=9)
    fig.tight_layout()
    return fig


EPS_CHOICES = sorted({0, 2, 4, 8, 16, round(eps * 255)})
figure = explore(render_eps, static={"eps_255": round(eps * 255)}, eps_255=EPS_CHOICES)
if isinstance(figure, plt.Figure):  # a batch run: the static view, saved with the others
    save_figure(figure, "explore-eps", caption=CAPTION)

# %% [markdown] nbgrader={"grade": false, "grade_id": "questions", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 7. Questions for the write-up
#
# Answer in the cell below, using the table and figure above (`free-adversarial-training.pdf`
# and `.csv`, saved beside this notebook; under `labsupport run`, in `build/lab1/`).
#
# 1. **Cost.** How do the training times of standard training and free adversarial training
#    compare, and why? How many forward/backward passes would a 7-step PGD adversarial
#    training (Madry et al.) have cost for the same number of epochs?
# 2. **Effect of adversarial training.** Compare benign accuracy and PGD success of the
#    standard and the free-AT model. What did robustness cost, and why does a standard model
#    fall to perturbations this small?
# 3. **Effect of m.** What changed from $m = 4$ to $m = 7$ (time, benign accuracy,
#    robustness)? What happens for very large $m$ with the epoch budget fixed, and why?
# 4. **Warm start.** Why does carrying the perturbation over from one minibatch to the next
#    help, although the next minibatch holds different images?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answers", "locked": false, "points": 4, "schema_version": 3, "solution": true, "task": false}
# 1. Time is proportional to the forward/backward passes over the data: free AT with
#    ceil(N/m) epochs makes as many as standard training when m divides N, and takes about as
#    long (a few percent more: the gradient with respect to the input, and the update of
#    delta). When m does not divide N (m = 7 at 8 epochs: 14 passes), it costs accordingly
#    more. PGD-7 adversarial training costs 8 passes per minibatch: about 8 times standard
#    training for the same number of epochs.
# 2. Standard training reaches the best benign accuracy but PGD succeeds on almost every test
#    image: the model relies on predictive but non-robust features (faint textures) that an
#    eps-sized perturbation flips. Free AT makes PGD fail on most images, usually at a small
#    cost in benign accuracy: it must rely on robust features (shapes) only.
# 3. With the epoch budget fixed, larger m refines each perturbation more (stronger
#    adversaries during training, so usually more robustness) but sees the data in fewer
#    epochs (ceil(N/m)), which costs benign accuracy once the model no longer fits the data
#    in that many epochs. The time follows the passes. At small budgets the m = 7 result
#    varies from run to run (2 epochs over the data in the `cpu` profile). Very large m
#    over-fits each minibatch and under-trains overall: the paper finds m around 8 best on
#    CIFAR-10.
# 4. The model changes little between consecutive minibatches, and adversarial directions
#    are shared across images (universal-perturbation-like components): the previous
#    minibatch's delta is a far better start than zero, so one ascent step per replay
#    suffices to keep the perturbations strong.
