"""Planted bugs of Lab 5: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
"""

BUGS: dict[str, tuple[str, str, str]] = {
    # The BadNets patch lands in the top-left corner instead of the bottom-right one.
    "trigger_in_wrong_corner": (
        "triggers",
        "mask[:, h - size :, w - size :] = 1",
        "mask[:, :size, :size] = 1",
    ),
    # Under a transparent trigger the image itself disappears (only alpha * pattern is kept).
    "stamp_drops_the_image_under_the_trigger": (
        "stamp",
        "m * ((1 - a) * x + a * p)",
        "m * (a * p)",
    ),
    # Every sample is eligible: target-class images get "poisoned" (and relabelled) too.
    "poisons_target_class_samples": (
        "poison_dataset",
        "candidates = torch.nonzero(y != target).flatten()",
        "candidates = torch.arange(len(y))",
    ),
    # Target-class test images are counted: a free success for each of them.
    "attack_success_counts_the_target_class": (
        "attack_success",
        "keep = y != target",
        "keep = torch.ones_like(y, dtype=torch.bool)",
    ),
    # Each restart starts from the previous restart's result: perturbations add up past eps.
    "restarts_accumulate_perturbations": (
        "clean_label",
        "candidate = pgd(model, x[todo], y[todo],",
        "candidate = pgd(model, x_adv[todo], y[todo],",
    ),
    # The ascent step is never projected back onto [-eps, eps].
    "neuron_perturbation_not_clipped": (
        "anp_perturb",
        "(t + eps / steps * g.sign()).clamp(-eps, eps)",
        "(t + eps / steps * g.sign())",
    ),
    # The masks are never clipped to [0, 1] after the optimizer step.
    "mask_not_clipped": (
        "anp_mask",
        "m.clamp_(0, 1)",
        "m.clamp_(-1e9, 1e9)",
    ),
    # The model is pruned in place: the defender loses the original model.
    "prunes_in_place": (
        "anp_prune",
        "pruned = copy.deepcopy(model)",
        "pruned = model",
    ),
}
