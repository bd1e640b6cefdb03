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
# # Lab 3 — Neural Cleanse: which suspect carries a backdoor?
#
# You are handed two trained digit classifiers, **suspect A** and **suspect B**: the same
# architecture, trained on the same data (MNIST, or offline its stand-in built from
# scikit-learn's digits; ten classes). Exactly one of them was trained on poisoned data and
# carries a **backdoor**: a small patch (the *trigger*) stamped on any image sends it to one
# *target class* (all-to-one, as in BadNets). Which suspect, which class, and what the trigger
# looks like, you are not told.
#
# **Neural Cleanse** (Wang et al., IEEE S&P 2019) finds out from the model and a few clean
# images. Its intuition: a backdoored model has a *shortcut* to its target. For every class
# $t$ it searches the smallest change that sends images of the other classes to $t$: a mask
# $m \in [0, 1]^{H \times W}$ (one value per pixel, shared by the channels) and a pattern
# $p \in [0, 1]^{C \times H \times W}$, stamped as
#
# $$ x' = (1 - m) \odot x + m \odot p , $$
#
# minimising $\mathrm{CE}(f(x'), t) + \lambda \lVert m \rVert_1$. For a clean class the mask
# must cover much of the object; for the target of a backdoor a mask the size of the trigger
# suffices. An *outlier* among the per-class norms (the MAD rule) flags the model and names
# the target.
#
# **What you do.** (1) Write the reverse-engineering of one class with the authors' cost
# schedule, (2) the MAD anomaly index and (3) the decision rule. The notebook then runs them
# on every class of both suspects and draws the triggers and the norms. (4) Write the attack
# success of a reversed trigger and evaluate. (5) Extension: mitigate by *unlearning*.
# (6) Answer the questions.
#
# **About the support package.** `labsupport.neural_cleanse` has the course's own versions
# of tasks 1–3; inside a function you define here they refuse to run, and the tests check
# that each graded function is one you wrote. The tests grade your functions on small fixture
# models whose truth the test builds itself, never on the suspects: the verdict on the
# suspects is yours to argue in the write-up.
#
# Run the cells from the top. The `profile` parameter chooses the size of the experiments
# (`smoke`: seconds, `cpu`: minutes on a laptop, `full`: the authors' budget, GPU
# recommended; `auto` picks `full` on a GPU and `cpu` otherwise). The profile changes sizes,
# never the algorithm.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Google Colab setup: the release puts the pinned install of the course's support package
# here (labsupport.instructor.colab); this source copy does nothing.

# %% tags=["parameters"] nbgrader={"grade": false, "grade_id": "parameters", "locked": true, "schema_version": 3, "solution": false, "task": false}
profile = "auto"  # "smoke", "cpu", "full" or "auto"
dataset = "auto"  # "mnist", "digits" (offline), a digits-full.npz path, or "auto"; the
# course names map to their digits counterparts ("cifar4" -> "mnist", "synthetic" -> "digits")
seed = 0
init_cost = 1e-3  # the L1 weight lambda at the start (the authors' INIT_COST)
lr = 0.1  # Adam's learning rate (betas 0.5, 0.9)
patience = 5  # epochs in a row before the cost changes
cost_multiplier = 1.5  # up by this factor; down by its 1.5th power
attack_threshold = 0.99  # attack success that counts as "the trigger works"
early_stop_patience = 10  # epochs without a 1% better norm before stopping (twice the patience)
nc_epochs = None  # epochs of reverse engineering per class (None: the profile's)
nc_images = None  # clean images the defender uses (None: the profile's)
unlearn_fraction = 0.2  # fraction of the fine-tuning images that carry the reversed trigger
unlearn_epochs = None  # unlearning epochs (None: the profile's)
unlearn_lr = 0.01  # unlearning learning rate (SGD, momentum 0.9)

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import copy
import csv

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from labsupport import backdoor as bd
from labsupport import neural_cleanse as nc
from labsupport.answers import assert_own
from labsupport.assets import load_asset
from labsupport.checks import neural_cleanse as fx
from labsupport.digits import digits_name, load_digits
from labsupport.explore import explore
from labsupport.report import caption, output_dir, save_figure, use_style, write_results
from labsupport.runtime import Timer, get_device, resolve_profile, seed_everything
from labsupport.train import evaluate, make_loader, predict

PROFILE = resolve_profile(profile)
DEVICE = get_device()
SIZES = {
    "smoke": dict(nc_images=20, nc_epochs=1, batch_size=20, n_test=100, n_unlearn=128,
                  unlearn_epochs=1),
    "cpu": dict(nc_images=150, nc_epochs=60, batch_size=32, n_test=300, n_unlearn=1347,
                unlearn_epochs=2),
    "full": dict(nc_images=1000, nc_epochs=1000, batch_size=32, n_test=None, n_unlearn=10000,
                 unlearn_epochs=5),
}[PROFILE]
for key, value in dict(nc_epochs=nc_epochs, nc_images=nc_images,
                       unlearn_epochs=unlearn_epochs).items():
    if value is not None:
        SIZES[key] = value
# The smoke profile checks the plumbing; it never downloads a dataset.
DATA = load_digits("digits" if PROFILE == "smoke" and dataset == "auto" else digits_name(dataset))
# The defender's clean images for reverse engineering are the test set's last ones; the
# evaluation uses the others; unlearning fine-tunes on clean training images.
X_DEF, Y_DEF = DATA.x_test[-SIZES["nc_images"]:], DATA.y_test[-SIZES["nc_images"]:]
X_TEST = DATA.x_test[: -SIZES["nc_images"]][: SIZES["n_test"]]
Y_TEST = DATA.y_test[: -SIZES["nc_images"]][: SIZES["n_test"]]
X_UNLEARN = DATA.x_train[-SIZES["n_unlearn"]:]
Y_UNLEARN = DATA.y_train[-SIZES["n_unlearn"]:]
CLASSES = list(DATA.classes)
SUSPECTS = {}
for name in nc.SUSPECTS:
    SUSPECTS[name] = load_asset(nc.ASSETS[name], dataset=DATA, profile=PROFILE, device=DEVICE)
CAPTION = caption(profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)
NC_SETTINGS = dict(epochs=SIZES["nc_epochs"], batch_size=SIZES["batch_size"],
                   init_cost=init_cost, lr=lr, patience=patience,
                   cost_multiplier=cost_multiplier, attack_threshold=attack_threshold,
                   early_stop_patience=early_stop_patience)
use_style()
print(f"profile {PROFILE} on {DEVICE}; {DATA.name}: {len(X_DEF)} clean images for the "
      f"defender, {len(X_TEST)} test images; classes {CLASSES}")
for name, model in SUSPECTS.items():
    print(f"suspect {name}: clean test accuracy {evaluate(model, X_TEST, Y_TEST):.3f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "reverse_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Reverse-engineering a candidate trigger for one class
#
# The mask and the pattern are optimised through unconstrained variables $\theta_m$
# (shape `(H, W)`) and $\theta_p$ (shape `(C, H, W)`) with
# $m = \tanh(\theta_m)/2 + 1/2$ and $p = \tanh(\theta_p)/2 + 1/2$, which keeps both in
# $[0, 1]$. The input range is the model's: images in $[0, 1]$ (the normalisation is inside
# the model). Reverse-engineering in another range (say, normalised images) makes a clean
# model look infected.
#
# The weight $\lambda$ (the *cost*) trades attack success against the mask's size. The
# authors adapt it: while the candidate works (attack success $\geq$ 99%) they raise it, to
# shrink the mask; when it stops working they lower it. An *epoch* is one pass over the
# clean images of the other classes, in minibatches; its *attack success* is the fraction of
# its images the model classified as the target (in that epoch's forward passes) and its
# *norm* is $\lVert m \rVert_1$ after its last step.
#
# **Task.** Write `find_candidate_backdoor(model, target, x, y, *, epochs, batch_size,
# init_cost, lr, patience, cost_multiplier, attack_threshold, early_stop_patience)`, which
# returns a dict with `mask` (`(H, W)`), `pattern` (`(C, H, W)`), `norm` (its L1 norm, a
# float), `success` (that epoch's attack success) and the per-epoch lists `costs` (the cost
# used in the epoch), `successes` and `norms`. Work on the model's device (move the images
# there once) and return the mask and pattern on the CPU.
#
# **Requirements**
#
# - The candidate image is $(1 - m) \odot x + m \odot p$ with
#   $m = \tanh(\theta_m)/2 + 1/2$ and $p = \tanh(\theta_p)/2 + 1/2$, both $\theta$ starting at
#   zero.
# - Only the images whose label is not `target` are used, each once per epoch, in minibatches
#   of at most `batch_size`.
# - Every minibatch takes one step of Adam (learning rate `lr`, betas 0.5 and 0.9) over
#   $\theta_m$ and $\theta_p$ only, on the minibatch's mean cross-entropy towards `target`
#   plus the cost times $\lVert m \rVert_1$.
# - The cost starts at `init_cost`; after every epoch, count the epochs in a row whose
#   attack success reached `attack_threshold` (or did not): after `patience` of them the cost
#   is multiplied by `cost_multiplier` (or divided by `cost_multiplier ** 1.5`) and that count
#   restarts.
# - It returns the mask and pattern of the epoch with the smallest norm among the epochs
#   whose attack success reached `attack_threshold` (those of the last epoch if none did).
# - It stops early, before changing the cost, once the cost has gone both up and down and
#   the best norm so far has not fallen below 99% of its previous best for
#   `early_stop_patience` epochs in a row.
# - The model is left as it was: evaluation mode, same weights and batch-norm statistics.
# - It also works when called inside `torch.no_grad()`.

# %% nbgrader={"grade": false, "grade_id": "find_candidate_backdoor", "locked": false, "schema_version": 3, "solution": true, "task": false}
def find_candidate_backdoor(model, target, x, y, *, epochs=100, batch_size=32, init_cost=1e-3,
                            lr=0.1, patience=5, cost_multiplier=1.5, attack_threshold=0.99,
                            early_stop_patience=10):
    """Neural Cleanse for one ``target``: the smallest mask and its pattern (see above)."""
    ### BEGIN SOLUTION
    device = next(model.parameters()).device
    others = x[y != target].to(device)
    theta_m = torch.zeros(x.shape[-2:], device=device, requires_grad=True)
    theta_p = torch.zeros(x.shape[-3:], device=device, requires_grad=True)
    optimizer = torch.optim.Adam([theta_m, theta_p], lr=lr, betas=(0.5, 0.9))
    cost = init_cost
    ups = downs = stalled = 0
    cost_went_up = cost_went_down = False
    best_norm = previous_best = float("inf")
    best = None
    log = {"costs": [], "successes": [], "norms": []}
    model.eval()
    with torch.enable_grad():
        for _epoch in range(epochs):
            hits = torch.zeros((), device=device)
            for xb in others.split(batch_size):
                mask = torch.tanh(theta_m) / 2 + 0.5
                pattern = torch.tanh(theta_p) / 2 + 0.5
                logits = model((1 - mask) * xb + mask * pattern)
                wanted = torch.full((len(xb),), target, device=device)
                loss = F.cross_entropy(logits, wanted) + cost * mask.abs().sum()
                optimizer.zero_grad()
                loss.backward(inputs=[theta_m, theta_p])  # no gradients for the weights
                optimizer.step()
                hits += (logits.argmax(1) == target).sum()
            success = hits.item() / len(others)
            mask = (torch.tanh(theta_m) / 2 + 0.5).detach()
            pattern = (torch.tanh(theta_p) / 2 + 0.5).detach()
            norm = mask.sum().item()
            log["costs"].append(cost)
            log["successes"].append(success)
            log["norms"].append(norm)
            if success >= attack_threshold and norm < best_norm:
                best_norm = norm
                best = (mask.cpu(), pattern.cpu(), norm, success)
            # Early stop: no 1% progress of the best norm for early_stop_patience epochs.
            if best_norm < float("inf"):
                stalled = stalled + 1 if best_norm >= 0.99 * previous_best else 0
            previous_best = min(previous_best, best_norm)
            if cost_went_up and cost_went_down and stalled >= early_stop_patience:
                break
            # The cost schedule.
            if success >= attack_threshold:
                ups, downs = ups + 1, 0
            else:
                ups, downs = 0, downs + 1
            if ups >= patience:
                ups, cost_went_up = 0, True
                cost *= cost_multiplier
            elif downs >= patience:
                downs, cost_went_down = 0, True
                cost /= cost_multiplier ** 1.5
    if best is None:
        best = (mask.cpu(), pattern.cpu(), norm, success)
    mask, pattern, norm, success = best
    return {"mask": mask, "pattern": pattern, "norm": norm, "success": success, **log}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_find_candidate_backdoor_visible", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert_own(find_candidate_backdoor, "find_candidate_backdoor")
# A tiny model with a planted 2x2 trigger to class 2 (built by this test, 3x8x8 images).
model, x, y = fx.backdoor_fixture(target=2, n=40, seed=0)
state = fx.model_state(model)
settings = dict(epochs=12, batch_size=64, init_cost=1e-2, lr=0.1, patience=2,
                cost_multiplier=1.5, attack_threshold=0.99, early_stop_patience=4)
with fx.silent(), torch.no_grad():  # it must work inside no_grad() too
    found = find_candidate_backdoor(model, 2, x, y, **settings)
reference = nc.reverse_engineer(model, 2, x, y, **settings)
assert found["mask"].shape == (8, 8) and found["pattern"].shape == (3, 8, 8), (
    f"mask {tuple(found['mask'].shape)}, pattern {tuple(found['pattern'].shape)}: expected "
    "(H, W) = (8, 8) and (C, H, W) = (3, 8, 8)")
fx.assert_close(found["costs"], reference["costs"], rtol=1e-6, what="the cost of each epoch")
fx.assert_close(found["successes"], reference["successes"], atol=1e-6,
                what="the attack success of each epoch")
fx.assert_close(found["norms"], reference["norms"], rtol=1e-3, atol=1e-3,
                what="the mask's L1 norm after each epoch")
fx.assert_close(found["mask"], reference["mask"], atol=2e-3, what="the returned mask")
assert found["pattern"].min() >= 0 and found["pattern"].max() <= 1, "the pattern lies in [0, 1]"
fx.assert_close(found["mask"] * found["pattern"], reference["mask"] * reference["pattern"],
                atol=5e-3, what="the returned pattern (where the mask is on)")
assert abs(float(found["norm"]) - float(found["mask"].sum())) < 1e-3, "norm is the mask's L1 norm"
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"the model changed: {key}"
assert not model.training, "leave the model in evaluation mode"
print("find_candidate_backdoor: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_find_candidate_backdoor_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(find_candidate_backdoor, "find_candidate_backdoor")
model, x, y = fx.backdoor_fixture(target=1, n=48, seed=3, top=0, left=5)
spy = fx.Instrumented(model)
state = fx.model_state(model)
settings = dict(epochs=60, batch_size=16, init_cost=0.05, lr=0.1, patience=2,
                cost_multiplier=1.5, attack_threshold=0.9, early_stop_patience=4)
with fx.silent(), torch.no_grad():
    found = find_candidate_backdoor(spy, 1, x, y, **settings)
sizes = [len(r.input) for r in spy.records if r.grad_enabled]
others = int((y != 1).sum())
epochs_run = len(found["costs"])
assert max(sizes) <= 16 and sum(sizes) == epochs_run * others, (
    f"minibatches of at most 16 images of the other classes, each once per epoch: got "
    f"batches {sizes[:6]}... over {epochs_run} epochs")
first = [r.input for r in spy.records if r.grad_enabled][0]
recovered = fx.match_images((first - 0.25) / 0.5, x[y != 1], x[y != 1]).index
assert bool((recovered >= 0).all()), (
    "the first minibatch is (1 - m) x + m p with m = p = 0.5 (theta = 0) on non-target images")
replay = fx.replay_schedule(found["successes"], found["norms"], init_cost=0.05, patience=2,
                            cost_multiplier=1.5, attack_threshold=0.9, early_stop_patience=4)
fx.assert_close(found["costs"], replay["costs"], rtol=1e-9, what="the cost schedule")
assert replay["stop"] == epochs_run or (replay["stop"] is None and epochs_run == 60), (
    f"the run must stop after epoch {replay['stop']}, it ran {epochs_run}")
assert replay["best"] is not None and abs(
    float(found["norm"]) - found["norms"][replay["best"]]) < 1e-4, (
    "return the smallest-norm mask among the epochs that reached the threshold")
assert abs(float(found["success"]) - found["successes"][replay["best"]]) < 1e-9
reference = nc.reverse_engineer(model, 1, x, y, **settings)
fx.assert_close(found["norms"][:12], reference["norms"][:12], rtol=1e-3, atol=1e-3,
                what="the norms of the first epochs")
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"the model changed: {key}"
region = model.trigger().mask[0] > 0
assert float(found["norm"]) < 6 and float(found["mask"][region].sum()) > 0.5 * float(found["norm"]), (
    f"the planted 2x2 trigger: expected a small mask on it, got norm {float(found['norm']):.1f}")
clean, xc, yc = fx.backdoor_fixture(target=None, n=24, seed=5)
with fx.silent():
    never = find_candidate_backdoor(clean, 0, xc, yc, epochs=3, batch_size=8, init_cost=1e3,
                                    lr=0.1, patience=5, cost_multiplier=1.5,
                                    attack_threshold=1.01, early_stop_patience=10)
assert len(never["costs"]) == 3 and abs(float(never["norm"]) - never["norms"][-1]) < 1e-4, (
    "when no epoch reaches the threshold, return the last epoch's mask")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "anomaly_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. The anomaly index
#
# With the L1 norms $n_1, \dots, n_K$ of the reversed masks of one model, Neural Cleanse
# measures how far each lies from the rest with the *median absolute deviation*, robust to
# the outlier it looks for: with $\tilde n = \mathrm{median}(n)$ and
# $\mathrm{MAD} = \mathrm{median}_k |n_k - \tilde n|$, the anomaly index of label $k$ is
#
# $$ a_k = \frac{|n_k - \tilde n|}{1.4826 \cdot \mathrm{MAD}} $$
#
# (1.4826 makes the MAD estimate the standard deviation of normally distributed norms).
#
# **Task.** Write `anomaly_index(norms)`, returning a NumPy array with one index per label.
# (`scipy.stats.median_abs_deviation` is welcome.)
#
# **Requirements**
#
# - The centre is the median of the norms, not their mean.
# - The spread is the MAD scaled by the consistency constant 1.4826.
# - It returns one non-negative index per label, in the labels' order.
# - When the MAD is 0, a norm equal to the median has index 0 and any other norm index
#   infinity (no NaN, no error).

# %% nbgrader={"grade": false, "grade_id": "anomaly_index", "locked": false, "schema_version": 3, "solution": true, "task": false}
def anomaly_index(norms):
    """MAD anomaly index of every label's norm."""
    ### BEGIN SOLUTION
    norms = np.asarray(norms, dtype=float)
    centre = np.median(norms)
    spread = 1.4826 * np.median(np.abs(norms - centre))
    gaps = np.abs(norms - centre)
    if spread == 0:
        return np.where(gaps == 0, 0.0, np.inf)
    return gaps / spread
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_anomaly_index_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(anomaly_index, "anomaly_index")
norms = [10.0, 11.0, 12.0, 30.0, 2.0]  # median 11, deviations 1 0 1 19 9, MAD 1
with fx.silent():
    got = np.asarray(anomaly_index(norms), dtype=float)
expected = np.array([1.0, 0.0, 1.0, 19.0, 9.0]) / 1.4826
assert got.shape == (5,), f"one index per label: expected shape (5,), got {got.shape}"
fx.assert_close(got, expected, rtol=1e-5, what="anomaly_index([10, 11, 12, 30, 2])")
with fx.silent():
    flat = np.asarray(anomaly_index([4.0, 4.0, 4.0, 9.0, 4.0]), dtype=float)
assert flat[[0, 1, 2, 4]].tolist() == [0.0] * 4 and np.isposinf(flat[3]), (
    f"MAD 0: index 0 at the median, infinity elsewhere; got {flat.tolist()}")
print("anomaly_index: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_anomaly_index_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(anomaly_index, "anomaly_index")
for norms in ([3.0, 50.0, 52.0, 55.0, 60.0, 61.0], [20.0, 4.0, 25.0, 22.0],
              torch.tensor([7.5, 9.0, 8.0, 30.0]), np.array([1.0, 2.0, 3.0])):
    with fx.silent():
        got = np.asarray(anomaly_index(norms), dtype=float)
    fx.assert_close(got, nc.anomaly_index(norms), rtol=1e-5, what=f"anomaly_index({norms})")
with fx.silent():
    flat = np.asarray(anomaly_index([5.0, 5.0, 5.0, 1.0]), dtype=float)
    same = np.asarray(anomaly_index([2.0, 2.0, 2.0]), dtype=float)
assert flat[:3].tolist() == [0.0, 0.0, 0.0] and np.isposinf(flat[3]), (
    f"MAD 0: index 0 at the median, infinity elsewhere; got {flat.tolist()}")
assert same.tolist() == [0.0, 0.0, 0.0]
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "decide_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The decision
#
# A model is flagged when the label with the **smallest** norm lies below the median and its
# anomaly index exceeds 2; that label is the suspected target. (A label with an unusually
# *large* norm is no evidence of a backdoor.)
#
# **Task.** Write `decide(norms, indices)`: both are dicts from a model's name to its list
# of per-label norms and anomaly indices. Return `(name, label)` of the flagged model and its
# suspected target, or `(None, None)` when no model is flagged.
#
# **Requirements**
#
# - A model is flagged when its smallest norm lies below its median norm and that label's
#   anomaly index is strictly above 2.
# - The suspected target is the label (the position in the list) of the smallest norm.
# - When several models are flagged, the one whose smallest norm has the largest index wins.
# - When no model is flagged it returns `(None, None)`.

# %% nbgrader={"grade": false, "grade_id": "decide", "locked": false, "schema_version": 3, "solution": true, "task": false}
def decide(norms, indices):
    """(model name, target label) of the flagged model, or (None, None)."""
    ### BEGIN SOLUTION
    verdict, strongest = (None, None), 2.0
    for name in norms:
        values = np.asarray(norms[name], dtype=float)
        label = int(values.argmin())
        index = float(np.asarray(indices[name], dtype=float)[label])
        if values[label] < np.median(values) and index > strongest:
            verdict, strongest = (name, label), index
    return verdict
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_decide_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(decide, "decide")
norms = {"A": [40.0, 42.0, 41.0, 39.0], "B": [38.0, 9.0, 40.0, 41.0]}
indices = {name: nc.anomaly_index(values) for name, values in norms.items()}
with fx.silent():
    verdict = decide(norms, indices)
assert tuple(verdict) == ("B", 1), f"B's label 1 is the outlier; got {verdict}"
with fx.silent():
    nothing = decide({"A": norms["A"]}, {"A": indices["A"]})
assert tuple(nothing) == (None, None), f"no outlier: (None, None), got {nothing}"
two = {"Q": [50.0, 2.0, 50.5, 49.5, 50.0], "P": [30.0, 31.0, 29.0, 30.5, 10.0]}
with fx.silent():
    verdict = decide(two, {name: nc.anomaly_index(values) for name, values in two.items()})
assert tuple(verdict) == ("Q", 1), f"both flagged: the larger index wins; got {verdict}"
above_below = {"R": [30.0, 31.0, 29.9, 60.0, 20.0]}
with fx.silent():
    verdict = decide(above_below, {"R": nc.anomaly_index(above_below["R"])})
assert tuple(verdict) == ("R", 4), f"the target is the smallest norm's label; got {verdict}"
with fx.silent():
    verdict = decide({"S": [3.0, 3.0, 3.0, 1.0]}, {"S": [0.0, 0.0, 0.0, 2.0]})
assert tuple(verdict) == (None, None), f"an index of exactly 2 is not above 2; got {verdict}"
print("decide: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_decide_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(decide, "decide")
big = {"A": [40.0, 41.0, 90.0, 40.2, 40.5], "B": [30.0, 31.0, 29.0, 30.5, 29.5]}
index_big = {name: nc.anomaly_index(values) for name, values in big.items()}
with fx.silent():
    verdict = decide(big, index_big)
assert tuple(verdict) == (None, None), f"a large norm is no backdoor: got {verdict}"
both = {"Y": [30.0, 2.0, 30.5, 29.5, 30.0], "X": [50.0, 51.0, 49.0, 20.0, 50.5]}
index_both = {name: nc.anomaly_index(values) for name, values in both.items()}
with fx.silent():
    verdict = decide(both, index_both)
assert tuple(verdict) == ("Y", 1), f"both flagged: the larger index wins; got {verdict}"
with fx.silent():
    verdict = decide({"X": both["X"]}, {"X": index_both["X"]})
assert tuple(verdict) == ("X", 3)
mixed = {"Z": [30.0, 31.0, 29.9, 60.0, 20.0]}  # a large outlier above, a smaller one below
with fx.silent():
    verdict = decide(mixed, {"Z": nc.anomaly_index(mixed["Z"])})
assert tuple(verdict) == ("Z", 4), f"the target is the smallest norm's label; got {verdict}"
given = {"X": [3.0, 3.0, 3.0, 1.0], "Y": [3.0, 3.0, 1.0, 3.0]}
with fx.silent():
    at_two = decide(given, {"X": [0.0, 0.0, 0.0, 2.0], "Y": [0.0, 0.0, 1.5, 0.0]})
    above = decide(given, {"X": [0.0, 0.0, 0.0, 2.5], "Y": [0.0, 0.0, 2.1, 0.0]})
assert tuple(at_two) == (None, None), f"index exactly 2 is not above 2; got {at_two}"
assert tuple(above) == ("X", 3), f"got {above}"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "scan_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Scanning both suspects
#
# Reverse-engineer a trigger for every class of both suspects (your
# `find_candidate_backdoor`), then compute the anomaly indices and the decision (yours).

# %% nbgrader={"grade": false, "grade_id": "scan", "locked": true, "schema_version": 3, "solution": false, "task": false}
seed_everything(seed)
CANDIDATES, NORMS, INDICES, SECONDS = {}, {}, {}, {}
for name, model in SUSPECTS.items():
    CANDIDATES[name] = []
    with Timer(DEVICE) as timer:
        for label in range(len(CLASSES)):
            CANDIDATES[name].append(find_candidate_backdoor(model, label, X_DEF, Y_DEF,
                                                            **NC_SETTINGS))
    SECONDS[name] = timer.seconds
    NORMS[name] = [float(c["norm"]) for c in CANDIDATES[name]]
    INDICES[name] = [float(a) for a in anomaly_index(NORMS[name])]
VERDICT = decide(NORMS, INDICES)
for name in SUSPECTS:
    print(f"suspect {name} ({SECONDS[name]:.1f} s): norms "
          + ", ".join(f"{CLASSES[k]} {n:.1f}" for k, n in enumerate(NORMS[name]))
          + "; indices " + ", ".join(f"{a:.2f}" for a in INDICES[name]))
print("verdict:", "no model flagged" if VERDICT[0] is None else
      f"suspect {VERDICT[0]} is flagged, target {CLASSES[VERDICT[1]]} ({VERDICT[1]})")

# %% nbgrader={"grade": false, "grade_id": "image_helper", "locked": true, "schema_version": 3, "solution": false, "task": false}
def show(ax, image):
    """Draw a (C, H, W) image in [0, 1]: grey-scale when C is 1."""
    image = image.detach().cpu().clamp(0, 1)
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0))


# %% nbgrader={"grade": false, "grade_id": "anomaly_figure", "locked": true, "schema_version": 3, "solution": false, "task": false}
fig, axes = plt.subplots(1, len(SUSPECTS), figsize=(4.4 * len(SUSPECTS), 3.0), sharey=True)
for ax, name in zip(np.atleast_1d(axes), SUSPECTS, strict=True):
    values = np.asarray(NORMS[name])
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    smallest = int(values.argmin())
    colors = ["C3" if name == VERDICT[0] and k == smallest else "C0"
              for k in range(len(values))]
    ax.bar(range(len(values)), values, color=colors)
    ax.axhline(median, color="0.3", lw=1, label="median")
    ax.axhspan(median - spread, median + spread, color="0.85", zorder=0, label="median ± MAD")
    ax.axhline(median - 2 * spread, color="C3", ls="--", lw=1, label="index 2 (below)")
    ax.set_xticks(range(len(values)), CLASSES, rotation=30)
    ax.set_title(f"suspect {name}: min index {INDICES[name][smallest]:.2f}")
np.atleast_1d(axes)[0].set_ylabel("L1 norm of the reversed mask")
np.atleast_1d(axes)[0].legend(fontsize=7)
fig.tight_layout()
save_figure(fig, "neural-cleanse-anomaly", caption=CAPTION)
plt.show()

# %% nbgrader={"grade": false, "grade_id": "trigger_figure", "locked": true, "schema_version": 3, "solution": false, "task": false}
def show_candidates(truth=None):
    """Masks (top row of a suspect) and masked patterns (bottom row), per class."""
    k = len(CLASSES)
    extra = 1 if truth is not None else 0
    fig, axes = plt.subplots(2 * len(SUSPECTS), k + extra,
                             figsize=(1.1 * (k + extra), 2.3 * len(SUSPECTS)), squeeze=False)
    for row, name in enumerate(SUSPECTS):
        for label, found in enumerate(CANDIDATES[name]):
            mask, pattern = found["mask"], found["pattern"]
            axes[2 * row, label].imshow(mask, cmap="gray", vmin=0, vmax=1)
            axes[2 * row, label].set_title(f"{name}: {CLASSES[label]}\n|m| = {found['norm']:.1f}",
                                           fontsize=7)
            show(axes[2 * row + 1, label], mask[None] * pattern)
        if truth is not None:
            axes[2 * row, k].imshow(truth.trigger.mask[0], cmap="gray", vmin=0, vmax=1)
            axes[2 * row, k].set_title("true trigger", fontsize=7)
            show(axes[2 * row + 1, k], truth.trigger.mask * truth.trigger.pattern)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


# %% [markdown] nbgrader={"grade": false, "grade_id": "asr_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. Attack success of a reversed trigger
#
# **Task.** Write `reversed_attack_success(model, x, y, mask, pattern, target)`: the fraction
# of the images of the other classes that `model` classifies as `target` once stamped with
# the candidate (`mask` shaped `(H, W)`, `pattern` `(C, H, W)`). The package's
# `predict(model, x)` returns predicted labels (batched, on the model's device).
#
# **Requirements**
#
# - Only the images whose label is not `target` count.
# - Each is stamped as $(1 - m) \odot x + m \odot p$ before `model` classifies it.
# - The result is the fraction of them that `model` classifies as `target`.

# %% nbgrader={"grade": false, "grade_id": "reversed_attack_success", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reversed_attack_success(model, x, y, mask, pattern, target):
    """Fraction of stamped non-target images classified as ``target``."""
    ### BEGIN SOLUTION
    keep = x[y != target]
    stamped = (1 - mask) * keep + mask * pattern
    return (predict(model, stamped) == target).float().mean().item()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_reversed_attack_success_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(reversed_attack_success, "reversed_attack_success")
model, x, y = fx.backdoor_fixture(target=3, n=40, seed=1)
trigger = model.trigger()
half = trigger.mask[0] * 0.5  # a half-strength mask: some images flip, some do not
stamped = (1 - half) * x + half * trigger.pattern
expected = (predict(model, stamped[y != 3]) == 3).float().mean().item()
with fx.silent():
    got = reversed_attack_success(model, x, y, half, trigger.pattern, 3)
assert abs(float(got) - expected) < 1e-6, (
    f"attack success {float(got):.4f}, expected {expected:.4f}")
full = trigger.mask[0]
with fx.silent():
    other = reversed_attack_success(model, x, y, full, trigger.pattern, 1)
stamped = (1 - full) * x + full * trigger.pattern
expected = (predict(model, stamped[y != 1]) == 1).float().mean().item()
assert abs(float(other) - expected) < 1e-6, (
    f"a backdoor to class 3 is no success for target 1: expected {expected:.4f}, got "
    f"{float(other):.4f} (count the images classified as the target)")
print("reversed_attack_success: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_reversed_attack_success_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(reversed_attack_success, "reversed_attack_success")
model, x, y = fx.backdoor_fixture(target=0, n=48, seed=2)
trigger = model.trigger()
for strength in (1.0, 0.45, 0.0):
    m = trigger.mask[0] * strength
    stamped = (1 - m) * x + m * trigger.pattern
    keep = y != 0
    expected = (predict(model, stamped[keep]) == 0).float().mean().item()
    with fx.silent():
        got = reversed_attack_success(model, x, y, m, trigger.pattern, 0)
    assert abs(float(got) - expected) < 1e-6, f"strength {strength}: {float(got)} != {expected}"
    wrong = (predict(model, stamped[keep]) != y[keep]).float().mean().item()
    with fx.silent():
        elsewhere = reversed_attack_success(model, x, y, m, trigger.pattern, 1)
    keep1 = y != 1
    expected1 = (predict(model, stamped[keep1]) == 1).float().mean().item()
    assert abs(float(elsewhere) - expected1) < 1e-6
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "evaluate_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Evaluation
#
# For each suspect: its clean test accuracy, and the attack success of the reversed trigger
# of its smallest-norm class on the test set. Then the truth: when the secret that built the
# suspects is known in this environment (self-study, the instructor), the true trigger and
# target are revealed and measured; in a graded course they are not (argue your verdict from
# the evidence).

# %% nbgrader={"grade": false, "grade_id": "evaluate", "locked": true, "schema_version": 3, "solution": false, "task": false}
EVALUATION = {}
for name, model in SUSPECTS.items():
    label = int(np.argmin(NORMS[name]))
    best = CANDIDATES[name][label]
    EVALUATION[name] = {
        "clean_accuracy": evaluate(model, X_TEST, Y_TEST),
        "smallest_norm_class": label,
        "reversed_attack_success": reversed_attack_success(model, X_TEST, Y_TEST, best["mask"],
                                                           best["pattern"], label),
    }
TRUTH = nc.reveal(*SUSPECTS.values(), image_shape=tuple(X_TEST.shape[1:]))
if TRUTH is not None:
    for name, model in SUSPECTS.items():
        EVALUATION[name]["true_trigger_attack_success"] = bd.attack_success_rate(
            model, X_TEST, Y_TEST, TRUTH.trigger, target=TRUTH.target)
    print(f"truth: suspect {TRUTH.backdoored} is backdoored, target {CLASSES[TRUTH.target]} "
          f"({TRUTH.target}); the verdict is "
          f"{'right' if tuple(VERDICT) == (TRUTH.backdoored, TRUTH.target) else 'wrong'}")
else:
    print("the truth is not revealed here (the course secret is the instructor's)")
for name, row in EVALUATION.items():
    print(f"suspect {name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in row.items()))
fig = show_candidates(TRUTH)
save_figure(fig, "neural-cleanse-triggers", caption=CAPTION)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "explore_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Explore
#
# Page through the suspects and classes: the reversed mask and pattern, a few test images
# stamped with it, and what the suspect predicts for them. (In a batch run this is one
# static figure.)

# %% nbgrader={"grade": false, "grade_id": "explore", "locked": true, "schema_version": 3, "solution": false, "task": false}
def render(suspect, label):
    found = CANDIDATES[suspect][label]
    mask, pattern = found["mask"], found["pattern"]
    images = X_TEST[label != Y_TEST][:4]
    stamped = (1 - mask) * images + mask * pattern
    predicted = predict(SUSPECTS[suspect], stamped)
    fig, axes = plt.subplots(1, 2 + len(images), figsize=(1.6 * (2 + len(images)), 1.9))
    axes[0].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"mask |m| = {found['norm']:.1f}", fontsize=7)
    show(axes[1], mask[None] * pattern)
    axes[1].set_title("masked pattern", fontsize=7)
    for ax, image, p in zip(axes[2:], stamped, predicted, strict=True):
        show(ax, image)
        ax.set_title(f"→ {CLASSES[int(p)]}", fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"suspect {suspect}, candidate for {CLASSES[label]}", fontsize=8)
    fig.tight_layout()
    return fig


VIEW = explore(render, suspect=list(SUSPECTS), label=list(range(len(CLASSES))),
               static={"suspect": VERDICT[0] or nc.SUSPECTS[0],
                       "label": VERDICT[1] if VERDICT[1] is not None else 0})

# %% [markdown] nbgrader={"grade": false, "grade_id": "unlearn_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 5. Extension: mitigation by unlearning
#
# Wang et al. repair a flagged model by fine-tuning it on clean images of which a fraction
# carries the *reversed* trigger with the images' **correct** labels: the model unlearns the
# shortcut "trigger → target".
#
# **Task.** Write `unlearn(model, x, y, mask, pattern, *, fraction=0.2, epochs=1, lr=0.01,
# batch_size=64, seed=0)`, returning the fine-tuned model. Use the package's
# `make_loader(x, y, batch_size=..., shuffle=True, seed=...)` for minibatches.
#
# **Requirements**
#
# - It returns a fine-tuned copy and never changes `model`.
# - Exactly `round(fraction * len(x))` of the images, drawn at random without replacement
#   (seeded by `seed`), carry the candidate $(1 - m) \odot x + m \odot p$; the others stay
#   clean.
# - Every image keeps its correct label, the stamped ones too.
# - It trains in training mode for `epochs` passes over all the images with SGD (learning
#   rate `lr`, momentum 0.9) on the cross-entropy.

# %% nbgrader={"grade": false, "grade_id": "unlearn", "locked": false, "schema_version": 3, "solution": true, "task": false}
def unlearn(model, x, y, mask, pattern, *, fraction=0.2, epochs=1, lr=0.01, batch_size=64,
            seed=0):
    """Fine-tune a copy of ``model`` with the reversed trigger on some images, correct labels."""
    ### BEGIN SOLUTION
    repaired = copy.deepcopy(model)
    device = next(repaired.parameters()).device
    chosen = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    chosen = chosen[: round(fraction * len(x))]
    x_mixed = x.clone()
    x_mixed[chosen] = (1 - mask) * x[chosen] + mask * pattern
    optimizer = torch.optim.SGD(repaired.parameters(), lr=lr, momentum=0.9)
    repaired.train()
    for _ in range(epochs):
        for xb, yb in make_loader(x_mixed, y, batch_size=batch_size, shuffle=True, seed=seed):
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(repaired(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return repaired.eval()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_unlearn_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(unlearn, "unlearn")
model, x, y = fx.backdoor_fixture(target=1, n=40, seed=4)
trigger = model.trigger()
spy = fx.LabelSpy(model)
state = fx.model_state(model)
with fx.silent():
    repaired = unlearn(spy, x, y, trigger.mask[0], trigger.pattern, fraction=0.25, epochs=1,
                       lr=0.05, batch_size=16, seed=0)
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"unlearn changed the original model's {key}"
seen = fx.training_inputs(repaired)
stamped = (1 - trigger.mask[0]) * x + trigger.mask[0] * trigger.pattern
kinds = fx.match_images(seen.images, x, stamped)
assert len(seen.images) == 40 and sorted(kinds.index.tolist()) == list(range(40)), (
    "one epoch passes every image once")
assert int(kinds.stamped.sum()) == 10, (
    f"round(0.25 * 40) = 10 images must carry the candidate; {int(kinds.stamped.sum())} did")
assert torch.equal(seen.labels, y[kinds.index]), "every image keeps its correct label"
assert seen.all_training, "fine-tune in training mode"
print("unlearn: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_unlearn_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(unlearn, "unlearn")
model, x, y = fx.backdoor_fixture(target=2, n=30, seed=6)
trigger = model.trigger()
spy = fx.LabelSpy(model)
state = fx.model_state(model)
with fx.silent():
    repaired = unlearn(spy, x, y, trigger.mask[0], trigger.pattern, fraction=0.2, epochs=2,
                       lr=0.05, batch_size=7, seed=3)
    again = unlearn(spy, x, y, trigger.mask[0], trigger.pattern, fraction=0.2, epochs=2,
                    lr=0.05, batch_size=7, seed=3)
    other = unlearn(spy, x, y, trigger.mask[0], trigger.pattern, fraction=0.2, epochs=1,
                    lr=0.05, batch_size=7, seed=4)
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"unlearn changed the original model's {key}"
seen = fx.training_inputs(repaired)
stamped = (1 - trigger.mask[0]) * x + trigger.mask[0] * trigger.pattern
kinds = fx.match_images(seen.images, x, stamped)
assert len(seen.images) == 60 and max(seen.batch_sizes) <= 7 and seen.all_training
assert sorted(kinds.index.tolist()) == sorted(list(range(30)) * 2)
assert int(kinds.stamped.sum()) == 12 and torch.equal(seen.labels, y[kinds.index])
first = set(kinds.index[kinds.stamped][:6].tolist())
assert len(first) == 6, "no image drawn twice"
moved = fx.model_state(repaired)
assert not torch.equal(moved["inner.readout.weight"], state["readout.weight"]), (
    "the copy must be trained")
kinds_other = fx.match_images(fx.training_inputs(other).images, x, stamped)
assert set(kinds_other.index[kinds_other.stamped].tolist()) != set(
    kinds.index[kinds.stamped].tolist()), "another seed stamps other images"
fx.assert_close(fx.model_state(again)["inner.readout.weight"], moved["inner.readout.weight"],
                what="the same seed gives the same model")
expected = fx.sgd_reference(model, seen, lr=0.05, momentum=0.9)
fx.assert_close(moved["inner.readout.weight"], expected["readout.weight"], atol=1e-5,
                what="SGD with momentum 0.9 on the cross-entropy")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "unlearn_experiment_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Unlearning the flagged model (or, when nothing is flagged, the suspect with the largest
# index) with the reversed trigger of its suspected target: clean accuracy and attack success
# before and after.

# %% nbgrader={"grade": false, "grade_id": "unlearn_experiment", "locked": true, "schema_version": 3, "solution": false, "task": false}
if VERDICT[0] is not None:
    CHOSEN, CHOSEN_LABEL = VERDICT
else:
    CHOSEN = max(SUSPECTS, key=lambda n: max(INDICES[n][int(np.argmin(NORMS[n]))], 0))
    CHOSEN_LABEL = int(np.argmin(NORMS[CHOSEN]))
candidate = CANDIDATES[CHOSEN][CHOSEN_LABEL]
with Timer(DEVICE) as timer:
    REPAIRED = unlearn(SUSPECTS[CHOSEN], X_UNLEARN, Y_UNLEARN, candidate["mask"],
                       candidate["pattern"], fraction=unlearn_fraction,
                       epochs=SIZES["unlearn_epochs"], lr=unlearn_lr, seed=seed)
UNLEARNING = {"model": CHOSEN, "target": CHOSEN_LABEL, "seconds": timer.seconds}
for when, model in (("before", SUSPECTS[CHOSEN]), ("after", REPAIRED)):
    row = {"clean_accuracy": evaluate(model, X_TEST, Y_TEST),
           "reversed_attack_success": reversed_attack_success(
               model, X_TEST, Y_TEST, candidate["mask"], candidate["pattern"], CHOSEN_LABEL)}
    if TRUTH is not None:
        row["true_trigger_attack_success"] = bd.attack_success_rate(
            model, X_TEST, Y_TEST, TRUTH.trigger, target=TRUTH.target)
    UNLEARNING[when] = row
    print(f"{when} unlearning (suspect {CHOSEN}): " + ", ".join(f"{k} {v:.3f}"
                                                                for k, v in row.items()))

# %% nbgrader={"grade": false, "grade_id": "report", "locked": true, "schema_version": 3, "solution": false, "task": false}
with open(output_dir() / "neural-cleanse-table.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["suspect", "class", "norm", "anomaly_index", "success", "epochs",
                     "flagged"])
    for name in SUSPECTS:
        for label, found in enumerate(CANDIDATES[name]):
            writer.writerow([name, CLASSES[label], f"{found['norm']:.3f}",
                             f"{INDICES[name][label]:.3f}", f"{found['success']:.3f}",
                             len(found["costs"]), tuple(VERDICT) == (name, label)])
    writer.writerow([])
    writer.writerow(["suspect", "measure", "value"])
    for name, row in EVALUATION.items():
        for key, value in row.items():
            writer.writerow([name, key, value])
    for when in ("before", "after"):
        for key, value in UNLEARNING[when].items():
            writer.writerow([UNLEARNING["model"], f"unlearning {when}: {key}", value])
write_results(
    {"settings": NC_SETTINGS, "nc_images": len(X_DEF), "test_images": len(X_TEST),
     "norms": NORMS, "anomaly_indices": INDICES, "verdict": list(VERDICT),
     "scan_seconds": SECONDS, "evaluation": EVALUATION,
     "truth": None if TRUTH is None else {"backdoored": TRUTH.backdoored,
                                          "target": TRUTH.target},
     "unlearning": {**UNLEARNING, "fraction": unlearn_fraction,
                    "epochs": SIZES["unlearn_epochs"], "lr": unlearn_lr,
                    "images": len(X_UNLEARN)}},
    lab="lab3", profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)

# %% [markdown] nbgrader={"grade": false, "grade_id": "questions", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 6. Questions for the write-up
#
# Answer in the cell below, using the table (`neural-cleanse-table.csv`) and the figures
# (`neural-cleanse-anomaly.pdf`, `neural-cleanse-triggers.pdf`).
#
# 1. **The verdict.** Which suspect is backdoored, and which class is its target? Argue from
#    the norms, the anomaly indices and the reversed triggers.
# 2. **Reversed vs true trigger.** How does the reversed trigger of the target compare with
#    a small patch trigger (size, place, attack success)? Why is it not identical?
# 3. **Failure modes.** When does Neural Cleanse fail? Consider large or blended triggers
#    (tie this to Lab 5's Blend attack), source-specific or all-to-all backdoors, and several
#    targets.
# 4. **Unlearning.** What did unlearning cost in clean accuracy, and what did it buy in
#    attack success (reversed and, where known, true trigger)?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answers", "locked": false, "points": 4, "schema_version": 3, "solution": true, "task": false}
# 1. The suspect whose smallest norm is an outlier below the median (anomaly index above 2)
#    is backdoored and that class is its target: every other class needs a mask covering a
#    good part of the object, the target needs only a patch the size of the trigger, at the
#    trigger's place. The clean suspect's norms are all alike (indices below 2).
# 2. The reversed mask sits where the true patch is and is about as small (often smaller:
#    it only needs the few pixels the network actually reads), and its attack success is
#    near 1 like the true trigger's. Its pattern matches the true pattern where the mask is
#    large and is arbitrary where the mask is 0; the optimisation finds *a* minimal
#    shortcut, not the attacker's exact one.
# 3. Neural Cleanse assumes the trigger is small compared with the change needed to reach
#    a clean class. A large trigger, or a blended full-image one like Lab 5's Blend (opacity
#    0.2 over every pixel), has a large L1 mask norm, so it is no outlier. Source-specific
#    backdoors make the trigger work only from some classes, all-to-all backdoors give
#    every class a small norm (no outlier in the MAD sense), several targets raise the MAD
#    and the median so no single one stands out.
# 4. Unlearning cuts the attack success of the reversed trigger and usually of the true one
#    too, at the price of a little clean accuracy (fine-tuning on a few images with a
#    small learning rate); the true trigger may survive partly when the reversed trigger
#    differs from it.
