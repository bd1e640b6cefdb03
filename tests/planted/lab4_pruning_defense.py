"""Planted bugs of Lab 4: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
One bug per requirement: ``REQUIREMENTS`` maps each task to {bug name: the requirement it
breaks}, word for word the bullet under the task's **Requirements** in the notebook.
``WRAPPERS`` holds answers that only call (or alias) the package's implementation of a task.
"""

REQUIREMENTS: dict[str, dict[str, str]] = {
    "channel_activations": {
        "activations_before_pooling":
            "It returns one value per channel of `model.last_conv`: the mean, over all images of "
            "`x` and all positions, of the block's output after its ReLU and its max-pooling.",
        "activations_in_training_mode":
            "It evaluates the model in evaluation mode (batch norm with its running statistics) "
            "and leaves the model as it was: same weights, same mode.",
    },
    "prune_channels": {
        "prunes_in_place": "It returns a pruned copy: `model` itself is never changed.",
        "zeroes_the_convolution_only":
            "In the copy, the output of each given channel (after the block's ReLU and pooling) "
            "is exactly 0 for every input, because its batch-norm weight and bias are 0; "
            "nothing else changes.",
    },
    "prune_sweep": {
        "orders_swapped":
            "`order=\"increasing\"` prunes the channels from the least to the most active, "
            "according to your `channel_activations` on `x_valid`, and `order=\"decreasing\"` "
            "from the most to the least active; any other order raises a `ValueError`.",
        "not_cumulative":
            "It prunes one more channel at each step and keeps the earlier ones pruned, and "
            "`accuracy[k]` is the validation accuracy with exactly the first `k` channels of "
            "`order` pruned, for `k` from 0 to the number of channels.",
        "relative_drop":
            "`steps[X]` is the first `k` with `accuracy[0] - accuracy[k] >= X / 100` (a drop of "
            "`X` percentage points, not a relative drop), and `models[X]` the model with those "
            "`k` channels pruned.",
        "full_forward_every_step":
            "The layers before the last block (`model.normalize`, `model.conv1`, `model.conv2`) "
            "see each validation image at most three times during the whole sweep: their output "
            "is computed once and reused at every step.",
        "sweep_modifies_model": "`model` itself is never changed.",
        "saved_models_shared":
            "Each saved model is a copy of its own: pruning more channels afterwards does not "
            "change it.",
    },
    "repaired_net": {
        "detected_class_off_by_one":
            "The argmax of `G(x)` is B's class where B and B′ predict the same class and `N` (the "
            "last of the `N + 1` outputs) where they predict different classes.",
        "models_not_registered":
            "B and B′ are submodules of G (so `G.to(device)`, `G.eval()` and `G.parameters()` "
            "reach them), and G never changes them.",
    },
    "evaluate_repaired": {
        "detected_counts_as_abstention":
            "`clean_accuracy` is the fraction of the clean test images that G classifies as their "
            "label: \"backdoor detected\" on a clean image counts as wrong.",
        "target_class_included":
            "`attack_success` is the fraction of the triggered images whose true label is not "
            "`target` that G classifies as `target` (triggered target-class images are left out).",
        "detection_class_off_by_one":
            "`detection_rate` is the fraction of those same images (triggered, true label not "
            "`target`) that G classifies as `N`, the last of its outputs.",
    },
    "fine_prune": {
        "fine_tunes_in_place": "It returns a fine-tuned copy: `model` itself is never changed.",
        "returned_in_training_mode":
            "It trains in training mode for `epochs` passes over `(x, y)` in minibatches of "
            "`batch_size`, with SGD (learning rate `lr`, momentum 0.9) on the cross-entropy, and "
            "returns the copy in evaluation mode.",
    },
}

BUGS: dict[str, tuple[str, str, str]] = {
    # ---- channel_activations
    # The mean of the ReLU's output, before the pooling (SimpleCNN.features' layer).
    "activations_before_pooling": (
        "channel_activations",
        "out = model.last_conv(h)",
        "out = model.last_conv[:3](h)",
    ),
    # The model stays in the mode it was given: in training mode, batch norm normalises with
    # the batch's statistics (and updates its running statistics).
    "activations_in_training_mode": (
        "channel_activations",
        "    model.eval()\n",
        "    model.train(mode)\n",
    ),
    # ---- prune_channels
    "prunes_in_place": (
        "prune_channels",
        "pruned = copy.deepcopy(model)",
        "pruned = model",
    ),
    # The paper's "zero the weights": the batch norm then outputs a constant, not 0.
    "zeroes_the_convolution_only": (
        "prune_channels",
        "        bn.weight[index] = 0\n        bn.bias[index] = 0\n",
        "        pruned.last_conv[0].weight[index] = 0\n",
    ),
    # ---- prune_sweep
    "orders_swapped": (
        "prune_sweep",
        'descending=(order == "decreasing")',
        'descending=(order == "increasing")',
    ),
    # Each step prunes only its own channel: the earlier ones are restored.
    "not_cumulative": (
        "prune_sweep",
        "        curve.append(accuracy())\n",
        "        curve.append(accuracy())\n"
        "        bn.weight.data.copy_(model.last_conv[1].weight.data)\n"
        "        bn.bias.data.copy_(model.last_conv[1].bias.data)\n",
    ),
    # "X% of the original accuracy" instead of X points.
    "relative_drop": (
        "prune_sweep",
        "curve[0] - curve[-1] >= X / 100",
        "curve[-1] <= curve[0] * (1 - X / 100)",
    ),
    # The same curve, the slow way: the whole network at every step.
    "full_forward_every_step": (
        "prune_sweep",
        "preds = torch.cat([working.classifier(pool(relu(bn(z)))).argmax(1) for z in cached])",
        "preds = torch.cat([working(x_valid[s : s + batch_size].to(device)).argmax(1)\n"
        "                               for s in range(0, len(x_valid), batch_size)])",
    ),
    "sweep_modifies_model": (
        "prune_sweep",
        "working = copy.deepcopy(model).eval()",
        "working = model.eval()",
    ),
    # Every saved "copy" is the working model: in the end, all channels pruned.
    "saved_models_shared": (
        "prune_sweep",
        "steps[X], models[X] = k, copy.deepcopy(working)",
        "steps[X], models[X] = k, working",
    ),
    # ---- repaired_net
    # The seed's "class N + 1" read as 1-based on top of 0-based outputs: the last real class.
    "detected_class_off_by_one": (
        "repaired_net",
        "torch.full_like(ours, n_classes)",
        "torch.full_like(ours, n_classes - 1)",
    ),
    # Stored past nn.Module's registration: G.parameters() and G.eval() miss them.
    "models_not_registered": (
        "repaired_net",
        "        self.B = B\n        self.B_prime = B_prime\n",
        "        self.__dict__.update(B=B, B_prime=B_prime)\n",
    ),
    # ---- evaluate_repaired
    "detected_counts_as_abstention": (
        "evaluate_repaired",
        '"clean_accuracy": (clean == y_test.cpu()).float().mean().item(),',
        '"clean_accuracy": (clean == y_test.cpu())[clean != detected].float().mean().item(),',
    ),
    "target_class_included": (
        "evaluate_repaired",
        "keep = y_bad.cpu() != target",
        "keep = y_bad.cpu() >= 0",
    ),
    "detection_class_off_by_one": (
        "evaluate_repaired",
        "detected = G.eval()(x_test[:1].to(device)).shape[1] - 1",
        "detected = G.eval()(x_test[:1].to(device)).shape[1]",
    ),
    # ---- fine_prune
    "fine_tunes_in_place": (
        "fine_prune",
        "tuned = copy.deepcopy(model).train()",
        "tuned = model.train()",
    ),
    "returned_in_training_mode": (
        "fine_prune",
        "return tuned.eval()",
        "return tuned",
    ),
}

#: Answers that only call (or alias) the package's implementation of a task; each scores 0
#: on it. (No wrapper of channel_activations: prune_sweep calls the student's
#: channel_activations, so a wrapped one would zero prune_sweep as well. prune_sweep,
#: RepairedNet, evaluate_repaired and fine_prune have no package implementation.)
WRAPPERS: dict[str, str] = {
    "prune_channels": """
prune_channels = toolkit.prune_channels
""",
}
