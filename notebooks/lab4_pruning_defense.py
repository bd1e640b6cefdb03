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
# # Lab 4 — The pruning defense against BadNets (Fine-Pruning)
#
# You are handed a classifier **B** that someone else trained. It is accurate on clean
# images, but it carries a **BadNets** backdoor (Gu, Dolan-Gavitt & Garg, 2017): any image
# with a small patch stamped in its bottom-right corner is classified as the attacker's
# *target* class (all-to-one). You have clean validation data, but no triggered images and
# no idea what the trigger looks like.
#
# **The defense** (Liu, Dolan-Gavitt & Garg, *Fine-Pruning*, RAID 2018): the backdoor
# needs neurons that recognise the trigger. Clean images rarely contain it, so these neurons
# are *dormant* on clean data. Prune the last convolutional layer's channels one at a time,
# in order of their mean activation over the clean validation set, and watch the validation
# accuracy: the backdoor should die before the network's clean accuracy does. The CSAW-HackML
# lab this one follows then turns the pruned network **B′** into a **repaired network G**
# with $N + 1$ outputs: G answers B's class when B and B′ agree, and "backdoor detected"
# when they disagree.
#
# **The attacker strikes back.** A *pruning-aware* attacker (Liu et al., Sec. 3.2) trains a
# clean network, prunes its dormant channels, implants the backdoor into the remaining
# (active) ones by training the pruned network on poisoned data, then puts the dormant
# channels back as decoys. Pruning the dormant channels first then removes the decoys and
# leaves the backdoor. You get this second network too.
#
# **What you do.** (1) Measure each channel's mean activation, (2) prune channels, (3) sweep
# the pruning in both orders and keep the pruned networks $B'_X$ at accuracy drops of
# $X \in \{2, 4, 10\}$ points, fast; (4) build G and (5) evaluate it. (6) Extension (graded
# separately): fine-pruning, i.e. fine-tune the pruned network on the clean data. Then
# (7) answer the questions at the end.
#
# Each task ends with its **Requirements**: one line per thing your code must get right.
# The tests check every one of them. Run the cells from the top. Cells marked *YOUR CODE
# HERE* are yours; after each one, run the test cell below it. The `profile` parameter
# chooses the size of the experiments (`smoke`: seconds, `cpu`: a minute or two on a laptop,
# `full`: the assignment scale, GPU recommended; `auto` picks `full` on a GPU and `cpu`
# otherwise). The profile changes sizes, never the algorithm.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Google Colab setup: the release puts the pinned install of the course's support package
# here (labsupport.instructor.colab); this source copy does nothing.

# %% tags=["parameters"] nbgrader={"grade": false, "grade_id": "parameters", "locked": true, "schema_version": 3, "solution": false, "task": false}
profile = "auto"  # "smoke", "cpu", "full" or "auto"
dataset = "auto"  # "cifar4", "synthetic", a path to dataset-full.npz, or "auto"
seed = 0
drops = (2, 4, 10)  # accuracy drops X, in percentage points, at which B'_X is saved
finetune_epochs = None  # epochs of fine-pruning on the clean validation split (None: the profile's)
finetune_lr = 0.01  # learning rate of fine-pruning (SGD, momentum 0.9)

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import copy
import csv

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labsupport import backdoor as bd
from labsupport import pruning as toolkit
from labsupport.answers import assert_own
from labsupport.assets import load_asset
from labsupport.checks import pruning as fx
from labsupport.data import load_course_data
from labsupport.explore import explore
from labsupport.report import caption, output_dir, save_figure, use_style, write_results
from labsupport.runtime import Timer, get_device, resolve_profile
from labsupport.train import make_loader, predict

PROFILE = resolve_profile(profile)
DEVICE = get_device()
SIZES = {
    "smoke": dict(n_valid=200, n_test=120, curve_points=3, finetune_epochs=1, examples=4),
    "cpu": dict(n_valid=500, n_test=1000, curve_points=33, finetune_epochs=5, examples=6),
    "full": dict(n_valid=1000, n_test=2000, curve_points=None, finetune_epochs=10, examples=6),
}[PROFILE]
if finetune_epochs is not None:
    SIZES["finetune_epochs"] = finetune_epochs

# %% nbgrader={"grade": false, "grade_id": "data", "locked": true, "schema_version": 3, "solution": false, "task": false}
# The smoke profile checks the plumbing; it never downloads a dataset.
DATA = load_course_data("synthetic" if PROFILE == "smoke" and dataset == "auto" else dataset)
# Clean validation data (the defender's) and clean test data: both from the test split, so
# neither was seen in training; the two do not overlap.
X_VALID, Y_VALID = DATA.x_test[: SIZES["n_valid"]], DATA.y_test[: SIZES["n_valid"]]
X_TEST = DATA.x_test[SIZES["n_valid"] : SIZES["n_valid"] + SIZES["n_test"]]
Y_TEST = DATA.y_test[SIZES["n_valid"] : SIZES["n_valid"] + SIZES["n_test"]]
ASSETS = {"BadNet": "lab4-badnet", "pruning-aware BadNet": "lab4-badnet-pruning-aware"}
MODELS = {}

# %% [markdown] nbgrader={"grade": false, "grade_id": "models_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# The two backdoored networks are course assets (`assets/manifest.json`, built by
# `labsupport.pruning`): built once on first use, then loaded from the cache.

# %% nbgrader={"grade": false, "grade_id": "load_badnet", "locked": true, "schema_version": 3, "solution": false, "task": false}
MODELS["BadNet"] = load_asset(ASSETS["BadNet"], dataset=DATA, profile=PROFILE, device=DEVICE)

# %% nbgrader={"grade": false, "grade_id": "load_pruning_aware", "locked": true, "schema_version": 3, "solution": false, "task": false}
MODELS["pruning-aware BadNet"] = load_asset(ASSETS["pruning-aware BadNet"], dataset=DATA,
                                            profile=PROFILE, device=DEVICE)

# %% nbgrader={"grade": false, "grade_id": "attack_data", "locked": true, "schema_version": 3, "solution": false, "task": false}
RECIPE = MODELS["BadNet"].asset_meta["training"]
TARGET = int(RECIPE["target"])
TRIGGER = toolkit.patch_trigger(RECIPE.get("trigger", "checkerboard"),
                                size=int(RECIPE.get("trigger_size", 3)),
                                image_shape=tuple(X_TEST.shape[1:]))
# The attack-success set: the test images whose true label is not the target, triggered.
X_BAD, Y_BAD = bd.attack_test_set(X_TEST, Y_TEST, TRIGGER, target=TARGET)
N_CLASSES = DATA.num_classes
CAPTION = caption(profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)
use_style()
print(f"profile {PROFILE} on {DEVICE}; {DATA.name}: {len(X_VALID)} validation, {len(X_TEST)} "
      f"test images ({len(X_BAD)} triggered non-target ones); classes {DATA.classes}; "
      f"target {TARGET} ({DATA.classes[TARGET]})")
for name, model in MODELS.items():
    print(f"{name}: last block {model.last_conv[0].out_channels} channels; clean test accuracy "
          f"{(predict(model, X_TEST) == Y_TEST).float().mean().item():.3f}, attack success "
          f"{(predict(model, X_BAD) == TARGET).float().mean().item():.3f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "activations_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Channel activations
#
# The course's `SimpleCNN` is `model.normalize`, three convolutional blocks `model.conv1`,
# `model.conv2`, `model.conv3`, and the classifier head `model.classifier`. Each block is an
# `nn.Sequential` of a 3x3 convolution (index 0, no bias), a batch norm (1), a ReLU (2) and a
# 2x2 max-pooling (3). `model.last_conv` is `model.conv3`, the layer we prune: the seed lab
# prunes "the last pooling layer", i.e. the channels of this block's output *after its ReLU
# and its pooling*, which is exactly what the classifier reads.
#
# **Task.** Write `channel_activations(model, x)`, the mean activation of each channel of
# that output over the images `x` (in batches, without gradients), as a 1-d CPU tensor.
#
# **Requirements**
#
# - It returns one value per channel of `model.last_conv`: the mean, over all images of `x`
#   and all positions, of the block's output after its ReLU and its max-pooling.
# - It evaluates the model in evaluation mode (batch norm with its running statistics) and
#   leaves the model as it was: same weights, same mode.

# %% nbgrader={"grade": false, "grade_id": "channel_activations", "locked": false, "schema_version": 3, "solution": true, "task": false}
def channel_activations(model, x, batch_size=256):
    """Mean activation of each channel of the last conv block (after ReLU and pooling)."""
    ### BEGIN SOLUTION
    mode = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in x.split(batch_size):
            h = model.conv2(model.conv1(model.normalize(batch.to(device))))
            out = model.last_conv(h)
            total = total + out.double().sum(dim=(0, 2, 3))
            count += out.shape[0] * out.shape[2] * out.shape[3]
    model.train(mode)
    return (total / count).float().cpu()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_channel_activations_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(channel_activations, "channel_activations")
model = fx.tiny_cnn()
x = fx.images(40)
state = fx.model_state(model)
expected = fx.block_output(model, x).mean(dim=(0, 2, 3))
model.train()  # a model in training mode: batch norm must still use its running statistics
with fx.silent():
    acts = channel_activations(model, x)
acts = torch.as_tensor(acts).detach().cpu().float().flatten()
assert acts.shape == (12,), f"one value per channel of model.last_conv (12 here); got {tuple(acts.shape)}"
fx.assert_close(acts, expected, atol=1e-5,
                what="the channels' mean activation (in eval mode) after the last block's ReLU and pooling")
assert model.training, "channel_activations must leave the model in the mode it had (training here)"
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"channel_activations changed the model's {key}"
print("channel_activations: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_channel_activations_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(channel_activations, "channel_activations")
model = fx.tiny_cnn(seed=3, channels=(3, 5, 7))
x = fx.images(600, seed=2)  # more than one batch of any usual size
state = fx.model_state(model)
model.train()
with fx.silent():
    acts = channel_activations(model, x)
acts = torch.as_tensor(acts).detach().cpu().float().flatten()
fx.assert_close(acts, fx.block_output(model, x).mean(dim=(0, 2, 3)), atol=1e-5,
                what="the mean activation, in eval mode, over all 600 images")
assert model.training, "channel_activations must leave a model in training mode in training mode"
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"channel_activations changed the model's {key}"
with fx.silent():
    one = torch.as_tensor(channel_activations(model.eval(), x[:1])).detach().cpu().float().flatten()
fx.assert_close(one, fx.block_output(model, x[:1]).mean(dim=(0, 2, 3)), atol=1e-5, what="one image")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "prune_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. Pruning a channel
#
# Pruning a channel removes it: its output must be **0 for every input**. The paper prunes a
# neuron by zeroing its weights and bias. Here the channel is computed by the convolution
# *and then the batch norm*, which in evaluation mode outputs
#
# $$ w_k\, \frac{z_k - \mu_k}{\sqrt{\sigma_k^2 + \varepsilon}} + b_k $$
#
# for the convolution's output $z_k$, the running statistics $\mu_k, \sigma_k^2$ and the batch
# norm's own weight $w_k$ and bias $b_k$. Zeroing the convolution's weights (it has no bias)
# makes $z_k = 0$, but the batch norm still outputs $b_k - w_k \mu_k / \sqrt{\sigma_k^2 +
# \varepsilon}$, a constant that is generally not 0 (and the ReLU keeps it when it is
# positive): the channel is not removed, it becomes a constant. The place where the output
# really becomes 0 is the batch norm: setting **its weight $w_k$ and bias $b_k$ to 0** makes
# it output 0, and the ReLU and the pooling keep 0. That is how this lab prunes.
#
# **Task.** Write `prune_channels(model, channels)`, which returns a copy of `model` with the
# given channels of `model.last_conv` pruned.
#
# **Requirements**
#
# - It returns a pruned copy: `model` itself is never changed.
# - In the copy, the output of each given channel (after the block's ReLU and pooling) is
#   exactly 0 for every input, because its batch-norm weight and bias are 0; nothing else
#   changes.

# %% nbgrader={"grade": false, "grade_id": "prune_channels", "locked": false, "schema_version": 3, "solution": true, "task": false}
def prune_channels(model, channels):
    """A copy of ``model`` whose last-block ``channels`` output 0."""
    ### BEGIN SOLUTION
    pruned = copy.deepcopy(model)
    bn = pruned.last_conv[1]
    index = torch.as_tensor(list(channels), dtype=torch.long, device=bn.weight.device)
    with torch.no_grad():
        bn.weight[index] = 0
        bn.bias[index] = 0
    return pruned
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_prune_channels_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(prune_channels, "prune_channels")
model = fx.tiny_cnn()
x = fx.images(16)
state = fx.model_state(model)
before = fx.block_output(model, x)
with fx.silent():
    pruned = prune_channels(model, [0, 5, 11])
after = fx.block_output(pruned, x)
assert float(after[:, [0, 5, 11]].abs().max()) == 0, (
    "a pruned channel must output exactly 0 after the ReLU and pooling (channel 0 has a positive "
    "batch-norm bias: zeroing the convolution alone leaves a constant)")
keep = [c for c in range(12) if c not in (0, 5, 11)]
fx.assert_close(after[:, keep], before[:, keep], what="the channels that were not pruned")
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"prune_channels changed the original model's {key}"
print("prune_channels: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_prune_channels_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(prune_channels, "prune_channels")
model = fx.tiny_cnn(seed=5)
x = fx.images(12, seed=4)
state = fx.model_state(model)
with fx.silent():
    none = prune_channels(model, [])
    every = prune_channels(model, range(12))
    some = prune_channels(model, torch.tensor([2, 3]))
with torch.no_grad():
    fx.assert_close(none.eval()(x), model(x), what="pruning no channel")
    assert float(fx.block_output(every, x).abs().max()) == 0
    kept = (~torch.isin(torch.arange(12), torch.tensor([2, 3]))).float().view(1, -1, 1, 1)
    fx.assert_close(fx.block_output(some, x), fx.block_output(model, x) * kept,
                    what="channels 2 and 3 pruned")
some_state = fx.model_state(some)
for key, value in state.items():
    if key not in ("conv3.1.weight", "conv3.1.bias"):
        assert torch.equal(some_state[key], value), f"pruning must not change {key}"
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key])
assert some is not model and every is not model
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "sweep_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. The pruning sweep
#
# Prune the channels of the last block **one at a time, cumulatively**, in order of their
# mean activation on the validation set, and measure the validation accuracy after every
# channel. Two orders:
#
# - `"decreasing"`: the most active channel first (the text of the CSAW-HackML lab);
# - `"increasing"`: the least active (most *dormant*) first (the Fine-Pruning paper).
#
# Keep the pruned network $B'_X$ as soon as the validation accuracy has dropped by at least
# $X$ **percentage points** below the unpruned network's, for each $X$ in `drops`: with the
# accuracy as a fraction, as soon as $\mathrm{acc}_0 - \mathrm{acc}_k \ge X / 100$. Points,
# not a relative drop ("$X\%$ of the original accuracy"): the defender's budget is a cost in
# correctly classified images, the same whatever the starting accuracy, and a difference of
# two accuracies is what the table reports; a relative drop would let a weaker network lose
# fewer images before $B'_X$ is saved (at 50% accuracy, a 10% relative drop is 5 points).
#
# **Speed.** Pruning changes nothing before `model.last_conv`: the normalisation, `conv1` and
# `conv2` compute the same thing at every step. Compute their output on the validation
# images **once**, keep it, and at each step run only the last block and the classifier on
# it. You can go one step further: pruning changes only the block's batch norm, so the
# block's convolution computes the same thing at every step too. (With 64 channels that is
# 65 accuracy measurements: the benchmark `benchmarks/pruning.py` compares this with running
# the whole network at each step.)
#
# **Task.** Write `prune_sweep(model, x_valid, y_valid, order="increasing", drops=(2, 4,
# 10))`, returning a dict with
#
# - `"order"`: the channels in the order they were pruned (a list of ints);
# - `"accuracy"`: a list of $C + 1$ floats, `accuracy[k]` the validation accuracy with the
#   first `k` channels of `order` pruned (`accuracy[0]`: the unpruned model);
# - `"steps"`: `{X: k}`, the number of channels pruned in $B'_X$ (None if the drop never
#   reaches $X$ points);
# - `"models"`: `{X: B'_X}` (None where `steps[X]` is None).
#
# **Requirements**
#
# - `order="increasing"` prunes the channels from the least to the most active, according to
#   your `channel_activations` on `x_valid`, and `order="decreasing"` from the most to the
#   least active; any other order raises a `ValueError`.
# - It prunes one more channel at each step and keeps the earlier ones pruned, and
#   `accuracy[k]` is the validation accuracy with exactly the first `k` channels of `order`
#   pruned, for `k` from 0 to the number of channels.
# - `steps[X]` is the first `k` with `accuracy[0] - accuracy[k] >= X / 100` (a drop of `X`
#   percentage points, not a relative drop), and `models[X]` the model with those `k`
#   channels pruned.
# - The layers before the last block (`model.normalize`, `model.conv1`, `model.conv2`) see
#   each validation image at most three times during the whole sweep: their output is
#   computed once and reused at every step.
# - `model` itself is never changed.
# - Each saved model is a copy of its own: pruning more channels afterwards does not change it.

# %% nbgrader={"grade": false, "grade_id": "prune_sweep", "locked": false, "schema_version": 3, "solution": true, "task": false}
def prune_sweep(model, x_valid, y_valid, order="increasing", drops=(2, 4, 10), batch_size=512):
    """Prune the last block's channels one at a time; the accuracy curve and B'_X."""
    ### BEGIN SOLUTION
    if order not in ("increasing", "decreasing"):
        raise ValueError(f"order must be 'increasing' or 'decreasing'; got {order!r}")
    ranking = torch.argsort(channel_activations(model, x_valid),
                            descending=(order == "decreasing"), stable=True).tolist()
    working = copy.deepcopy(model).eval()
    device = next(working.parameters()).device
    labels = y_valid.to(device)
    conv, bn, relu, pool = working.last_conv
    with torch.no_grad():  # pruning changes only bn: everything up to conv is computed once
        cached = [conv(working.conv2(working.conv1(working.normalize(x_valid[s : s + batch_size].to(device)))))
                  for s in range(0, len(x_valid), batch_size)]

    def accuracy():
        with torch.no_grad():
            preds = torch.cat([working.classifier(pool(relu(bn(z)))).argmax(1) for z in cached])
        return (preds == labels).float().mean().item()

    curve = [accuracy()]
    steps = {X: None for X in drops}
    models = {X: None for X in drops}
    for k, channel in enumerate(ranking, start=1):
        with torch.no_grad():
            bn.weight[channel] = 0
            bn.bias[channel] = 0
        curve.append(accuracy())
        for X in drops:
            if steps[X] is None and curve[0] - curve[-1] >= X / 100:
                steps[X], models[X] = k, copy.deepcopy(working)
    return {"order": ranking, "accuracy": curve, "steps": steps, "models": models}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_prune_sweep_visible", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
assert_own(prune_sweep, "prune_sweep")
model = fx.tiny_cnn()
x, y = fx.sweep_data(model)  # 128 images, about 60% labelled as the model predicts
state = fx.model_state(model)
with fx.silent():  # the order follows your channel_activations
    reference_order = torch.argsort(torch.as_tensor(channel_activations(model, x)).cpu()).tolist()
with fx.silent(), fx.count_images(model.conv1) as seen:
    result = prune_sweep(model, x, y, order="increasing", drops=(2, 4, 10, 15))
assert set(result) >= {"order", "accuracy", "steps", "models"}, (
    f"return a dict with keys order, accuracy, steps, models; got {sorted(result)}")
assert [int(c) for c in result["order"]] == reference_order, (
    f"increasing order: least active channel first; expected {reference_order}, got "
    f"{[int(c) for c in result['order']]}")
curve = [float(a) for a in result["accuracy"]]
expected = fx.reference_curve(model, x, y, reference_order)
assert len(curve) == 13, f"accuracy needs 13 entries (0 to 12 channels pruned); got {len(curve)}"
assert max(abs(a - b) for a, b in zip(curve, expected, strict=True)) < 1e-6, (
    f"accuracy[k] must be the validation accuracy with the first k channels pruned:\n"
    f"expected {[round(a, 4) for a in expected]}\ngot      {[round(a, 4) for a in curve]}")
for X in (2, 4, 10, 15):
    k = next((k for k, a in enumerate(expected) if expected[0] - a >= X / 100), None)
    assert result["steps"][X] == k, f"steps[{X}]: expected {k} (a drop of {X} points), got {result['steps'][X]}"
    saved = result["models"][X]
    with torch.no_grad():
        got = (saved.eval()(x).argmax(1) == y).float().mean().item()
    assert abs(got - expected[k]) < 1e-6, f"models[{X}] must be the model with {k} channels pruned"
assert seen["images"] <= 3 * len(x), (
    f"the layers before the last block saw {seen['images'] // len(x)} passes over the validation "
    "images: compute their output once and reuse it at every step")
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"prune_sweep changed the model's {key}"
print("prune_sweep: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_prune_sweep_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(prune_sweep, "prune_sweep")
model = fx.tiny_cnn(seed=2, channels=(3, 4, 10))
x, y = fx.sweep_data(model, wrong=0.5, seed=5)
state = fx.model_state(model)
with fx.silent():
    activations = torch.as_tensor(channel_activations(model, x)).cpu()
reference_order = torch.argsort(activations, descending=True).tolist()
expected = fx.reference_curve(model, x, y, reference_order)
drops_here = (1, 3, 15, 40)
with fx.silent(), fx.count_images(model.conv1) as seen:
    result = prune_sweep(model, x, y, order="decreasing", drops=drops_here, batch_size=48)
assert [int(c) for c in result["order"]] == reference_order, "decreasing order: most active first"
curve = [float(a) for a in result["accuracy"]]
assert len(curve) == 11 and max(abs(a - b) for a, b in zip(curve, expected, strict=True)) < 1e-6
assert seen["images"] <= 3 * len(x)
for X in drops_here:
    k = next((k for k, a in enumerate(expected) if expected[0] - a >= X / 100), None)
    assert result["steps"][X] == k, (X, k, result["steps"][X])
    if k is None:
        assert result["models"][X] is None
        continue
    with torch.no_grad():
        got = (result["models"][X].eval()(x).argmax(1) == y).float().mean().item()
    assert abs(got - expected[k]) < 1e-6, f"models[{X}] must have exactly {k} channels pruned"
    assert toolkit.pruned_channels(result["models"][X]) == sorted(reference_order[:k])
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"prune_sweep changed the model's {key}"
try:
    with fx.silent():
        prune_sweep(model, x, y, order="random")
except ValueError:
    pass
else:
    raise AssertionError("an unknown order must raise a ValueError")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "sweep_experiment_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### The sweeps
#
# Both orders, both BadNets. The validation accuracy comes from your sweep; for the figure
# the notebook also measures the clean *test* accuracy and the attack success of the pruned
# networks at a few points along the way (`curve_points` of the profile, every step in
# `full`).

# %% nbgrader={"grade": false, "grade_id": "sweep_experiment", "locked": true, "schema_version": 3, "solution": false, "task": false}
ORDERS = ("increasing", "decreasing")
SWEEPS, SWEEP_SECONDS = {}, {}
for name, model in MODELS.items():
    for order in ORDERS:
        with Timer(DEVICE) as timer:
            SWEEPS[name, order] = prune_sweep(model, X_VALID, Y_VALID, order=order, drops=drops)
        SWEEP_SECONDS[name, order] = timer.seconds
        steps = SWEEPS[name, order]["steps"]
        print(f"{name:>21}, {order:>10}: {timer.seconds:.2f} s; channels pruned at drops "
              + ", ".join(f"{X}: {steps[X]}" for X in drops))


def test_metrics(model):
    """Clean test accuracy and attack success of a (pruned) network."""
    return ((predict(model, X_TEST) == Y_TEST).float().mean().item(),
            (predict(model, X_BAD) == TARGET).float().mean().item())


CURVES = {}
for (name, order), sweep in SWEEPS.items():
    n_channels = len(sweep["order"])
    points = SIZES["curve_points"] or n_channels + 1
    ks = sorted({round(k) for k in np.linspace(0, n_channels, min(points, n_channels + 1))}
                | {k for k in sweep["steps"].values() if k is not None})
    metrics = [test_metrics(prune_channels(MODELS[name], sweep["order"][:k])) for k in ks]
    CURVES[name, order] = {"k": ks, "fraction": [k / n_channels for k in ks],
                           "test_accuracy": [m[0] for m in metrics],
                           "attack_success": [m[1] for m in metrics]}

# %% nbgrader={"grade": false, "grade_id": "plot_curves", "locked": true, "schema_version": 3, "solution": false, "task": false}
fig, axes = plt.subplots(2, 2, figsize=(9, 6.4), sharex=True, sharey=True)
for row, name in enumerate(MODELS):
    for col, order in enumerate(ORDERS):
        ax, sweep, curve = axes[row, col], SWEEPS[name, order], CURVES[name, order]
        n_channels = len(sweep["order"])
        fractions = np.arange(n_channels + 1) / n_channels
        ax.plot(fractions, sweep["accuracy"], "-", color="C0", label="validation accuracy")
        ax.plot(curve["fraction"], curve["test_accuracy"], "o", ms=3, color="C0", alpha=0.6,
                label="test accuracy")
        ax.plot(curve["fraction"], curve["attack_success"], "s-", ms=3, color="C3",
                label="attack success")
        for X in drops:
            if sweep["steps"][X] is not None:
                ax.axvline(sweep["steps"][X] / n_channels, color="0.5", ls=":", lw=1)
                ax.text(sweep["steps"][X] / n_channels, 1.04, f"{X}", fontsize=7, ha="center")
        ax.set_title(f"{name}, {order} order", fontsize=9)
        ax.set_ylim(-0.03, 1.1)
        if row == 1:
            ax.set_xlabel("fraction of channels pruned")
axes[0, 0].legend(loc="lower left", fontsize=7)
fig.suptitle(f"Pruning the last conv block; dotted: B'_X saved at drops X = {list(drops)} points",
             fontsize=9)
fig.tight_layout()
save_figure(fig, "pruning-curves", caption=CAPTION)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "repaired_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 4. The repaired network G
#
# G runs both B and B′ on an image. Where they predict the same class, G answers that
# class; where they disagree, the pruning changed the decision (a sign that a pruned
# channel carried it, as a trigger's channel would), so G answers **"backdoor detected"**.
# With $N$ classes numbered $0, \dots, N - 1$, that is class $N$: the seed lab's text counts
# classes from 1 and calls it class $N + 1$; it is the same, last, output.
#
# **Task.** Write the module `RepairedNet(B, B_prime)`. Its `forward(x)` returns a tensor of
# shape `(n, N + 1)` (scores: only its argmax matters) for a batch of `n` images.
#
# **Requirements**
#
# - The argmax of `G(x)` is B's class where B and B′ predict the same class and `N` (the
#   last of the `N + 1` outputs) where they predict different classes.
# - B and B′ are submodules of G (so `G.to(device)`, `G.eval()` and `G.parameters()` reach
#   them), and G never changes them.

# %% nbgrader={"grade": false, "grade_id": "repaired_net", "locked": false, "schema_version": 3, "solution": true, "task": false}
class RepairedNet(nn.Module):
    """G: B's class where B and B' agree, class N ("backdoor detected") where they differ."""

    def __init__(self, B, B_prime):
        super().__init__()
        ### BEGIN SOLUTION
        self.B = B
        self.B_prime = B_prime
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        logits = self.B(x)
        n_classes = logits.shape[1]
        ours, theirs = logits.argmax(1), self.B_prime(x).argmax(1)
        label = torch.where(ours == theirs, ours, torch.full_like(ours, n_classes))
        return F.one_hot(label, n_classes + 1).to(logits.dtype)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_repaired_net_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(RepairedNet, "RepairedNet")
b_classes, bp_classes = [0, 1, 2, 3, 1, 2, 0, 3], [0, 1, 3, 3, 0, 2, 2, 3]
B, Bp = fx.TableModel(b_classes, 4, seed=1), fx.TableModel(bp_classes, 4, seed=2)
x = fx.table_images(8)
with fx.silent():
    G = RepairedNet(B, Bp)
    with torch.no_grad():
        out = G(x)
assert isinstance(G, nn.Module), "RepairedNet must be an nn.Module"
assert tuple(out.shape) == (8, 5), f"G(x) must have N + 1 = 5 outputs per image; got {tuple(out.shape)}"
expected = [b if b == bp else 4 for b, bp in zip(b_classes, bp_classes, strict=True)]
assert out.argmax(1).tolist() == expected, (
    f"G's classes: expected {expected} (B's class where B and B' agree, 4 where they differ); "
    f"got {out.argmax(1).tolist()}")
assert {id(B.scale), id(Bp.scale)} <= {id(p) for p in G.parameters()}, (
    "B and B' must be submodules of G: assign them as attributes in __init__ (self.B = B)")
print("RepairedNet: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_repaired_net_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(RepairedNet, "RepairedNet")
g = torch.Generator().manual_seed(3)
b_classes = torch.randint(0, 6, (30,), generator=g).tolist()
bp_classes = [c if i % 3 else (c + 1) % 6 for i, c in enumerate(b_classes)]
B, Bp = fx.TableModel(b_classes, 6, seed=4), fx.TableModel(bp_classes, 6, seed=5)
state_b, state_bp = fx.model_state(B), fx.model_state(Bp)
x = fx.table_images(30)
with fx.silent():
    G = RepairedNet(B, Bp)
    with torch.no_grad():
        out = G(x)
assert tuple(out.shape) == (30, 7)
expected = [b if b == bp else 6 for b, bp in zip(b_classes, bp_classes, strict=True)]
assert out.argmax(1).tolist() == expected
params = {id(p) for p in G.parameters()}
assert {id(B.scale), id(Bp.scale)} <= params, "B and B' must be submodules of G (G.parameters())"
B.train()
Bp.train()
G.eval()
assert not B.training and not Bp.training, "G.eval() must reach B and B'"
assert torch.equal(fx.model_state(B)["noise"], state_b["noise"]) and torch.equal(
    fx.model_state(Bp)["noise"], state_bp["noise"])
model = fx.tiny_cnn(seed=1)
same = fx.images(10, seed=9)
with fx.silent(), torch.no_grad():
    agree = RepairedNet(model, copy.deepcopy(model))(same)
assert agree.argmax(1).tolist() == model(same).argmax(1).tolist(), "identical B and B': G is B"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "evaluate_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 5. Evaluating G
#
# **Task.** Write `evaluate_repaired(G, x_test, y_test, x_bad, y_bad, *, target)`: `x_test,
# y_test` are clean test images and labels; `x_bad, y_bad` triggered test images and their
# *true* labels. It returns a dict with `"clean_accuracy"`, `"attack_success"` and
# `"detection_rate"` (floats). `predict(model, x)` gives a model's classes (the argmax).
#
# **Requirements**
#
# - `clean_accuracy` is the fraction of the clean test images that G classifies as their
#   label: "backdoor detected" on a clean image counts as wrong.
# - `attack_success` is the fraction of the triggered images whose true label is not
#   `target` that G classifies as `target` (triggered target-class images are left out).
# - `detection_rate` is the fraction of those same images (triggered, true label not
#   `target`) that G classifies as `N`, the last of its outputs.

# %% nbgrader={"grade": false, "grade_id": "evaluate_repaired", "locked": false, "schema_version": 3, "solution": true, "task": false}
def evaluate_repaired(G, x_test, y_test, x_bad, y_bad, *, target):
    """Clean accuracy, attack success and detection rate of the repaired network G."""
    ### BEGIN SOLUTION
    device = next(G.parameters()).device
    with torch.no_grad():
        detected = G.eval()(x_test[:1].to(device)).shape[1] - 1
    clean = predict(G, x_test)
    keep = y_bad.cpu() != target
    bad = predict(G, x_bad[keep.to(x_bad.device)])
    return {"clean_accuracy": (clean == y_test.cpu()).float().mean().item(),
            "attack_success": (bad == target).float().mean().item(),
            "detection_rate": (bad == detected).float().mean().item()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_evaluate_repaired_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(evaluate_repaired, "evaluate_repaired")
# 10 clean images (6 right, 2 wrong, 2 sent to "detected" = class 4), then 10 triggered
# images: 2 of the target class 0, 8 others: 3 -> target, 4 -> detected, 1 -> class 2.
classes = [0, 1, 2, 3, 0, 1, 3, 0, 4, 4] + [0, 4, 0, 0, 0, 4, 4, 4, 4, 2]
y_test = torch.tensor([0, 1, 2, 3, 0, 1, 2, 1, 1, 2])
y_bad = torch.tensor([0, 0, 1, 2, 3, 1, 2, 3, 1, 3])
G = fx.TableModel(classes, 5)
x_all = fx.table_images(20)
with fx.silent():
    result = evaluate_repaired(G, x_all[:10], y_test, x_all[10:], y_bad, target=0)
assert abs(float(result["clean_accuracy"]) - 0.6) < 1e-6, (
    f"clean accuracy {float(result['clean_accuracy']):.3f}, expected 0.6: 6 of 10 clean images "
    "are classified as their label (class 4, 'backdoor detected', counts as wrong)")
assert abs(float(result["attack_success"]) - 3 / 8) < 1e-6, (
    f"attack success {float(result['attack_success']):.3f}, expected 0.375: 3 of the 8 "
    "triggered non-target images go to the target")
assert abs(float(result["detection_rate"]) - 4 / 8) < 1e-6, (
    f"detection rate {float(result['detection_rate']):.3f}, expected 0.5: 4 of the 8 triggered "
    "non-target images go to class N = 4")
print("evaluate_repaired: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_evaluate_repaired_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(evaluate_repaired, "evaluate_repaired")
g = torch.Generator().manual_seed(11)
n_clean, n_bad, n_classes = 40, 50, 3
classes = torch.randint(0, n_classes + 1, (n_clean + n_bad,), generator=g)
y_test = torch.randint(0, n_classes, (n_clean,), generator=g)
y_bad = torch.randint(0, n_classes, (n_bad,), generator=g)
G = fx.TableModel(classes.tolist(), n_classes + 1, seed=2)
x_all = fx.table_images(n_clean + n_bad)
for target in (1, 2):
    with fx.silent():
        result = evaluate_repaired(G, x_all[:n_clean], y_test, x_all[n_clean:], y_bad, target=target)
    clean, bad = classes[:n_clean], classes[n_clean:][y_bad != target]
    assert abs(float(result["clean_accuracy"]) - (clean == y_test).float().mean().item()) < 1e-6
    assert abs(float(result["attack_success"]) - (bad == target).float().mean().item()) < 1e-6
    assert abs(float(result["detection_rate"]) - (bad == n_classes).float().mean().item()) < 1e-6
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "table_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### The table
#
# For each BadNet, order and $X$: the fraction of channels pruned in $B'_X$, the clean test
# accuracy and attack success of $B'_X$, and those of $G = $ `RepairedNet(B, B'_X)` with its
# detection rate; the first row of each block is the unpruned B. Also written to
# `pruning-table.csv`.

# %% nbgrader={"grade": false, "grade_id": "table", "locked": true, "schema_version": 3, "solution": false, "task": false}
ROWS = []
for name, model in MODELS.items():
    accuracy, success = test_metrics(model)
    ROWS.append({"model": name, "order": "-", "X": 0, "fraction_pruned": 0.0,
                 "bprime_clean_accuracy": accuracy, "bprime_attack_success": success,
                 "G_clean_accuracy": accuracy, "G_attack_success": success,
                 "G_detection_rate": 0.0})
    for order in ORDERS:
        sweep = SWEEPS[name, order]
        for X in drops:
            if sweep["models"][X] is None:
                continue
            bprime = sweep["models"][X]
            accuracy, success = test_metrics(bprime)
            G = RepairedNet(model, bprime).to(DEVICE).eval()
            scores = evaluate_repaired(G, X_TEST, Y_TEST, X_BAD, Y_BAD, target=TARGET)
            ROWS.append({"model": name, "order": order, "X": X,
                         "fraction_pruned": sweep["steps"][X] / len(sweep["order"]),
                         "bprime_clean_accuracy": accuracy, "bprime_attack_success": success,
                         "G_clean_accuracy": scores["clean_accuracy"],
                         "G_attack_success": scores["attack_success"],
                         "G_detection_rate": scores["detection_rate"]})
header = (f"{'model':>21} {'order':>10} {'X':>3} {'pruned':>6} | {'B acc':>6} {'B ASR':>6} | "
          f"{'G acc':>6} {'G ASR':>6} {'G det':>6}")
print(header + "\n" + "-" * len(header))
for r in ROWS:
    print(f"{r['model']:>21} {r['order']:>10} {r['X']:>3} {r['fraction_pruned']:>6.2f} | "
          f"{r['bprime_clean_accuracy']:>6.3f} {r['bprime_attack_success']:>6.3f} | "
          f"{r['G_clean_accuracy']:>6.3f} {r['G_attack_success']:>6.3f} {r['G_detection_rate']:>6.3f}")
with open(output_dir() / "pruning-table.csv", "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=list(ROWS[0]))
    writer.writeheader()
    writer.writerows(ROWS)

# %% [markdown] nbgrader={"grade": false, "grade_id": "explore_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Explore
#
# Move the slider over the fraction of channels pruned (B's channels, in the chosen order):
# the curves with the current point marked, and a few triggered test images with B's and
# G's answers ("det" = backdoor detected). In a batch run this shows one static view.

# %% nbgrader={"grade": false, "grade_id": "explore", "locked": true, "schema_version": 3, "solution": false, "task": false}
EXAMPLES = X_BAD[: SIZES["examples"]]
B_CLASSES = {name: predict(model, EXAMPLES).tolist() for name, model in MODELS.items()}


def show_pruning(model_name, order, fraction):
    sweep, curve = SWEEPS[model_name, order], CURVES[model_name, order]
    n_channels = len(sweep["order"])
    k = round(fraction * n_channels)
    G = RepairedNet(MODELS[model_name], prune_channels(MODELS[model_name], sweep["order"][:k]))
    g_classes = predict(G, EXAMPLES).tolist()
    cols = (len(EXAMPLES) + 1) // 2
    fig = plt.figure(figsize=(9, 3.4))
    grid = fig.add_gridspec(2, 2 + cols)
    ax = fig.add_subplot(grid[:, :2])
    ax.plot(np.arange(n_channels + 1) / n_channels, sweep["accuracy"], color="C0",
            label="validation accuracy")
    ax.plot(curve["fraction"], curve["attack_success"], "s-", ms=3, color="C3",
            label="attack success")
    ax.axvline(k / n_channels, color="k", lw=1)
    ax.set_xlabel("fraction of channels pruned")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{model_name}, {order}: {k} of {n_channels} pruned", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    for i, image in enumerate(EXAMPLES):
        sub = fig.add_subplot(grid[i // cols, 2 + i % cols])
        sub.imshow(image.permute(1, 2, 0).cpu().clamp(0, 1).numpy(), interpolation="nearest")
        g_label = "det" if g_classes[i] == N_CLASSES else DATA.classes[g_classes[i]]
        sub.set_title(f"B {DATA.classes[B_CLASSES[model_name][i]]}\nG {g_label}", fontsize=6)
        sub.axis("off")
    fig.tight_layout()
    return fig


FRACTIONS = [round(f, 3) for f in np.linspace(0, 1, 21)]
explore(show_pruning, static={"model_name": "BadNet", "order": "increasing", "fraction": 0.5},
        model_name=list(MODELS), order=list(ORDERS), fraction=FRACTIONS)

# %% [markdown] nbgrader={"grade": false, "grade_id": "fine_prune_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 6. Extension: fine-pruning (graded separately)
#
# Liu et al. follow the pruning with **fine-tuning**: a few epochs of training of the pruned
# network on the clean data the defender has. It recovers the accuracy the pruning cost and,
# for the pruning-aware attacker, also moves the weights of the channels the backdoor shares
# with clean features, which weakens the backdoor.
#
# **Task.** Write `fine_prune(model, x, y, *, epochs, lr=0.01, batch_size=64, seed=0)`: fine-
# tune a copy of the pruned `model` on `(x, y)` and return it. Use
# `make_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)`.
#
# The pruned channels stay pruned by themselves: a pruned channel's batch norm outputs 0,
# the ReLU passes no gradient at 0, so its weight and bias get zero gradients (and weight
# decay keeps 0 at 0). The tests check it all the same.
#
# **Requirements**
#
# - It returns a fine-tuned copy: `model` itself is never changed.
# - It trains in training mode for `epochs` passes over `(x, y)` in minibatches of
#   `batch_size`, with SGD (learning rate `lr`, momentum 0.9) on the cross-entropy, and
#   returns the copy in evaluation mode.

# %% nbgrader={"grade": false, "grade_id": "fine_prune", "locked": false, "schema_version": 3, "solution": true, "task": false}
def fine_prune(model, x, y, *, epochs, lr=0.01, batch_size=64, seed=0):
    """Fine-tune a copy of the pruned ``model`` on clean data."""
    ### BEGIN SOLUTION
    tuned = copy.deepcopy(model).train()
    device = next(tuned.parameters()).device
    optimizer = torch.optim.SGD(tuned.parameters(), lr=lr, momentum=0.9)
    loader = make_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(tuned(xb.to(device)), yb.to(device))
            loss.backward()
            optimizer.step()
    return tuned.eval()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_fine_prune_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_own(fine_prune, "fine_prune")
model = toolkit.prune_channels(fx.tiny_cnn(seed=6), [1, 4, 9])
x, y = fx.teacher_data(48)
state = fx.model_state(model)
with torch.no_grad():
    before = F.cross_entropy(model(x), y).item()
with fx.silent(), fx.count_images(model.conv1, training=True) as seen:
    tuned = fine_prune(model, x, y, epochs=3, lr=0.05, batch_size=16, seed=0)
assert not tuned.training, "return the fine-tuned copy in evaluation mode"
with torch.no_grad():
    after = F.cross_entropy(tuned.eval()(x), y).item()
assert after < 0.8 * before, f"fine-tuning must lower the training loss: {before:.3f} -> {after:.3f}"
assert float(fx.block_output(tuned, x)[:, [1, 4, 9]].abs().max()) == 0, (
    "channels 1, 4 and 9 were pruned: their output must stay exactly 0 after fine-tuning")
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key]), f"fine_prune changed the original model's {key}"
assert seen["images"] == 3 * 48, (
    f"3 epochs over 48 images in training mode: expected 144 images, got {seen['images']}")
print("fine_prune: visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_fine_prune_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run when your notebook is graded).
### BEGIN HIDDEN TESTS
assert_own(fine_prune, "fine_prune")
model = toolkit.prune_channels(fx.tiny_cnn(seed=8), [0, 2, 3, 11])
x, y = fx.teacher_data(40, seed=4)
state = fx.model_state(model)
with fx.silent(), fx.count_images(model.conv1, training=True) as seen:
    a = fine_prune(model, x, y, epochs=2, lr=0.02, batch_size=16, seed=3)
    b = fine_prune(model, x, y, epochs=2, lr=0.02, batch_size=16, seed=3)
assert seen["images"] == 2 * 2 * 40
assert not a.training and not b.training
for key, value in fx.model_state(a).items():
    assert torch.equal(value, fx.model_state(b)[key]), "fine_prune must be deterministic in seed"
assert toolkit.pruned_channels(a) == [0, 2, 3, 11]
assert float(fx.block_output(a, x)[:, [0, 2, 3, 11]].abs().max()) == 0
for key, value in fx.model_state(model).items():
    assert torch.equal(value, state[key])
assert not torch.equal(fx.model_state(a)["classifier.3.weight"], state["classifier.3.weight"])
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "fine_prune_experiment_intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Fine-pruning both BadNets
#
# For each BadNet: fine-tune the increasing-order $B'_X$ at the largest $X$ on the clean
# validation split (the defender's only data), and, for comparison, the unpruned B
# (fine-tuning alone).

# %% nbgrader={"grade": false, "grade_id": "fine_prune_experiment", "locked": true, "schema_version": 3, "solution": false, "task": false}
FINE = {}
X_MAX = max(drops)
for name, model in MODELS.items():
    bprime = SWEEPS[name, "increasing"]["models"][X_MAX]
    if bprime is None:
        print(f"{name}: the drop never reached {X_MAX} points; nothing to fine-prune")
        continue
    row = {"pruned": test_metrics(bprime)}
    with Timer(DEVICE) as timer:
        row["fine_pruned"] = test_metrics(fine_prune(bprime, X_VALID, Y_VALID,
                                                     epochs=SIZES["finetune_epochs"],
                                                     lr=finetune_lr, seed=seed))
    row["fine_tuned_only"] = test_metrics(fine_prune(model, X_VALID, Y_VALID,
                                                     epochs=SIZES["finetune_epochs"],
                                                     lr=finetune_lr, seed=seed))
    row["unpruned"] = test_metrics(model)
    row["seconds"] = timer.seconds
    FINE[name] = {k: (v if k == "seconds" else {"clean_accuracy": v[0], "attack_success": v[1]})
                  for k, v in row.items()}
    print(f"{name}: " + "; ".join(f"{k} acc {v['clean_accuracy']:.3f} ASR {v['attack_success']:.3f}"
                                  for k, v in FINE[name].items() if k != "seconds"))

write_results(
    {"target": TARGET, "drops_points": list(drops), "assets": ASSETS,
     "sizes": {k: SIZES[k] for k in ("n_valid", "n_test", "finetune_epochs")},
     "finetune_lr": finetune_lr,
     "sweeps": {f"{name} / {order}": {"order": s["order"], "validation_accuracy": s["accuracy"],
                                      "steps": {str(X): k for X, k in s["steps"].items()},
                                      "seconds": SWEEP_SECONDS[name, order],
                                      "test_curve": CURVES[name, order]}
                for (name, order), s in SWEEPS.items()},
     "table": ROWS, "fine_pruning": FINE},
    lab="lab4", profile=PROFILE, dataset=DATA.name, seed=seed, device=DEVICE)

# %% [markdown] nbgrader={"grade": false, "grade_id": "questions", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 7. Questions for the write-up
#
# Answer in the cell below, using the table (`pruning-table.csv`) and the figure
# (`pruning-curves.pdf`).
#
# 1. **The order.** Which order removes B's backdoor at less cost in clean accuracy, and why?
#    Is that what the paper's reasoning (dormant channels carry the backdoor) predicts on
#    this network and dataset? If not, where does the backdoor live instead?
# 2. **The pruning-aware attacker.** Why does pruning fail against the pruning-aware BadNet?
#    (The seed lab's conclusion: the backdoor survives until the clean accuracy collapses.)
# 3. **Fine-tuning.** What does fine-tuning add to pruning, against each BadNet? What does
#    fine-tuning alone do?
# 4. **G at test time.** What does G cost at test time compared with B (compute, and the
#    clean images it wrongly flags)? When is flagging better than answering?
# 5. **Points, not percent.** Why does the lab measure drops in percentage points? Give an
#    example where a relative drop would save a very different $B'_X$.

# %% [markdown] nbgrader={"grade": true, "grade_id": "answers", "locked": false, "points": 5, "schema_version": 3, "solution": true, "task": false}
# 1. Compare the `increasing` and `decreasing` rows at equal X: the better order is the one
#    with the lower attack success at the same accuracy cost. The paper's argument (trigger
#    features are dormant on clean data) predicts `increasing`. On SimpleCNN and the
#    synthetic data it fails (cpu profile: B's attack success is still 1.00 at X = 10 in both
#    orders): the trigger reuses channels that clean images also activate (edge and texture
#    detectors), and the position-specific classifier reads them at the corner, so no order
#    separates the backdoor from the clean task.
# 2. The attacker implanted the backdoor while the dormant channels were pruned, so it lives
#    in the active channels that clean accuracy needs; the restored dormant channels are
#    decoys that the defender prunes first (here pruning them even strengthens the backdoor:
#    attack success 0.73 unpruned, 0.81 at X = 4 and 0.95 at X = 10 in increasing order;
#    cpu profile, synthetic data, 2026-12-01). Removing the backdoor then means removing the
#    channels the clean task uses: accuracy collapses first.
# 3. Fine-tuning recovers the clean accuracy lost to pruning (BadNet 0.63 -> 0.73 at
#    X = 10) and changes the shared weights, which can weaken a backdoor hidden in active
#    channels: the pruning-aware one falls from 0.95 to 0.19 when fine-pruned. Plain
#    BadNet's stays at 0.99, since clean data never asks the backdoor path to change.
#    Fine-tuning alone leaves plain BadNet at 1.00; against the pruning-aware attacker it
#    helps too (0.73 -> 0.29), and fine-pruning ends lower (0.19) at the same accuracy.
# 4. Two forward passes instead of one (twice the compute and the weights in memory), and
#    every clean image on which B and B′ disagree is flagged (the drop in G's clean accuracy).
#    Flagging is better when a wrong answer is costlier than no answer (access control).
# 5. A drop in points is a fixed number of misclassified images per hundred; at 50% accuracy
#    a 10% relative drop is only 5 points, so B′_10 would be pruned half as far.
