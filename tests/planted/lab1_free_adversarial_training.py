"""Planted bugs of Lab 1: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
``REQUIREMENTS`` maps each task to its planted bugs and the requirement (a bullet of the
task's ``**Requirements**`` list, verbatim) each one breaks. ``WRAPPERS`` holds answers that
only call the package: each must score 0 on its task.
"""

EPOCHS = "Run `epochs` epochs, each visiting every minibatch of `loader` once, in the loader's order."
MEAN_CE = ("Train on the clean minibatch and minimise its mean cross-entropy (`F.cross_entropy` "
           "of the model's logits).")
CLEAR = ("Clear the old gradients before each backward pass, so that every step uses the "
         "current minibatch's gradient only.")
ONE_STEP = "Take exactly one optimizer step per minibatch, after one forward and one backward pass."
HISTORY = "Return the `History` that `fit` returns."

DELTA = ("Keep one perturbation `delta` that starts at zero and is carried over from each replay "
         "to the next and from each minibatch to the next.")
SHORT = ("For a shorter minibatch, use (and update) the first `len(x)` rows of `delta`, keeping "
         "the others.")
REPLAYS = "Replay each minibatch `m` times in a row, for `math.ceil(epochs / m)` epochs."
ONE_PASS = ("In each replay, make exactly one forward and one backward pass of the mean "
            "cross-entropy: that backward pass gives both the weight gradient and `g_adv`.")
IMAGE_RANGE = "Feed the model `x + delta` clipped to the image range [0, 1]."
REPLAY_STEP = ("Clear the gradients before each replay's backward pass and take one optimizer "
               "step per replay.")
UPDATE = "After the step, update `delta` to `clip(delta + eps * sign(g_adv), -eps, eps)`."

REQUIREMENTS: dict[str, dict[str, str]] = {
    "standard_train": {
        "one_epoch_short": EPOCHS,
        "softmax_before_cross_entropy": MEAN_CE,
        "no_zero_grad": CLEAR,
        "zero_grad_between_backward_and_step": CLEAR,
        "no_optimizer_step": ONE_STEP,
        "standard_history_not_returned": HISTORY,
    },
    "free_adv_train": {
        "perturbation_reset_every_minibatch": DELTA,
        "random_start": DELTA,
        "perturbation_recreated_for_a_shorter_minibatch": SHORT,
        "one_replay_short": REPLAYS,
        "epochs_not_divided_by_m": REPLAYS,
        "separate_pass_for_the_input_gradient": ONE_PASS,
        "image_not_clipped": IMAGE_RANGE,
        "zero_grad_once_per_minibatch": REPLAY_STEP,
        "descent_step_on_delta": UPDATE,
        "no_clipping": UPDATE,
        "free_history_not_returned": HISTORY,
    },
}

BUGS: dict[str, tuple[str, str, str]] = {
    # ------------------------------------------------------------------ standard_train
    # One epoch too few (an off-by-one in a hand-written epoch loop).
    "one_epoch_short": (
        "standard_train",
        'epochs=epochs, desc="standard"',
        'epochs=epochs - 1, desc="standard"',
    ),
    # Softmax before F.cross_entropy (which applies log-softmax itself): a wrong gradient.
    "softmax_before_cross_entropy": (
        "standard_train",
        "loss = F.cross_entropy(model(x), y)",
        "loss = F.cross_entropy(F.softmax(model(x), dim=1), y)",
    ),
    # Gradients accumulate across minibatches: every step uses the sum of all past gradients.
    "no_zero_grad": (
        "standard_train",
        "        optimizer.zero_grad(set_to_none=True)\n",
        "",
    ),
    # Gradients cleared between the backward pass and the step: the step has nothing to use.
    "zero_grad_between_backward_and_step": (
        "standard_train",
        "        optimizer.zero_grad(set_to_none=True)\n"
        "        loss = F.cross_entropy(model(x), y)\n"
        "        loss.backward()\n",
        "        loss = F.cross_entropy(model(x), y)\n"
        "        loss.backward()\n"
        "        optimizer.zero_grad(set_to_none=True)\n",
    ),
    # Backward passes but no optimizer step: the model never changes.
    "no_optimizer_step": (
        "standard_train",
        "        optimizer.step()\n",
        "",
    ),
    # fit's History is dropped: the function returns None.
    "standard_history_not_returned": (
        "standard_train",
        "    return fit(model, loader, step,",
        "    fit(model, loader, step,",
    ),
    # ------------------------------------------------------------------ free_adv_train
    # The perturbation starts from zero on every minibatch: no warm start (not "free" AT).
    "perturbation_reset_every_minibatch": (
        "free_adv_train",
        "d = delta[: len(x)]",
        "d = torch.zeros_like(x)",
    ),
    # A random start in the eps-ball (as in "fast" adversarial training), not zero.
    "random_start": (
        "free_adv_train",
        "delta = torch.zeros_like(x)",
        "delta = torch.empty_like(x).uniform_(-eps, eps)",
    ),
    # A minibatch of another size gets a fresh zero perturbation (and replaces the old one).
    "perturbation_recreated_for_a_shorter_minibatch": (
        "free_adv_train",
        "if delta is None:",
        "if delta is None or len(delta) != len(x):",
    ),
    # Each minibatch replayed m - 1 times.
    "one_replay_short": (
        "free_adv_train",
        "for _ in range(m):",
        "for _ in range(m - 1):",
    ),
    # The epochs are not divided by m: m times the cost of standard training.
    "epochs_not_divided_by_m": (
        "free_adv_train",
        "epochs=math.ceil(epochs / m)",
        "epochs=epochs",
    ),
    # The input gradient from a second forward/backward pass: not free any more.
    "separate_pass_for_the_input_gradient": (
        "free_adv_train",
        "            loss.backward()  # one backward pass: gradients for the weights and the input\n",
        "            g_adv, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)\n"
        "            loss.backward()\n",
    ),
    # x + delta is not clipped to the image range [0, 1].
    "image_not_clipped": (
        "free_adv_train",
        "x_adv = (x + d).clamp(0, 1).requires_grad_(True)",
        "x_adv = (x + d).requires_grad_(True)",
    ),
    # Gradients cleared once per minibatch: the replays' weight gradients accumulate.
    "zero_grad_once_per_minibatch": (
        "free_adv_train",
        "        for _ in range(m):\n"
        "            optimizer.zero_grad(set_to_none=True)\n",
        "        optimizer.zero_grad(set_to_none=True)\n"
        "        for _ in range(m):\n",
    ),
    # The perturbation descends the loss (the gradient sign the wrong way).
    "descent_step_on_delta": (
        "free_adv_train",
        "d += eps * x_adv.grad.sign()",
        "d -= eps * x_adv.grad.sign()",
    ),
    # The ascent step is never projected back onto the eps-ball.
    "no_clipping": (
        "free_adv_train",
        "                d.clamp_(-eps, eps)  # back into the eps-ball\n",
        "",
    ),
    # fit's History is dropped: the function returns None.
    "free_history_not_returned": (
        "free_adv_train",
        "    return fit(model, loader, step,",
        "    fit(model, loader, step,",
    ),
}

WRAPPERS: dict[str, str] = {
    # An alias of the package's reference: behaves right, but is not the student's function.
    "standard_train": ("from labsupport.checks import free_at as fx\n\n"
                       "standard_train = fx.train_standard_reference\n"),
    # The student's loop around the package's perturbation update.
    "free_adv_train": '''\
from labsupport.checks import free_at as fx


def free_adv_train(model, loader, optimizer, *, epochs, eps, m):
    delta = None

    def step(model, x, y):
        nonlocal delta
        if delta is None:
            delta = torch.zeros_like(x)
        for _ in range(m):
            optimizer.zero_grad(set_to_none=True)
            x_adv = (x + delta[: len(x)]).clamp(0, 1).requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            loss.backward()
            optimizer.step()
            delta[: len(x)] = fx.expected_next_perturbation(delta[: len(x)], x_adv.grad, eps)
        return loss.item()

    return fit(model, loader, step, epochs=math.ceil(epochs / m))
''',
}
