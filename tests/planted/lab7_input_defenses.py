"""Planted bugs of Lab 7: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
One bug per requirement: ``REQUIREMENTS`` maps each task to {bug name: the requirement it
breaks}, word for word the bullet under the task's **Requirements** in the notebook
(``tests/course/test_requirements.py`` checks both). ``WRAPPERS`` holds, for every task the
package has an implementation of (the test references in ``labsupport.checks.defenses``), an
answer that only calls the package: it must score 0 on that task.
"""

REQUIREMENTS: dict[str, dict[str, str]] = {
    "spatial_smoothing": {
        "median_is_mean":
            "Each channel of each image is replaced by its `window` x `window` median (the "
            "middle value of the window, not the mean).",
        "mirror_padding":
            "Borders are extended by reflection about the edge, the edge pixel repeated "
            "(`scipy.ndimage.median_filter(mode=\"reflect\")`), not by `F.pad(mode=\"reflect\")`.",
        "even_window_accepted":
            "A `window` that is not an odd positive integer raises a `ValueError` saying so.",
        "not_differentiable":
            "The result has `x`'s shape, dtype and device, `x` is not modified, and gradients "
            "flow through it (computed with torch, on the batch at once).",
    },
    "feature_squeezing": {
        "levels_power_of_two":
            "`squeeze_bits(x, bits)` rounds every value to the nearest of the `2**bits` evenly "
            "spaced levels `0, 1 / (2**bits - 1), ..., 1`.",
        "l2_distance":
            "The score of an image is the L1 distance (sum of absolute differences) between the "
            "model's two outputs.",
        "logits_compared":
            "The outputs compared are probabilities (the softmax of the logits), not logits.",
        "mean_over_squeezers":
            "With several squeezers, the score is the largest of the per-squeezer distances.",
        "threshold_wrong_tail":
            "`detector_threshold(scores_clean, fpr)` returns the smallest clean score such that "
            "at most a fraction `fpr` of the clean scores (`floor(fpr * n)` of `n`) lie strictly "
            "above it.",
    },
    "binary_detector": {
        "max_pooled_features":
            "`BinaryDetector(model, image_shape)` returns `head(features)`, where `features` is "
            "the output of `model.last_conv` averaged over the spatial positions and `head` an "
            "`nn.Linear(channels, 2)` (logit 0: clean, 1: adversarial).",
        "model_not_copied":
            "It never changes `model`: it works on its own copy (`copy.deepcopy`), and `model` "
            "keeps its weights, mode and `requires_grad` flags.",
        "batchnorm_trained":
            "Training changes only the head: the copy's weights and batch-norm statistics stay "
            "as they were (its batch norm stays in evaluation mode while the detector trains).",
        "labels_swapped":
            "`train_detector` trains the head with Adam (learning rate `lr`) on all of `x_clean` "
            "labelled 0 and all of `x_adv` labelled 1 (cross-entropy, `make_loader(..., "
            "shuffle=True, seed=seed)`), for `epochs` passes, and returns the detector in "
            "evaluation mode.",
        "rates_swapped":
            "`detector_rates` returns `{\"detection_rate\": ..., \"false_positive_rate\": ...}`: "
            "the fractions of `x_adv` and of `x_clean` that the detector flags as adversarial.",
    },
    "distill": {
        "soft_labels_without_temperature":
            r"`soft_labels(model, x, T)` returns $\operatorname{softmax}(\text{model}(x) / T)$, "
            "one row per image.",
        "soft_labels_in_training_mode":
            "It evaluates the model in evaluation mode without gradients, and restores the "
            "model's mode afterwards.",
        "trained_at_temperature_one":
            "`train_at_temperature` minimises the cross-entropy between the targets (labels or "
            r"probability rows) and $\operatorname{softmax}(\text{model}(x) / T)$, with Adam at "
            "learning rate `lr`, over `epochs` passes of `make_loader(x, targets, "
            "batch_size=batch_size, shuffle=True, seed=seed)`, and returns the model in "
            "evaluation mode.",
        "teacher_at_temperature_one":
            "`distill` trains the teacher (a new `make_model()`) at temperature `T` on the "
            "labels `y`; a `teacher` that is given is used as it is, not trained.",
        "student_on_hard_labels":
            "The student, a new `make_model()`, is trained at temperature `T` on the teacher's "
            "soft labels at `T`, not on `y`.",
        "student_deployed_at_temperature":
            "The student is deployed at temperature 1: `distill` returns the trained student "
            "model itself, whose logits are used as they are.",
    },
    "adaptive_attacks": {
        "bpda_without_defense":
            "`bpda_attack` classifies the defended image at every step: its loss is the "
            "cross-entropy of `model(defense(x_adv))` with the labels `y`.",
        "bpda_true_gradient":
            "Its backward pass treats `defense` as the identity: the gradient is the loss's "
            "gradient with respect to the defended image, applied to `x_adv` as it is.",
        "alpha_default_wrong":
            "Both attacks start from `x` itself (no random start) and take `steps` steps, each "
            "adding `alpha` times the sign of the gradient (default `alpha = 2.5 * eps / "
            "steps`).",
        "not_projected":
            "After every step the image is projected onto the L-inf ball of radius `eps` around "
            "`x` and clipped to $[0, 1]$; `x` is not modified.",
        "margin_cross_entropy":
            "`margin_attack` ascends the margin on the logits: the largest logit of another "
            "class minus the logit of the true class (no softmax, no cross-entropy).",
        "margin_includes_true_class": "The largest other logit excludes the true class.",
    },
}

BUGS: dict[str, tuple[str, str, str]] = {
    # ---- spatial_smoothing
    # A box filter: the window's mean instead of its median.
    "median_is_mean": (
        "spatial_smoothing",
        ".median(dim=-1).values)",
        ".mean(dim=-1))",
    ),
    # torch's "reflect" is SciPy's "mirror": the edge pixel is not repeated.
    "mirror_padding": (
        "spatial_smoothing",
        "        padded = reflect_pad(chunk, pad)\n",
        "        padded = F.pad(chunk, (pad, pad, pad, pad), mode=\"reflect\")\n",
    ),
    # Even windows slip through (and fail later with a shape error, or shift the image).
    "even_window_accepted": (
        "spatial_smoothing",
        "or window < 1 or window % 2 == 0:",
        "or window < 1:",
    ),
    # Detached: the filter is a dead end for gradients (and for BPDA's forward check).
    "not_differentiable": (
        "spatial_smoothing",
        "        padded = reflect_pad(chunk, pad)\n",
        "        padded = reflect_pad(chunk.detach(), pad)\n",
    ),
    # ---- feature_squeezing
    # 2**bits steps: the top level is 1 - 1/2**bits... and 1 maps beyond it.
    "levels_power_of_two": (
        "feature_squeezing",
        "levels = 2**bits - 1",
        "levels = 2**bits",
    ),
    # The L2 distance between the softmax outputs.
    "l2_distance": (
        "feature_squeezing",
        ".abs().sum(dim=1) for s in squeezers]",
        ".pow(2).sum(dim=1).sqrt() for s in squeezers]",
    ),
    # The logits compared instead of the probabilities.
    "logits_compared": (
        "feature_squeezing",
        "        p = torch.softmax(model(x), dim=1)\n"
        "        gaps = [(p - torch.softmax(model(s(x)), dim=1))",
        "        p = model(x)\n"
        "        gaps = [(p - model(s(x)))",
    ),
    # The mean over the squeezers: a joint detector, not Xu et al.'s max.
    "mean_over_squeezers": (
        "feature_squeezing",
        "torch.stack(gaps).amax(dim=0)",
        "torch.stack(gaps).mean(dim=0)",
    ),
    # The fpr quantile from the bottom: flags 95% of clean images.
    "threshold_wrong_tail": (
        "feature_squeezing",
        "float(ordered[len(ordered) - 1 - allowed])",
        "float(ordered[allowed])",
    ),
    # ---- binary_detector
    # Max-pooled features instead of their spatial average.
    "max_pooled_features": (
        "binary_detector",
        "return self._features.mean(dim=(2, 3))",
        "return self._features.amax(dim=(2, 3))",
    ),
    # No copy: the caller's model is switched to eval mode and frozen.
    "model_not_copied": (
        "binary_detector",
        "self.body = copy.deepcopy(model).eval()",
        "self.body = model.eval()",
    ),
    # The detector's train() reaches the body: batch norm updates its statistics.
    "batchnorm_trained": (
        "binary_detector",
        "        self.body.eval()  # the features are frozen: batch norm keeps its statistics\n",
        "",
    ),
    # Clean images labelled 1, adversarial 0.
    "labels_swapped": (
        "binary_detector",
        "    y = torch.cat([torch.zeros(len(x_clean), dtype=torch.long),\n"
        "                   torch.ones(len(x_adv), dtype=torch.long)])\n",
        "    y = torch.cat([torch.ones(len(x_clean), dtype=torch.long),\n"
        "                   torch.zeros(len(x_adv), dtype=torch.long)])\n",
    ),
    # The false-positive rate counts clean images flagged clean.
    "rates_swapped": (
        "binary_detector",
        '"false_positive_rate": (predict(detector, x_clean) == 1)',
        '"false_positive_rate": (predict(detector, x_clean) == 0)',
    ),
    # ---- distill
    # Soft labels at temperature 1.
    "soft_labels_without_temperature": (
        "distill",
        "torch.softmax(model(xb.to(device)) / T, dim=1)",
        "torch.softmax(model(xb.to(device)), dim=1)",
    ),
    # Labels read with dropout (and batch norm) in training mode.
    "soft_labels_in_training_mode": (
        "distill",
        "    with torch.no_grad(), eval_mode(model):\n        rows",
        "    with torch.no_grad():\n        rows",
    ),
    # The training loss ignores T.
    "trained_at_temperature_one": (
        "distill",
        "loss = F.cross_entropy(model(xb.to(device)) / T, tb.to(device))",
        "loss = F.cross_entropy(model(xb.to(device)), tb.to(device))",
    ),
    # The teacher trained normally: its soft labels at T are almost uniform.
    "teacher_at_temperature_one": (
        "distill",
        "teacher = train_at_temperature(make_model(), x, y, T=T, **settings)",
        "teacher = train_at_temperature(make_model(), x, y, T=1.0, **settings)",
    ),
    # The student learns the hard labels, not the teacher.
    "student_on_hard_labels": (
        "distill",
        "student = train_at_temperature(make_model(), x, targets, T=T, **settings)",
        "student = train_at_temperature(make_model(), x, y, T=T, **settings)",
    ),
    # The student deployed at T: its logits divided by T (no gradient masking to see).
    "student_deployed_at_temperature": (
        "distill",
        "    return teacher, student",
        "    deployed = nn.Sequential(student)\n"
        "    deployed.register_forward_hook(lambda module, inputs, output: output / T)\n"
        "    return teacher, deployed",
    ),
    # ---- adaptive_attacks
    # Plain PGD: the defense is left out of the loss.
    "bpda_without_defense": (
        "adaptive_attacks",
        "loss = F.cross_entropy(model(straight), y)",
        "loss = F.cross_entropy(model(x_adv), y)",
    ),
    # The true gradient through the defense (sparse or zero for the real defenses).
    "bpda_true_gradient": (
        "adaptive_attacks",
        "            with torch.no_grad():\n"
        "                defended = defense(x_adv)\n"
        "            straight = x_adv + (defended - x_adv).detach()\n",
        "            straight = defense(x_adv)\n",
    ),
    # Steps of eps / steps: the attack never reaches the ball's corners by the last step.
    "alpha_default_wrong": (
        "adaptive_attacks",
        "alpha = 2.5 * eps / steps if alpha is None",
        "alpha = eps / steps if alpha is None",
    ),
    # Clipped to [0, 1] only: the perturbation grows past eps.
    "not_projected": (
        "adaptive_attacks",
        "x_adv = torch.min(torch.max(x_adv, x0 - eps), x0 + eps).clamp(0, 1)",
        "x_adv = x_adv.clamp(0, 1)",
    ),
    # Cross-entropy: its gradient vanishes on a saturated (distilled) model.
    "margin_cross_entropy": (
        "adaptive_attacks",
        "loss = (others.amax(dim=1) - true).sum()",
        'loss = F.cross_entropy(logits, y, reduction="sum")',
    ),
    # The max over all classes: zero margin and zero gradient while the image is correct.
    "margin_includes_true_class": (
        "adaptive_attacks",
        'others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))',
        "others = logits",
    ),
}

WRAPPERS: dict[str, str] = {
    "spatial_smoothing": """
def spatial_smoothing(x, window=3):
    return fx.median_reference(x, window)
""",
    "feature_squeezing": """
def squeeze_bits(x, bits):
    return torch.round(x * (2**bits - 1)) / (2**bits - 1)


def feature_squeezing_score(model, x, squeezers):
    return fx.squeezing_reference(model, x, squeezers)


def detector_threshold(scores_clean, fpr=0.05):
    ordered = sorted(float(s) for s in scores_clean)
    return ordered[len(ordered) - 1 - math.floor(fpr * len(ordered) + 1e-9)]
""",
}
