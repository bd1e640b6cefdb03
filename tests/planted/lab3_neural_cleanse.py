"""Planted bugs of Lab 3: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
One bug per requirement: ``REQUIREMENTS`` maps each task to {bug name: the requirement it
breaks}, word for word the bullet under the task's **Requirements** in the notebook.
``WRAPPERS`` holds, for every task the package has an implementation of, an answer that only
calls the package: it must score 0 on that task and leave the others at full marks.
"""

REQUIREMENTS: dict[str, dict[str, str]] = {
    "find_candidate_backdoor": {
        "stamp_reversed":
            r"The candidate image is $(1 - m) \odot x + m \odot p$ with "
            r"$m = \tanh(\theta_m)/2 + 1/2$ and $p = \tanh(\theta_p)/2 + 1/2$, both $\theta$ "
            "starting at zero.",
        "uses_target_images":
            "Only the images whose label is not `target` are used, each once per epoch, in "
            "minibatches of at most `batch_size`.",
        "adam_default_betas":
            "Every minibatch takes one step of Adam (learning rate `lr`, betas 0.5 and 0.9) "
            r"over $\theta_m$ and $\theta_p$ only, on the minibatch's mean cross-entropy "
            r"towards `target` plus the cost times $\lVert m \rVert_1$.",
        "cost_down_not_stronger":
            "The cost starts at `init_cost`; after every epoch, count the epochs in a row whose "
            "attack success reached `attack_threshold` (or did not): after `patience` of them "
            "the cost is multiplied by `cost_multiplier` (or divided by "
            "`cost_multiplier ** 1.5`) and that count restarts.",
        "keeps_last_successful_mask":
            "It returns the mask and pattern of the epoch with the smallest norm among the "
            "epochs whose attack success reached `attack_threshold` (those of the last epoch "
            "if none did).",
        "no_early_stop":
            "It stops early, before changing the cost, once the cost has gone both up and down "
            "and the best norm so far has not fallen below 99% of its previous best for "
            "`early_stop_patience` epochs in a row.",
        "model_in_training_mode":
            "The model is left as it was: evaluation mode, same weights and batch-norm "
            "statistics.",
        "no_enable_grad": "It also works when called inside `torch.no_grad()`.",
    },
    "anomaly_index": {
        "mean_centre": "The centre is the median of the norms, not their mean.",
        "no_consistency_constant": "The spread is the MAD scaled by the consistency constant 1.4826.",
        "signed_index": "It returns one non-negative index per label, in the labels' order.",
        "mad_zero_nan":
            "When the MAD is 0, a norm equal to the median has index 0 and any other norm "
            "index infinity (no NaN, no error).",
    },
    "decide": {
        "index_two_flagged":
            "A model is flagged when its smallest norm lies below its median norm and that "
            "label's anomaly index is strictly above 2.",
        "target_is_largest_index":
            "The suspected target is the label (the position in the list) of the smallest norm.",
        "last_flagged_wins":
            "When several models are flagged, the one whose smallest norm has the largest index "
            "wins.",
        "none_not_returned": "When no model is flagged it returns `(None, None)`.",
    },
    "reversed_attack_success": {
        "counts_target_images": "Only the images whose label is not `target` count.",
        "stamp_reversed_in_asr":
            r"Each is stamped as $(1 - m) \odot x + m \odot p$ before `model` classifies it.",
        "counts_misclassified":
            "The result is the fraction of them that `model` classifies as `target`.",
    },
    "unlearn": {
        "unlearns_in_place": "It returns a fine-tuned copy and never changes `model`.",
        "stamps_the_complement":
            "Exactly `round(fraction * len(x))` of the images, drawn at random without "
            r"replacement (seeded by `seed`), carry the candidate $(1 - m) \odot x + m \odot p$; "
            "the others stay clean.",
        "relabels_stamped_images":
            "Every image keeps its correct label, the stamped ones too.",
        "trains_in_eval_mode":
            "It trains in training mode for `epochs` passes over all the images with SGD "
            "(learning rate `lr`, momentum 0.9) on the cross-entropy.",
    },
}

BUGS: dict[str, tuple[str, str, str]] = {
    # ---- find_candidate_backdoor
    # Mask and pattern swapped roles: the mask selects the image, not the pattern.
    "stamp_reversed": (
        "find_candidate_backdoor",
        "logits = model((1 - mask) * xb + mask * pattern)",
        "logits = model(mask * xb + (1 - mask) * pattern)",
    ),
    # Images of the target class are optimised (and counted) too.
    "uses_target_images": (
        "find_candidate_backdoor",
        "others = x[y != target].to(device)",
        "others = x.to(device)",
    ),
    # Adam's default betas instead of the authors' (0.5, 0.9).
    "adam_default_betas": (
        "find_candidate_backdoor",
        "betas=(0.5, 0.9)",
        "betas=(0.9, 0.999)",
    ),
    # The cost goes down by the same factor it goes up by.
    "cost_down_not_stronger": (
        "find_candidate_backdoor",
        "cost /= cost_multiplier ** 1.5",
        "cost /= cost_multiplier",
    ),
    # The last successful mask, not the smallest one.
    "keeps_last_successful_mask": (
        "find_candidate_backdoor",
        "if success >= attack_threshold and norm < best_norm:",
        "if success >= attack_threshold:",
    ),
    # Never stops early.
    "no_early_stop": (
        "find_candidate_backdoor",
        "and stalled >= early_stop_patience:",
        "and stalled >= early_stop_patience + 10**9:",
    ),
    # Training mode: batch norm updates its statistics from the stamped images.
    "model_in_training_mode": (
        "find_candidate_backdoor",
        "    model.eval()\n",
        "    model.train()\n",
    ),
    # No enable_grad: a caller's torch.no_grad() breaks the optimisation.
    "no_enable_grad": (
        "find_candidate_backdoor",
        "with torch.enable_grad():",
        "if True:",
    ),
    # ---- anomaly_index
    "mean_centre": (
        "anomaly_index",
        "centre = np.median(norms)",
        "centre = np.mean(norms)",
    ),
    "no_consistency_constant": (
        "anomaly_index",
        "spread = 1.4826 * np.median(",
        "spread = 1.0 * np.median(",
    ),
    "signed_index": (
        "anomaly_index",
        "gaps = np.abs(norms - centre)",
        "gaps = norms - centre",
    ),
    "mad_zero_nan": (
        "anomaly_index",
        "    if spread == 0:\n        return np.where(gaps == 0, 0.0, np.inf)\n",
        "",
    ),
    # ---- decide
    "index_two_flagged": (
        "decide",
        "index > strongest",
        "index >= strongest",
    ),
    "target_is_largest_index": (
        "decide",
        "label = int(values.argmin())",
        "label = int(np.asarray(indices[name], dtype=float).argmax())",
    ),
    "last_flagged_wins": (
        "decide",
        "index > strongest",
        "index > 2.0",
    ),
    "none_not_returned": (
        "decide",
        "    return verdict",
        "    return verdict if verdict[0] is not None else None",
    ),
    # ---- reversed_attack_success
    "counts_target_images": (
        "reversed_attack_success",
        "keep = x[y != target]",
        "keep = x",
    ),
    "stamp_reversed_in_asr": (
        "reversed_attack_success",
        "stamped = (1 - mask) * keep + mask * pattern",
        "stamped = mask * keep + (1 - mask) * pattern",
    ),
    "counts_misclassified": (
        "reversed_attack_success",
        "return (predict(model, stamped) == target).float().mean().item()",
        "return (predict(model, stamped) != y[y != target]).float().mean().item()",
    ),
    # ---- unlearn
    "unlearns_in_place": (
        "unlearn",
        "repaired = copy.deepcopy(model)",
        "repaired = model",
    ),
    "stamps_the_complement": (
        "unlearn",
        "chosen = chosen[: round(fraction * len(x))]",
        "chosen = chosen[: round((1 - fraction) * len(x))]",
    ),
    "relabels_stamped_images": (
        "unlearn",
        "    x_mixed[chosen] = (1 - mask) * x[chosen] + mask * pattern\n",
        "    x_mixed[chosen] = (1 - mask) * x[chosen] + mask * pattern\n"
        "    y = y.clone()\n"
        "    y[chosen] = predict(model, x_mixed[chosen])\n",
    ),
    "trains_in_eval_mode": (
        "unlearn",
        "    repaired.train()\n",
        "    repaired.eval()\n",
    ),
}

#: Answers that only call the package's own implementation of a task: each scores 0.
WRAPPERS: dict[str, str] = {
    "find_candidate_backdoor": """
def find_candidate_backdoor(model, target, x, y, **settings):
    return nc.reverse_engineer(model, target, x, y, **settings)
""",
    "anomaly_index": """
def anomaly_index(norms):
    return nc.anomaly_index(norms)
""",
    "decide": """
def decide(norms, indices):
    return nc.decide(norms, indices)
""",
}
