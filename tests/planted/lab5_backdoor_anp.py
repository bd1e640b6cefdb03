"""Planted bugs of Lab 5: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
One bug per requirement: ``REQUIREMENTS`` maps each task to {bug name: the requirement it
breaks}, word for word the bullet under the task's **Requirements** in the notebook
(``tests/course/test_requirements.py`` checks both). ``WRAPPERS`` holds, for every task the
package has an implementation of, an answer that only calls (or aliases) the package: it
must score 0 on that task and leave the others at full marks.
"""

REQUIREMENTS: dict[str, dict[str, str]] = {
    "triggers": {
        "bottom_right_off_by_one":
            "`make_bottom_right_trigger` has `alpha = 1` and a mask that is 1 on exactly the last "
            "`size` rows and the last `size` columns and 0 elsewhere.",
        "checkerboard_inverted":
            "The checkerboard is 1 (white) where row + column, counted inside the patch from its "
            "top-left, is even and 0 (black) where it is odd, the same in every channel.",
        "four_corners_not_mirrored":
            "`make_four_corner_trigger` has `alpha = 1` and masks exactly a `size` x `size` patch "
            "in each corner, each holding the checkerboard mirrored into that corner (flipped "
            "left-right on the right, upside down at the bottom).",
        "gaussian_uniform_noise":
            "`make_gaussian_trigger` has a full mask (all ones), the given `alpha`, and a pattern "
            "of independent Gaussian noise with mean 0.5 and standard deviation 0.25 in every "
            "pixel and channel, clipped to $[0, 1]$.",
        "gaussian_not_seeded":
            "`make_gaussian_trigger` is deterministic in `seed`: the same seed gives the same "
            "pattern, and different seeds give different patterns.",
    },
    "stamp": {
        "stamp_alpha_reversed":
            r"It returns $(1 - m) \odot x + m \odot ((1 - \alpha) x + \alpha p)$ for the "
            r"trigger's mask $m$, pattern $p$ and opacity $\alpha$.",
        "stamp_in_place": "It returns a new tensor and never modifies `x`.",
        "stamp_trigger_not_moved":
            "The result is on `x`'s device and in `x`'s dtype (move the trigger's tensors there).",
    },
    "poison_dataset": {
        "poison_count_of_eligible":
            "It poisons exactly `round(rate * len(x))` samples: `rate` is a fraction of the whole "
            "set, not of the eligible samples.",
        "poison_with_replacement":
            "It draws the poisoned samples without replacement (no sample twice).",
        "poison_not_seeded":
            "The draw is reproducible from `seed`: the same seed gives the same samples, and a "
            "different seed different ones.",
        "poisons_target_class_samples":
            "With `eligible=\"non-target\"` only the samples whose label is not `target` can be "
            "poisoned, with `eligible=\"target\"` only those whose label is `target`.",
        "stamps_before_transform":
            "Each poisoned image is stamped with your `stamp`, after `transform` when one is "
            "given (which gets the chosen images and their original labels).",
        "not_relabelled":
            "With `relabel=True` the poisoned samples get the label `target`; with "
            "`relabel=False` they keep theirs.",
        "modifies_x_in_place":
            "Every other sample is unchanged, and `x` and `y` themselves are never modified.",
        "too_few_eligible_not_checked":
            "It raises a `ValueError` (saying what is wrong) when `rate` is outside $[0, 1]$, "
            "when `target` is not one of the labels in `y`, or when fewer samples are eligible "
            "than the rate asks for.",
    },
    "attack_success": {
        "attack_success_counts_the_target_class":
            "Only the test images whose label is not `target` count.",
        "attack_success_on_clean_images":
            "Each of them is stamped with the trigger (with your `stamp`) before `model` "
            "classifies it.",
        "attack_success_counts_misclassified":
            "The result is the fraction of them that `model` classifies as `target`.",
    },
    "clean_label": {
        "pgd_stops_early": "Every PGD run takes all its steps: `pgd`'s `early_stop` stays off.",
        "restarts_without_random_start":
            "It makes up to `restarts` runs, each from the clean images `x` with a new random "
            "start (a different seed derived from `seed`).",
        "restarts_attack_fooled_samples_again":
            "It stops early between runs: a sample that the clean model misclassifies after a "
            "run keeps that run's result and is not attacked again, and a sample never "
            "misclassified keeps the last run's result.",
        "restarts_accumulate_perturbations":
            "The result stays within `eps` of `x` (L-inf) and in $[0, 1]$, and `x` itself is "
            "never modified.",
    },
    "anp_perturb": {
        "bias_perturbed_additively":
            "`anp_forward` computes every BN neuron with weight `w * mask` and bias `b` without "
            "`noise`, and with weight `w * (mask + delta)` and bias `b * (1 + xi)` with it, "
            "differentiably in the mask and the noise.",
        "forward_switches_to_eval_mode":
            "`anp_forward` leaves the model as it was: its parameters and its mode (training or "
            "evaluation) do not change.",
        "perturbation_starts_at_zero":
            r"`anp_perturb` starts `delta` and `xi` uniformly at random in "
            r"$[-\epsilon, \epsilon]$, drawn from `generator`.",
        "perturbation_descends":
            "It then takes `steps` ascent steps on the cross-entropy of `anp_forward(model, x, "
            "mask, noise)` (the mask held constant), each adding `eps / steps` times the sign of "
            "the gradient.",
        "neuron_perturbation_not_clipped":
            r"After every step it clips `delta` and `xi` to $[-\epsilon, \epsilon]$.",
    },
    "anp_mask": {
        "mask_learned_on_the_model_itself":
            "It works on a copy of the model in training mode (`copy.deepcopy(model).train()`), "
            "so the model it is given is not changed, not even its batch-norm statistics.",
        "mask_sgd_without_momentum":
            "Every mask starts at 1, and only the masks are optimised, by SGD with learning rate "
            "`lr` and momentum 0.9.",
        "loader_not_restarted":
            "Each of the `iters` iterations takes the next minibatch of `make_loader(x, y, "
            "batch_size=batch_size, shuffle=True, seed=seed)`, restarting the loader when it "
            "runs out.",
        "alpha_weights_reversed":
            "Each iteration's loss is `alpha * natural + (1 - alpha) * robust`: the "
            "cross-entropies of `anp_forward` without and with the perturbation that your "
            "`anp_perturb` computes for the minibatch (with `eps`, `steps` and one "
            "`torch.Generator().manual_seed(seed)` for the whole run).",
        "mask_not_clipped": "After every optimizer step the masks are clipped to $[0, 1]$.",
    },
    "anp_prune": {
        "prunes_in_place": "It returns a pruned copy: `model` itself is never changed.",
        "prunes_above_the_threshold":
            "Exactly the neurons whose mask is strictly below `threshold` are pruned.",
        "prunes_the_bias_too":
            "Pruning a neuron sets its batch-norm weight to 0 and changes nothing else (its bias, "
            "the other weights and the batch-norm statistics stay as they are).",
    },
}

BUGS: dict[str, tuple[str, str, str]] = {
    # ---- triggers
    # The patch lands one row and one column too far up and left.
    "bottom_right_off_by_one": (
        "triggers",
        "mask[:, h - size :, w - size :] = 1",
        "mask[:, h - size - 1 : h - 1, w - size - 1 : w - 1] = 1",
    ),
    # Black where the checkerboard is white, and the other way round.
    "checkerboard_inverted": (
        "triggers",
        "% 2 == 0).float()",
        "% 2 == 1).float()",
    ),
    # The same (unflipped) board in every corner: wrong for an even size.
    "four_corners_not_mirrored": (
        "triggers",
        "pattern[:, rows, cols] = board.flip(dims) if dims else board",
        "pattern[:, rows, cols] = board",
    ),
    # Uniform noise in [0, 1] (torch.rand) instead of Gaussian noise: mean 0.5 as well.
    "gaussian_uniform_noise": (
        "triggers",
        "(0.5 + 0.25 * torch.randn(image_shape, generator=generator)).clamp(0, 1)",
        "torch.rand(image_shape, generator=generator)",
    ),
    # The generator is built but not used: the global random state draws the pattern.
    "gaussian_not_seeded": (
        "triggers",
        "torch.randn(image_shape, generator=generator)",
        "torch.randn(image_shape)",
    ),
    # ---- stamp
    # Opacity reversed: the image gets alpha and the pattern 1 - alpha.
    "stamp_alpha_reversed": (
        "stamp",
        "m * ((1 - a) * x + a * p)",
        "m * (a * x + (1 - a) * p)",
    ),
    # The right values, written into the caller's batch.
    "stamp_in_place": (
        "stamp",
        "return (1 - m) * x + m * ((1 - a) * x + a * p)",
        "return x.mul_(1 - a * m).add_(a * m * p)",
    ),
    # The trigger stays float32 on the CPU: the result is promoted to float32 (and fails on a GPU).
    "stamp_trigger_not_moved": (
        "stamp",
        "    m = trigger.mask.to(device=x.device, dtype=x.dtype)\n"
        "    p = trigger.pattern.to(device=x.device, dtype=x.dtype)\n",
        "    m, p = trigger.mask, trigger.pattern\n",
    ),
    # ---- poison_dataset
    # rate read as a fraction of the eligible samples.
    "poison_count_of_eligible": (
        "poison_dataset",
        "n_poison = round(rate * len(x))",
        "n_poison = round(rate * len(candidates))",
    ),
    # Drawn with replacement: some samples twice, fewer distinct ones poisoned.
    "poison_with_replacement": (
        "poison_dataset",
        "torch.randperm(len(candidates), generator=generator)[:n_poison]",
        "torch.randint(len(candidates), (n_poison,), generator=generator)",
    ),
    # The seeded generator is not used: the global random state chooses the samples.
    "poison_not_seeded": (
        "poison_dataset",
        "torch.randperm(len(candidates), generator=generator)",
        "torch.randperm(len(candidates))",
    ),
    # Every sample is eligible: target-class images get "poisoned" (and relabelled) too.
    "poisons_target_class_samples": (
        "poison_dataset",
        "candidates = torch.nonzero(y != target).flatten()",
        "candidates = torch.arange(len(y))",
    ),
    # The trigger is stamped first and then perturbed (and so partly erased) by the transform.
    "stamps_before_transform": (
        "poison_dataset",
        "    images = x[indices]\n"
        "    if transform is not None:\n"
        "        images = transform(images, y[indices])\n"
        "    x_poisoned[indices] = stamp(images, trigger)\n",
        "    images = stamp(x[indices], trigger)\n"
        "    if transform is not None:\n"
        "        images = transform(images, y[indices])\n"
        "    x_poisoned[indices] = images\n",
    ),
    # The labels are never changed: a dirty-label attack without the dirty labels.
    "not_relabelled": (
        "poison_dataset",
        "    if relabel:\n        y_poisoned[indices] = target\n",
        "",
    ),
    # No copies: the caller's training set is poisoned in place.
    "modifies_x_in_place": (
        "poison_dataset",
        "x_poisoned, y_poisoned = x.clone(), y.clone()",
        "x_poisoned, y_poisoned = x, y",
    ),
    # Checked against the whole set: too few eligible samples poisons fewer, silently.
    "too_few_eligible_not_checked": (
        "poison_dataset",
        "if n_poison > len(candidates):",
        "if n_poison > len(x):",
    ),
    # ---- attack_success
    # Target-class test images are counted: a free success for each of them.
    "attack_success_counts_the_target_class": (
        "attack_success",
        "keep = y != target",
        "keep = torch.ones_like(y, dtype=torch.bool)",
    ),
    # The clean images are classified: no trigger, no attack.
    "attack_success_on_clean_images": (
        "attack_success",
        "predict(model, stamp(x[keep], trigger))",
        "predict(model, x[keep])",
    ),
    # Counts every misclassified image, whatever class it went to.
    "attack_success_counts_misclassified": (
        "attack_success",
        "(predictions == target)",
        "(predictions != y[keep])",
    ),
    # ---- clean_label
    # Each run stops at its first misclassified iterate: images just across the boundary.
    "pgd_stops_early": (
        "clean_label",
        "seed=seed + restart)",
        "seed=seed + restart, early_stop=True)",
    ),
    # No random start: every restart repeats the first run.
    "restarts_without_random_start": (
        "clean_label",
        "random_start=True,",
        "random_start=False,",
    ),
    # Misclassified samples are attacked again, and their result overwritten.
    "restarts_attack_fooled_samples_again": (
        "clean_label",
        "todo = todo[~fooled]",
        "todo = todo",
    ),
    # Each restart starts from the previous restart's result: perturbations add up past eps.
    "restarts_accumulate_perturbations": (
        "clean_label",
        "candidate = pgd(model, x[todo], y[todo],",
        "candidate = pgd(model, x_adv[todo], y[todo],",
    ),
    # ---- anp_perturb
    # The bias perturbation added instead of multiplied: b + xi.
    "bias_perturbed_additively": (
        "anp_perturb",
        'params[f"{name}.bias"] = layer.bias * (1 + xi)',
        'params[f"{name}.bias"] = layer.bias + xi',
    ),
    # The forward pass puts the model in evaluation mode (and leaves it there): ANP's mask
    # is then learned with running batch-norm statistics instead of the minibatch's.
    "forward_switches_to_eval_mode": (
        "anp_perturb",
        "    return torch.func.functional_call(model, params, (x,))\n",
        "    model.eval()\n"
        "    return torch.func.functional_call(model, params, (x,))\n",
    ),
    # No random start: one signed step from zero.
    "perturbation_starts_at_zero": (
        "anp_perturb",
        "start = torch.rand((2, len(m)), generator=generator).to(m.device) * 2 - 1",
        "start = torch.zeros((2, len(m)), device=m.device)",
    ),
    # Gradient descent: the perturbation lowers the loss.
    "perturbation_descends": (
        "anp_perturb",
        "(t + eps / steps * g.sign())",
        "(t - eps / steps * g.sign())",
    ),
    # The ascent step is never projected back onto [-eps, eps].
    "neuron_perturbation_not_clipped": (
        "anp_perturb",
        "(t + eps / steps * g.sign()).clamp(-eps, eps)",
        "(t + eps / steps * g.sign())",
    ),
    # ---- anp_mask
    # The model itself goes to training mode: its batch-norm statistics drift.
    "mask_learned_on_the_model_itself": (
        "anp_mask",
        "model = copy.deepcopy(model).train()",
        "model = model.train()",
    ),
    # Plain SGD.
    "mask_sgd_without_momentum": (
        "anp_mask",
        "momentum=0.9",
        "momentum=0.0",
    ),
    # One pass over the clean data, then StopIteration.
    "loader_not_restarted": (
        "anp_mask",
        "        try:\n"
        "            xb, yb = next(batches)\n"
        "        except StopIteration:\n"
        "            batches = iter(loader)\n"
        "            xb, yb = next(batches)\n",
        "        xb, yb = next(batches)\n",
    ),
    # alpha weighs the robust loss instead of the natural one.
    "alpha_weights_reversed": (
        "anp_mask",
        "loss = alpha * natural + (1 - alpha) * robust",
        "loss = (1 - alpha) * natural + alpha * robust",
    ),
    # The masks are never clipped to [0, 1] after the optimizer step.
    "mask_not_clipped": (
        "anp_mask",
        "m.clamp_(0, 1)",
        "m.clamp_(-1e9, 1e9)",
    ),
    # ---- anp_prune
    # The model is pruned in place: the defender loses the original model.
    "prunes_in_place": (
        "anp_prune",
        "pruned = copy.deepcopy(model)",
        "pruned = model",
    ),
    # The wrong side of the threshold: the neurons ANP trusts are pruned.
    "prunes_above_the_threshold": (
        "anp_prune",
        "< threshold] = 0",
        "> threshold] = 0",
    ),
    # Bias zeroed too: a pruned neuron outputs 0 instead of its bias.
    "prunes_the_bias_too": (
        "anp_prune",
        "            layers[name].weight[m.to(layers[name].weight.device) < threshold] = 0\n",
        "            pruned_here = m.to(layers[name].weight.device) < threshold\n"
        "            layers[name].weight[pruned_here] = 0\n"
        "            layers[name].bias[pruned_here] = 0\n",
    ),
}

#: Answers that only call (or alias) the package's own implementation of a task. The
#: package's versions refuse to run inside a function defined in the notebook, and the test
#: cells check that each graded name is a notebook function (``assert_own``), so each scores 0.
#: (clean_label and the ANP tasks have no package implementation to wrap: the package's
#: ``pgd`` is a building block the task asks for, and ``fx.perturbed_copy``, also withheld,
#: has no gradients.)
WRAPPERS: dict[str, str] = {
    "triggers": """
def make_bottom_right_trigger(image_shape=(3, 32, 32), size=3):
    return bd.bottom_right_trigger(size=size, image_shape=tuple(image_shape))


def make_four_corner_trigger(image_shape=(3, 32, 32), size=3):
    return bd.four_corner_trigger(size=size, image_shape=tuple(image_shape))


make_gaussian_trigger = lambda image_shape=(3, 32, 32), *, seed=0, alpha=0.2: (
    bd.gaussian_noise_trigger(seed=seed, image_shape=tuple(image_shape), alpha=alpha))
""",
    "stamp": """
stamp = bd.stamp
""",
    "poison_dataset": """
def poison_dataset(x, y, trigger, *, target, rate, eligible="non-target", relabel=True,
                   transform=None, seed=0):
    data = bd.poison_dataset(x, y, trigger, target=target, rate=rate, eligible=eligible,
                             relabel=relabel, transform=transform, seed=seed)
    return data.x, data.y, data.indices
""",
    "attack_success": """
import functools

attack_success_rate = functools.partial(bd.attack_success_rate)
""",
}
