"""Planted bugs of Lab 2: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
"""

BUGS: dict[str, tuple[str, str, str]] = {
    # Cohen's CERTIFY bounds pA with a one-sided (1 - alpha) interval; the two-sided one at
    # the same alpha is a one-sided (1 - alpha/2) bound: smaller radii.
    "two_sided_bound": (
        "certify",
        'proportion_confint(NA, N, alpha=2 * alpha, method="beta")[0]',
        'proportion_confint(NA, N, alpha=alpha, method="beta")[0]',
    ),
    # Estimating pA on the samples that selected the class biases it (and draws no fresh ones).
    "reused_selection_samples": (
        "certify",
        "counts_estimation = self._sample_noise(x, n, batch_size)",
        "counts_estimation = counts_selection",
    ),
    # The radius is sigma * Phi^-1(pA), not Phi^-1(pA).
    "radius_without_sigma": (
        "certify",
        "radius = self.sigma * norm.ppf(pABar)",
        "radius = norm.ppf(pABar)",
    ),
    # Standard-normal noise whatever sigma is.
    "noise_not_scaled": (
        "sample_noise",
        "noise = torch.randn_like(batch) * self.sigma",
        "noise = torch.randn_like(batch)",
    ),
    # PREDICT without its binomial test: returns the top class even on a tie.
    "never_abstains": (
        "predict",
        "        return Smooth.ABSTAIN\n",
        "        return int(top2[0])\n",
    ),
    # Every certified image counts, right or wrong.
    "wrong_predictions_counted": (
        "certified_accuracy",
        "correct = np.asarray(predictions) == np.asarray(labels)",
        "correct = np.asarray(predictions) != -1",
    ),
    # The denoiser is asked to reproduce its noisy input instead of the clean image.
    "mse_target_is_noisy_image": (
        "mse_objective",
        "F.mse_loss(denoiser(noisy), x)",
        "F.mse_loss(denoiser(noisy), noisy)",
    ),
    # The classifier sees the noisy image without the denoiser: nothing trains the denoiser.
    "stability_without_denoiser": (
        "stability_objective",
        "F.cross_entropy(classifier(denoiser(noisy)), targets)",
        "F.cross_entropy(classifier(noisy), targets)",
    ),
}
