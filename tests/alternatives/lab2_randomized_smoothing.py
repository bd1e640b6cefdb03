"""Independently written correct answers to Lab 2's tasks (task grade_id -> answer cell).

Written in another style than the instructor's: the sampler precomputes its batch sizes,
draws the noise with ``torch.normal`` under ``inference_mode``, counts with NumPy and shows
its own tqdm bar; PREDICT computes the two-sided binomial p-value inline from the binomial
tail; CERTIFY draws its estimation samples *before* the selection samples and computes the
Clopper-Pearson bound inline from the beta quantile; certified accuracy is one broadcast;
the objectives write out the squared error and the NLL of the log-softmax. Each must keep
full marks.
"""

SOLUTIONS: dict[str, str] = {
    "sample_noise": '''\
from tqdm.auto import tqdm


@add_to_class(Smooth)
def _sample_noise(self, x, num, batch_size):
    device = self.device
    image = x.to(device)
    full, rest = divmod(num, batch_size)
    sizes = [batch_size] * full + ([rest] if rest else [])
    votes = np.zeros(self.num_classes, dtype=np.int64)
    with torch.inference_mode():
        for size in tqdm(sizes, desc="noisy batches", leave=False):
            noise = torch.normal(0.0, self.sigma, size=(size, *image.shape), device=device)
            labels = self.base_classifier(image[None] + noise).argmax(1)
            votes += np.bincount(labels.cpu().numpy(), minlength=self.num_classes)
    return votes
''',
    "predict": '''\
@add_to_class(Smooth)
def predict(self, x, n, alpha, batch_size):
    from scipy.stats import binom

    self.base_classifier.eval()
    votes = self._sample_noise(x, n, batch_size)
    ranked = sorted(range(len(votes)), key=lambda c: -int(votes[c]))
    n_a, n_b = int(votes[ranked[0]]), int(votes[ranked[1]]) if len(ranked) > 1 else 0
    # two-sided exact binomial test of n_a successes in n_a + n_b trials at p = 1/2
    p_value = 1.0 if n_a == n_b else min(1.0, 2 * binom.sf(n_a - 1, n_a + n_b, 0.5))
    return ranked[0] if p_value <= alpha else Smooth.ABSTAIN
''',
    "certify": '''\
@add_to_class(Smooth)
def _lower_confidence_bound(self, NA, N, alpha):
    from scipy.stats import beta

    # one-sided Clopper-Pearson: the alpha quantile of Beta(NA, N - NA + 1)
    return 0.0 if NA == 0 else float(beta.ppf(alpha, NA, N - NA + 1))


@add_to_class(Smooth)
def certify(self, x, n0, n, alpha, batch_size):
    self.base_classifier.eval()
    # Estimation samples first, then the selection samples: both are i.i.d. draws, so the
    # order does not matter as long as the two sets are distinct.
    estimation = self._sample_noise(x, n, batch_size)
    selection = self._sample_noise(x, n0, batch_size)
    top = int(np.argmax(selection))
    lower = self._lower_confidence_bound(int(estimation[top]), n, alpha)
    if not lower > 0.5:
        return Smooth.ABSTAIN, 0.0
    return top, float(self.sigma * norm.ppf(lower))
''',
    "certified_accuracy": '''\
def certified_accuracy(predictions, labels, radii, at_radii):
    hit = np.asarray(predictions) == np.asarray(labels)  # abstentions (-1) never match
    thresholds = np.asarray(list(at_radii), dtype=float)
    covered = np.asarray(radii, dtype=float)[None, :] >= thresholds[:, None]
    return (covered & hit[None, :]).sum(axis=1) / float(len(hit))
''',
    "mse_objective": '''\
def mse_objective(denoiser, x, sigma):
    noise = torch.normal(0.0, sigma, size=x.shape, device=x.device)
    reconstruction = denoiser(x + noise)
    return ((reconstruction - x) ** 2).mean()
''',
    "stability_objective": '''\
def stability_objective(denoiser, classifier, x, sigma):
    with torch.no_grad():
        wanted = classifier(x).max(dim=1).indices  # the clean prediction, a hard label
    corrupted = x + sigma * torch.randn(x.shape, device=x.device, dtype=x.dtype)
    log_probs = F.log_softmax(classifier(denoiser(corrupted)), dim=1)
    return F.nll_loss(log_probs, wanted)
''',
}
