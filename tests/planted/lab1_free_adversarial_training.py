"""Planted bugs of Lab 1: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
"""

BUGS: dict[str, tuple[str, str, str]] = {
    # Gradients accumulate across minibatches: every step uses the sum of all past gradients.
    "no_zero_grad": (
        "standard_train",
        "optimizer.zero_grad(set_to_none=True)\n",
        "",
    ),
    # The perturbation starts from zero on every minibatch: no warm start (not "free" AT).
    "perturbation_reset_every_minibatch": (
        "free_adv_train",
        "d = delta[: len(x)]",
        "d = torch.zeros_like(x)",
    ),
    # The ascent step is never projected back onto the eps-ball.
    "no_clipping": (
        "free_adv_train",
        "                d.clamp_(-eps, eps)  # back into the eps-ball\n",
        "",
    ),
}
