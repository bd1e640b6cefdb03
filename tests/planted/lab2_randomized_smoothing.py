"""Planted bugs of Lab 2: bug name -> (task grade_id, text in that task's solution, replacement).

Each must lose exactly its task's points: every ``test_<task>_*`` cell fails, all others pass.
``REQUIREMENTS`` maps each task to its planted bugs and the requirement (a bullet of the
task's ``**Requirements**`` list, verbatim) each one breaks. ``WRAPPERS`` holds answers that
only call the package: each must score 0 on its task.
"""

# ---------------------------------------------------------------------- the requirements
SAMPLE_COUNT = "Classify exactly `num` noisy copies of `x`, in batches of at most `batch_size`."
SAMPLE_NOISE = ("Add Gaussian noise of mean 0 and standard deviation `sigma` to the raw image, "
                "without clipping the noisy copies to [0, 1] and without changing `x`.")
SAMPLE_FRESH = "Draw fresh noise for every copy, so that no two copies share their noise."
SAMPLE_NO_GRAD = "Classify the copies without gradients (under `torch.no_grad()`)."
SAMPLE_RETURN = "Return the votes per class as a NumPy integer array of length `num_classes`."

EVAL = "Put the base classifier in eval mode before sampling."
PREDICT_TOP_TWO = ("Draw `n` noisy samples and take the two most-voted classes, `cA` (the top "
                   "one) and `cB`.")
PREDICT_TEST = ("Return `cA` only when the two-sided binomial test of `nA` successes in "
                "`nA + nB` trials at p = 0.5 has a p-value of at most `alpha`.")
PREDICT_ABSTAIN = "Otherwise return `Smooth.ABSTAIN`."

CERTIFY_SAMPLES = ("Select `cA` as the top class of `n0` selection samples, then count its votes "
                   "`nA` in `n` fresh estimation samples (never reuse the selection samples).")
CERTIFY_BOUND = ("Bound `pA` from below with the one-sided `(1 - alpha)` Clopper-Pearson bound "
                 "on `nA` successes in `n` trials, computed by `_lower_confidence_bound`.")
CERTIFY_ABSTAIN = ("Abstain, returning `(Smooth.ABSTAIN, 0.0)`, when that lower bound is at "
                   "most 1/2.")
CERTIFY_RADIUS = ("Otherwise return `cA` and the radius `sigma * norm.ppf(pA_lower)`, where "
                  "`pA_lower` is that lower bound.")

ACCURACY_CORRECT = ("Count an image at radius `r` only if its prediction equals its label, so "
                    "that an abstention or a wrong class never counts.")
ACCURACY_RADIUS = "Count it only if its certified radius is at least `r` (`radius >= r`)."
ACCURACY_ALL = "Divide by the number of all images, abstentions included."
ACCURACY_RETURN = "Return a NumPy float array with one value per radius in `at_radii`."

MSE_NOISE = ("Add fresh Gaussian noise of standard deviation `sigma` to a copy of the batch `x`, "
             "leaving `x` unchanged.")
MSE_LOSS = ("Compute the mean squared error between the denoised noisy batch and the clean "
            "batch `x`, averaged over all pixels (`F.mse_loss`).")
MSE_RETURN = "Return it as a scalar tensor whose gradient reaches the denoiser's parameters."

STABILITY_TARGETS = ("Take as targets the classifier's predicted classes (the arg-max of its "
                     "logits) on the clean batch `x`.")
STABILITY_NOISE = "Add fresh Gaussian noise of standard deviation `sigma` to a copy of the batch `x`."
STABILITY_LOSS = ("Return the mean cross-entropy between the classifier's logits on the denoised "
                  "noisy batch and those targets, as a scalar tensor whose gradient reaches the "
                  "denoiser.")

REQUIREMENTS: dict[str, dict[str, str]] = {
    "sample_noise": {
        "batch_size_ignored": SAMPLE_COUNT,
        "last_batch_too_large": SAMPLE_COUNT,
        "noise_not_scaled": SAMPLE_NOISE,
        "noisy_copies_clipped": SAMPLE_NOISE,
        "noise_shared_across_the_batch": SAMPLE_FRESH,
        "gradients_enabled": SAMPLE_NO_GRAD,
        "counts_returned_as_tensor": SAMPLE_RETURN,
    },
    "predict": {
        "predict_without_eval": EVAL,
        "top_two_least_voted": PREDICT_TOP_TWO,
        "binomial_test_against_n": PREDICT_TEST,
        "one_sided_binomial_test": PREDICT_TEST,
        "never_abstains": PREDICT_ABSTAIN,
    },
    "certify": {
        "certify_without_eval": EVAL,
        "reused_selection_samples": CERTIFY_SAMPLES,
        "n0_and_n_swapped": CERTIFY_SAMPLES,
        "two_sided_bound": CERTIFY_BOUND,
        "normal_approximation_bound": CERTIFY_BOUND,
        "abstain_on_point_estimate": CERTIFY_ABSTAIN,
        "radius_without_sigma": CERTIFY_RADIUS,
        "radius_from_point_estimate": CERTIFY_RADIUS,
    },
    "certified_accuracy": {
        "wrong_predictions_counted": ACCURACY_CORRECT,
        "abstentions_counted": ACCURACY_CORRECT,
        "strict_inequality": ACCURACY_RADIUS,
        "mean_over_certified_only": ACCURACY_ALL,
        "returns_a_list": ACCURACY_RETURN,
    },
    "mse_objective": {
        "mse_noise_not_scaled": MSE_NOISE,
        "mse_target_is_noisy_image": MSE_LOSS,
        "mse_summed": MSE_LOSS,
        "mse_returns_a_float": MSE_RETURN,
    },
    "stability_objective": {
        "soft_targets": STABILITY_TARGETS,
        "stability_noise_not_scaled": STABILITY_NOISE,
        "stability_without_denoiser": STABILITY_LOSS,
    },
}

BUGS: dict[str, tuple[str, str, str]] = {
    # ------------------------------------------------------------------ sample_noise
    # Every sample in one forward pass, whatever batch_size says (memory blows up at n = 1e5).
    "batch_size_ignored": (
        "sample_noise",
        "this_batch_size = min(batch_size, remaining)",
        "this_batch_size = remaining",
    ),
    # A full batch every time: the last batch overshoots, more than num samples are counted.
    "last_batch_too_large": (
        "sample_noise",
        "this_batch_size = min(batch_size, remaining)",
        "this_batch_size = batch_size",
    ),
    # Standard-normal noise whatever sigma is.
    "noise_not_scaled": (
        "sample_noise",
        "noise = torch.randn_like(batch) * self.sigma",
        "noise = torch.randn_like(batch)",
    ),
    # The noisy copies are clipped to the image range: not Gaussian noise any more.
    "noisy_copies_clipped": (
        "sample_noise",
        "self.base_classifier(batch + noise)",
        "self.base_classifier((batch + noise).clamp(0, 1))",
    ),
    # One noise image for the whole batch (broadcast): the copies of a batch are identical.
    "noise_shared_across_the_batch": (
        "sample_noise",
        "noise = torch.randn_like(batch) * self.sigma",
        "noise = torch.randn_like(x) * self.sigma",
    ),
    # The forward passes build autograd graphs (memory) for nothing.
    "gradients_enabled": (
        "sample_noise",
        "        with torch.no_grad():\n"
        "            predictions = self.base_classifier(batch + noise).argmax(dim=1)\n",
        "        predictions = self.base_classifier(batch + noise).argmax(dim=1)\n",
    ),
    # A torch tensor, not the NumPy array the other methods index.
    "counts_returned_as_tensor": (
        "sample_noise",
        "return counts.cpu().numpy()",
        "return counts.cpu()",
    ),
    # ------------------------------------------------------------------ predict
    # Batch norm and dropout in training mode while sampling.
    "predict_without_eval": (
        "predict",
        "    self.base_classifier.eval()\n",
        "",
    ),
    # argsort is ascending: the two *least* voted classes.
    "top_two_least_voted": (
        "predict",
        "counts.argsort()[::-1][:2]",
        "counts.argsort()[:2]",
    ),
    # The binomial test of nA out of all n samples, not of nA out of nA + nB.
    "binomial_test_against_n": (
        "predict",
        "binomtest(count1, count1 + count2, p=0.5)",
        "binomtest(count1, n, p=0.5)",
    ),
    # A one-sided test: about half the p-value, so predictions where PREDICT must abstain.
    "one_sided_binomial_test": (
        "predict",
        "binomtest(count1, count1 + count2, p=0.5)",
        'binomtest(count1, count1 + count2, p=0.5, alternative="greater")',
    ),
    # PREDICT without its binomial test: returns the top class even on a tie.
    "never_abstains": (
        "predict",
        "        return Smooth.ABSTAIN\n",
        "        return int(top2[0])\n",
    ),
    # ------------------------------------------------------------------ certify
    "certify_without_eval": (
        "certify",
        "    self.base_classifier.eval()\n",
        "",
    ),
    # Estimating pA on the samples that selected the class biases it (and draws no fresh ones).
    "reused_selection_samples": (
        "certify",
        "counts_estimation = self._sample_noise(x, n, batch_size)",
        "counts_estimation = counts_selection",
    ),
    # n selection samples and n0 estimation samples.
    "n0_and_n_swapped": (
        "certify",
        "counts_selection = self._sample_noise(x, n0, batch_size)\n"
        "    cAHat = int(counts_selection.argmax())\n"
        "    # draw fresh samples to estimate a lower bound on pA\n"
        "    counts_estimation = self._sample_noise(x, n, batch_size)",
        "counts_selection = self._sample_noise(x, n, batch_size)\n"
        "    cAHat = int(counts_selection.argmax())\n"
        "    # draw fresh samples to estimate a lower bound on pA\n"
        "    counts_estimation = self._sample_noise(x, n0, batch_size)",
    ),
    # Cohen's CERTIFY bounds pA with a one-sided (1 - alpha) interval; the two-sided one at
    # the same alpha is a one-sided (1 - alpha/2) bound: smaller radii.
    "two_sided_bound": (
        "certify",
        'proportion_confint(NA, N, alpha=2 * alpha, method="beta")[0]',
        'proportion_confint(NA, N, alpha=alpha, method="beta")[0]',
    ),
    # The normal approximation (Wald interval) instead of Clopper-Pearson's exact bound.
    "normal_approximation_bound": (
        "certify",
        'proportion_confint(NA, N, alpha=2 * alpha, method="beta")[0]',
        'proportion_confint(NA, N, alpha=2 * alpha, method="normal")[0]',
    ),
    # Abstains on the point estimate nA / n, not on the lower bound: negative radii.
    "abstain_on_point_estimate": (
        "certify",
        "if pABar <= 0.5:",
        "if nA / n <= 0.5:",
    ),
    # The radius is sigma * Phi^-1(pA), not Phi^-1(pA).
    "radius_without_sigma": (
        "certify",
        "radius = self.sigma * norm.ppf(pABar)",
        "radius = norm.ppf(pABar)",
    ),
    # The radius from the point estimate nA / n, not from the lower confidence bound.
    "radius_from_point_estimate": (
        "certify",
        "radius = self.sigma * norm.ppf(pABar)",
        "radius = self.sigma * norm.ppf(nA / n)",
    ),
    # ------------------------------------------------------------------ certified_accuracy
    # Every certified image counts, right or wrong.
    "wrong_predictions_counted": (
        "certified_accuracy",
        "correct = np.asarray(predictions) == np.asarray(labels)",
        "correct = np.asarray(predictions) != -1",
    ),
    # An abstention counts as correct (it never claimed a wrong class).
    "abstentions_counted": (
        "certified_accuracy",
        "correct = np.asarray(predictions) == np.asarray(labels)",
        "correct = (np.asarray(predictions) == np.asarray(labels)) | (np.asarray(predictions) == -1)",
    ),
    # radius > r: an image certified exactly at r is left out.
    "strict_inequality": (
        "certified_accuracy",
        "(radii >= r)",
        "(radii > r)",
    ),
    # The fraction of the non-abstaining images, not of all images.
    "mean_over_certified_only": (
        "certified_accuracy",
        "np.mean(correct & (radii >= r))",
        "np.mean((correct & (radii >= r))[np.asarray(predictions) != -1])",
    ),
    # A Python list, not a NumPy array.
    "returns_a_list": (
        "certified_accuracy",
        "return np.array([np.mean(correct & (radii >= r)) for r in at_radii], dtype=float)",
        "return [float(np.mean(correct & (radii >= r))) for r in at_radii]",
    ),
    # ------------------------------------------------------------------ mse_objective
    "mse_noise_not_scaled": (
        "mse_objective",
        "noisy = x + sigma * torch.randn_like(x)",
        "noisy = x + torch.randn_like(x)",
    ),
    # The denoiser is asked to reproduce its noisy input instead of the clean image.
    "mse_target_is_noisy_image": (
        "mse_objective",
        "F.mse_loss(denoiser(noisy), x)",
        "F.mse_loss(denoiser(noisy), noisy)",
    ),
    # Summed over the pixels, not averaged: the scale (and the step size) changes with the batch.
    "mse_summed": (
        "mse_objective",
        "F.mse_loss(denoiser(noisy), x)",
        'F.mse_loss(denoiser(noisy), x, reduction="sum")',
    ),
    # A Python float: nothing to back-propagate.
    "mse_returns_a_float": (
        "mse_objective",
        "return F.mse_loss(denoiser(noisy), x)",
        "return F.mse_loss(denoiser(noisy), x).item()",
    ),
    # ------------------------------------------------------------------ stability_objective
    # The classifier's probabilities as soft targets, not its predicted classes.
    "soft_targets": (
        "stability_objective",
        "targets = classifier(x).argmax(dim=1)",
        "targets = F.softmax(classifier(x), dim=1)",
    ),
    "stability_noise_not_scaled": (
        "stability_objective",
        "noisy = x + sigma * torch.randn_like(x)",
        "noisy = x + torch.randn_like(x)",
    ),
    # The classifier sees the noisy image without the denoiser: nothing trains the denoiser.
    "stability_without_denoiser": (
        "stability_objective",
        "F.cross_entropy(classifier(denoiser(noisy)), targets)",
        "F.cross_entropy(classifier(noisy), targets)",
    ),
}

WRAPPERS: dict[str, str] = {
    # PREDICT by asking the test's reference which answer it expects.
    "predict": '''\
from labsupport.checks.smoothing import check_prediction


@add_to_class(Smooth)
def predict(self, x, n, alpha, batch_size):
    self.base_classifier.eval()
    self._sample_noise(x, n, batch_size)
    for answer in (Smooth.ABSTAIN, *range(self.num_classes)):
        try:
            check_prediction(self.base_classifier, answer, n=n, alpha=alpha)
            return answer
        except AssertionError:
            pass
    return Smooth.ABSTAIN
''',
    # CERTIFY from the package's reference bound and certificate.
    "certify": '''\
from labsupport.checks.smoothing import clopper_pearson_lower, expected_certificate


@add_to_class(Smooth)
def _lower_confidence_bound(self, NA, N, alpha):
    return clopper_pearson_lower(NA, N, alpha)


@add_to_class(Smooth)
def certify(self, x, n0, n, alpha, batch_size):
    self.base_classifier.eval()
    selection = self._sample_noise(x, n0, batch_size)
    estimation = self._sample_noise(x, n, batch_size)
    return expected_certificate(selection, estimation, sigma=self.sigma, alpha=alpha)[0]
''',
}
