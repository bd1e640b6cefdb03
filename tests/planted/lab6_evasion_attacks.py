"""Planted bugs of Lab 6: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
``REQUIREMENTS`` maps each task to its planted bugs and the requirement (a bullet of the
task's ``**Requirements**`` list, verbatim) each one breaks. ``WRAPPERS`` holds answers that
only call the package: each must score 0 on its task.
"""

FGSM_UNTARGETED = ("Untargeted, return `clip(x + eps * sign(grad), 0, 1)` with `grad` the gradient "
                   "of the cross-entropy of the true labels `y` with respect to the input.")
FGSM_TARGETED = ("With `targeted=True`, return `clip(x - eps * sign(grad), 0, 1)` with `grad` the "
                 "gradient of the cross-entropy of the `target` classes.")
FGSM_RANGE = "Keep every pixel of the result in the image range [0, 1]."
FGSM_INPUT = "Leave the input `x` unchanged."

IFGSM_STEPS = ("Take steps of size `step` along the sign of the input gradient of the "
               "cross-entropy of `y`, at most `max_iter` of them per sample.")
IFGSM_PROJECT = ("After each step, project onto the L-inf ball of radius `eps` around the original "
                 "`x`, so that the total perturbation never exceeds `eps`.")
IFGSM_RANGE = "Keep every pixel in the image range [0, 1]."
IFGSM_STOP = ("Stop updating a sample as soon as the model misclassifies it (a sample "
              "misclassified from the start takes no step); the other samples go on.")
IFGSM_RETURN = ("Return the adversarial images and, per sample, the number of steps it took (an "
                "int64 tensor).")

DF_CANDIDATES = ("Rank the classes once, by the model's logits at the original `x`, and use only "
                 "the `num_classes` highest as candidates (the first one is the original label).")
DF_STEP = ("At each iteration, step towards the closest linearised boundary among them: `r_i = "
           "(|f_l| / ||w_l|| + 1e-4) * w_l / ||w_l||`, with `l` minimising `|f_k| / ||w_k||`.")
DF_OVERSHOOT = ("Apply the overshoot as the authors' code does: the iterate is `x + (1 + overshoot) "
                "* r_tot`, clipped to [0, 1], where `r_tot` is the sum of the steps `r_i`.")
DF_STOP = ("Stop each sample as soon as its predicted label differs from the original one, or "
           "after `max_iter` iterations, and return the iterations each sample took (an int64 "
           "tensor).")
DF_BATCH = "Attack the whole batch at once: no Python loop over the samples."

OP_SEARCH = ("Search with `scipy.optimize.differential_evolution` over `pixels` tuples (row, "
             "column, one value per channel), rows in [0, H), columns in [0, W), values in [0, 1].")
OP_APPLY = ("A candidate sets each of its pixels to its values in every channel and leaves all "
            "other pixels unchanged.")
OP_OBJECTIVE = ("Minimise the model's probability of the true class `y`; for an image that no "
                "candidate fools, return the best candidate found.")
OP_VECTORIZED = ("Evaluate the whole population in one batched forward pass per generation "
                 "(`vectorized=True`).")
OP_STOP = ("Stop the search of an image as soon as a candidate makes the model misclassify it, "
           "and return that candidate.")

COUNT = ("Count every image passed to `forward` in `queries` (a batch of n images adds n), "
         "starting from 0.")
COUNT_OUTPUT = ("Return the wrapped model's output unchanged, so that gradients flow through the "
                "wrapper.")
COUNT_RESET = "`reset()` sets `queries` back to 0."

CMP_ACCURACY = ("Return the accuracies `accuracy_a` and `accuracy_b` and their difference "
                "`difference = accuracy_a - accuracy_b`.")
CMP_INTERVAL = ("Return the unpaired interval `difference ± z * sqrt(pa (1 - pa) / n + pb (1 - pb) "
                "/ n)` as `ci_low`, `ci_high`, with `z` the two-sided normal quantile for "
                "`confidence`.")
CMP_DISCORDANT = ("Return the discordant counts `b` (correct under a, wrong under b) and `c` "
                  "(wrong under a, correct under b).")
CMP_MCNEMAR = "Return the p-value of McNemar's exact test on the paired 2x2 table as `p_value`."
CMP_ERRORS = "Raise a `ValueError` when the two outcome vectors are empty or differ in length."

REQUIREMENTS: dict[str, dict[str, str]] = {
    "fgsm": {
        "raw_gradient": FGSM_UNTARGETED,
        "untargeted_descends": FGSM_UNTARGETED,
        "targeted_uses_true_labels": FGSM_TARGETED,
        "targeted_ascends": FGSM_TARGETED,
        "fgsm_not_clipped": FGSM_RANGE,
        "fgsm_modifies_x": FGSM_INPUT,
    },
    "iterative_fgsm": {
        "step_of_size_eps": IFGSM_STEPS,
        "one_step_too_many": IFGSM_STEPS,
        "no_projection": IFGSM_PROJECT,
        "projected_around_the_iterate": IFGSM_PROJECT,
        "ifgsm_not_clipped": IFGSM_RANGE,
        "no_early_stop": IFGSM_STOP,
        "steps_counted_for_all": IFGSM_RETURN,
    },
    "deepfool": {
        "all_classes_as_candidates": DF_CANDIDATES,
        "farthest_boundary": DF_STEP,
        "step_not_normalised": DF_STEP,
        "no_overshoot": DF_OVERSHOOT,
        "overshoot_on_the_last_step_only": DF_OVERSHOOT,
        "deepfool_not_clipped": DF_OVERSHOOT,
        "deepfool_no_early_stop": DF_STOP,
        "iterations_counted_for_all": DF_STOP,
        "loop_over_samples": DF_BATCH,
    },
    "one_pixel": {
        "rows_bound_columns": OP_SEARCH,
        "first_channel_only": OP_APPLY,
        "pixel_added_not_set": OP_APPLY,
        "maximises_true_class": OP_OBJECTIVE,
        "one_candidate_at_a_time": OP_VECTORIZED,
        "no_early_stop_in_the_search": OP_STOP,
    },
    "counting_model": {
        "counts_calls": COUNT,
        "output_detached": COUNT_OUTPUT,
        "reset_keeps_the_count": COUNT_RESET,
    },
    "compare": {
        "difference_reversed": CMP_ACCURACY,
        "z_fixed_at_95": CMP_INTERVAL,
        "one_sided_quantile": CMP_INTERVAL,
        "discordant_swapped": CMP_DISCORDANT,
        "chi_square_approximation": CMP_MCNEMAR,
        "unpaired_table": CMP_MCNEMAR,
        "no_length_check": CMP_ERRORS,
    },
}

BUGS: dict[str, tuple[str, str, str]] = {
    # ------------------------------------------------------------------ fgsm
    # The raw gradient instead of its sign: not an L-inf step of size eps.
    "raw_gradient": (
        "fgsm",
        "direction = -input_grad.sign() if targeted else input_grad.sign()",
        "direction = -input_grad if targeted else input_grad",
    ),
    # The untargeted attack descends the loss of the true label (makes the model surer).
    "untargeted_descends": (
        "fgsm",
        "direction = -input_grad.sign() if targeted else input_grad.sign()",
        "direction = -input_grad.sign()",
    ),
    # The targeted attack differentiates the loss of the true labels.
    "targeted_uses_true_labels": (
        "fgsm",
        "labels = target if targeted else y",
        "labels = y",
    ),
    # The targeted attack ascends the target's loss (moves away from the target).
    "targeted_ascends": (
        "fgsm",
        "direction = -input_grad.sign() if targeted else input_grad.sign()",
        "direction = input_grad.sign()",
    ),
    # No clipping to [0, 1].
    "fgsm_not_clipped": (
        "fgsm",
        "return (x.detach() + eps * direction).clamp(0, 1)",
        "return x.detach() + eps * direction",
    ),
    # The step is added to x in place (detach shares x's storage).
    "fgsm_modifies_x": (
        "fgsm",
        "return (x.detach() + eps * direction).clamp(0, 1)",
        "return x.detach().add_(eps * direction).clamp_(0, 1)",
    ),
    # ------------------------------------------------------------------ iterative_fgsm
    # Every step has the whole budget's size.
    "step_of_size_eps": (
        "iterative_fgsm",
        "x_next = x_now + step * input_grad.sign()",
        "x_next = x_now + eps * input_grad.sign()",
    ),
    # One iteration more than max_iter.
    "one_step_too_many": (
        "iterative_fgsm",
        "    for _ in range(max_iter):",
        "    for _ in range(max_iter + 1):",
    ),
    # Never projected: the perturbation grows past eps.
    "no_projection": (
        "iterative_fgsm",
        "        x_next = torch.min(torch.max(x_next, origin - eps), origin + eps)  # into the eps-ball\n",
        "",
    ),
    # Projected onto the ball around the current iterate: a moving ball, no total budget.
    "projected_around_the_iterate": (
        "iterative_fgsm",
        "        origin = x[active]\n",
        "        origin = x_now\n",
    ),
    # Not clipped to the image range.
    "ifgsm_not_clipped": (
        "iterative_fgsm",
        "x_adv[active] = x_next.clamp(0, 1)",
        "x_adv[active] = x_next",
    ),
    # Every sample runs all max_iter steps (no early stop).
    "no_early_stop": (
        "iterative_fgsm",
        "keep = logits.argmax(1) == y[active]  # early stop: the others are fooled already",
        "keep = torch.ones(len(active), dtype=torch.bool, device=x.device)",
    ),
    # The iteration counts grow for every sample, stopped or not.
    "steps_counted_for_all": (
        "iterative_fgsm",
        "        iterations[active] += 1\n",
        "        iterations += 1\n",
    ),
    # ------------------------------------------------------------------ deepfool
    # Every class is a candidate, whatever num_classes says.
    "all_classes_as_candidates": (
        "deepfool",
        "candidates = model(x).argsort(dim=1, descending=True)[:, :num_classes]",
        "candidates = model(x).argsort(dim=1, descending=True)",
    ),
    # Towards the farthest linearised boundary.
    "farthest_boundary": (
        "deepfool",
        "closest = distance.argmin(dim=1)",
        "closest = distance.argmax(dim=1)",
    ),
    # The step is (distance + 1e-4) * w, not along the unit vector w / ||w||.
    "step_not_normalised": (
        "deepfool",
        "r_i = (d_l + 1e-4)[:, None] * w_l / w_l.norm(dim=1, keepdim=True)",
        "r_i = (d_l + 1e-4)[:, None] * w_l",
    ),
    # No overshoot: the iterate sits on the boundary.
    "no_overshoot": (
        "deepfool",
        "x_adv[active] = (x[active] + (1 + overshoot) * r_tot[active]).clamp(0, 1)",
        "x_adv[active] = (x[active] + r_tot[active]).clamp(0, 1)",
    ),
    # The overshoot scales only the latest step, not the total perturbation.
    "overshoot_on_the_last_step_only": (
        "deepfool",
        "x_adv[active] = (x[active] + (1 + overshoot) * r_tot[active]).clamp(0, 1)",
        "x_adv[active] = (x[active] + r_tot[active] + overshoot * r_i.view_as(x[active]))"
        ".clamp(0, 1)",
    ),
    # Not clipped to [0, 1].
    "deepfool_not_clipped": (
        "deepfool",
        "x_adv[active] = (x[active] + (1 + overshoot) * r_tot[active]).clamp(0, 1)",
        "x_adv[active] = x[active] + (1 + overshoot) * r_tot[active]",
    ),
    # Samples whose label changed keep stepping until all have changed (or max_iter).
    "deepfool_no_early_stop": (
        "deepfool",
        "        active, chosen, grads = active[keep], chosen.detach()[keep], grads[keep]\n",
        "        chosen = chosen.detach()\n",
    ),
    # The iteration counts grow for every sample.
    "iterations_counted_for_all": (
        "deepfool",
        "        iterations[active] += 1\n",
        "        iterations += 1\n",
    ),
    # One image at a time: a Python loop over the samples (what torchattacks does).
    "loop_over_samples": (
        "deepfool",
        "    x = x.detach()\n    with torch.no_grad():\n        candidates",
        "    x = x.detach()\n"
        "    if len(x) > 1:\n"
        "        parts = [deepfool(model, x[i : i + 1], num_classes, overshoot, max_iter)"
        " for i in range(len(x))]\n"
        "        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])\n"
        "    with torch.no_grad():\n        candidates",
    ),
    # ------------------------------------------------------------------ one_pixel
    # Columns searched in [0, H): pixels right of column H are never tried.
    "rows_bound_columns": (
        "one_pixel",
        "bounds = ([(0, height), (0, width)] + [(0, 1)] * channels) * pixels",
        "bounds = ([(0, height), (0, height)] + [(0, 1)] * channels) * pixels",
    ),
    # Only the first channel of the pixel is set.
    "first_channel_only": (
        "one_pixel",
        "batch[members, :, rows, cols] = genes[..., 2:]",
        "batch[members, 0, rows, cols] = genes[..., 2]",
    ),
    # The candidate's value is added to the pixel instead of replacing it.
    "pixel_added_not_set": (
        "one_pixel",
        "batch[members, :, rows, cols] = genes[..., 2:]",
        "batch[members, :, rows, cols] = (batch[members, :, rows, cols] + genes[..., 2:]).clamp(0, 1)",
    ),
    # Maximises the true class's probability.
    "maximises_true_class": (
        "one_pixel",
        "return probs[:, label].cpu().numpy()",
        "return -probs[:, label].cpu().numpy()",
    ),
    # One forward pass per candidate (no vectorization).
    "one_candidate_at_a_time": (
        "one_pixel",
        "                probs = F.softmax(model(apply(population)), dim=1)\n",
        "                probs = torch.cat([F.softmax(model(apply(member[:, None])), dim=1)\n"
        "                                   for member in np.asarray(population).T])\n",
    ),
    # The search runs all generations even after a candidate fooled the model.
    "no_early_stop_in_the_search": (
        "one_pixel",
        "callback=lambda xk, convergence, fooling=fooling: bool(fooling))",
        "callback=None)",
    ),
    # ------------------------------------------------------------------ counting_model
    # Counts forward calls, not images.
    "counts_calls": (
        "counting_model",
        "self.queries += x.shape[0]",
        "self.queries += 1",
    ),
    # The output is detached: no gradient flows through the wrapper.
    "output_detached": (
        "counting_model",
        "return self.model(x)",
        "return self.model(x).detach()",
    ),
    # reset() does nothing.
    "reset_keeps_the_count": (
        "counting_model",
        '        """Start counting from zero again."""\n        self.queries = 0',
        '        """Start counting from zero again."""',
    ),
    # ------------------------------------------------------------------ compare
    "difference_reversed": (
        "compare",
        '"difference": float(pa - pb)',
        '"difference": float(pb - pa)',
    ),
    # 1.96 whatever the confidence.
    "z_fixed_at_95": (
        "compare",
        "z = norm.ppf(1 - (1 - confidence) / 2)  # two-sided: 1.96 at 95%",
        "z = 1.96",
    ),
    # The one-sided quantile (1.645 at 95%).
    "one_sided_quantile": (
        "compare",
        "z = norm.ppf(1 - (1 - confidence) / 2)  # two-sided: 1.96 at 95%",
        "z = norm.ppf(confidence)",
    ),
    "discordant_swapped": (
        "compare",
        '"b": table[0][1], "c": table[1][0]',
        '"b": table[1][0], "c": table[0][1]',
    ),
    # McNemar's chi-square approximation instead of the exact test.
    "chi_square_approximation": (
        "compare",
        "paired = mcnemar(table, exact=True)",
        "paired = mcnemar(table, exact=False)",
    ),
    # The test on the marginal counts (correct/wrong per attack), as if unpaired.
    "unpaired_table": (
        "compare",
        "paired = mcnemar(table, exact=True)",
        "paired = mcnemar([[int(a.sum()), int((~a).sum())], [int(b.sum()), int((~b).sum())]], "
        "exact=True)",
    ),
    # No check: one outcome broadcasts against many, and no outcomes give NaN.
    "no_length_check": (
        "compare",
        "    if len(a) != len(b) or len(a) == 0:\n",
        "    if False:\n",
    ),
}

WRAPPERS: dict[str, str] = {
    # The package's FGSM (withheld: it refuses to run inside the student's function).
    "fgsm": '''\
from labsupport.attacks import fgsm as package_fgsm


def fgsm(model, x, y, eps, targeted=False, target=None):
    return package_fgsm(model, x, target if targeted else y, eps=eps, targeted=targeted)
''',
    "iterative_fgsm": '''\
from labsupport.checks import evasion as fx


def iterative_fgsm(model, x, y, eps, step, max_iter):
    return fx.ifgsm_reference(model, x, y, eps, step, max_iter)
''',
    "deepfool": '''\
from labsupport.checks import evasion as fx


def deepfool(model, x, num_classes, overshoot=0.02, max_iter=50):
    return fx.deepfool_reference(model, x, num_classes, overshoot, max_iter)
''',
    "compare": '''\
from labsupport.checks import evasion as fx


def compare(correct_a, correct_b, confidence=0.95):
    return fx.compare_reference(correct_a, correct_b, confidence)
''',
}
