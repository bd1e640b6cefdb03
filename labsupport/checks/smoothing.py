"""Fixtures for Lab 2's test cells (randomized smoothing, denoised smoothing).

Stub base classifiers whose class probabilities are known and that record every query, so a
test can recover exactly which noisy samples a smoothed classifier drew and what they voted;
a probe that records the noisy inputs (to check the noise's distribution); and a tiny
classifier and denoiser for the denoised-smoothing objectives. Everything is tiny, seeded,
and silent.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from ..answers import withheld

IMAGE_SHAPE = (3, 16, 16)


def tiny_image(seed: int = 0, shape: tuple[int, int, int] = IMAGE_SHAPE) -> torch.Tensor:
    """One image (C, H, W) with pixels in [0, 1]."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def tiny_batch(n: int = 32, seed: int = 0,
               shape: tuple[int, int, int] = IMAGE_SHAPE) -> torch.Tensor:
    """``n`` images (N, C, H, W) with pixels in [0, 1]."""
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


class _Recorder(nn.Module):
    """Base of the stubs: a frozen dummy parameter (so ``.parameters()`` and ``.buffers()``
    name a device) and a log of every query."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.batch_sizes: list[int] = []
        self.train_modes: list[bool] = []  # the module's training flag at each query
        self.grad_modes: list[bool] = []  # whether gradients were enabled at each query

    @property
    def queries(self) -> int:
        """How many noisy samples were classified, in total."""
        return sum(self.batch_sizes)

    def _check(self, x: torch.Tensor, shape: Sequence[int] | None) -> None:
        if x.dim() != 4:
            raise AssertionError(f"the base classifier must get a batch (N, C, H, W); it got "
                                 f"a tensor of shape {tuple(x.shape)}.")
        if shape is not None and tuple(x.shape[1:]) != tuple(shape):
            raise AssertionError(f"the base classifier got images of shape "
                                 f"{tuple(x.shape[1:])}; expected {tuple(shape)}.")
        if x.device != self.anchor.device:
            raise AssertionError(f"the batch is on {x.device} but the base classifier is on "
                                 f"{self.anchor.device}: sample on the model's device.")
        self.batch_sizes.append(len(x))
        self.train_modes.append(self.training)
        self.grad_modes.append(torch.is_grad_enabled())


class StubClassifier(_Recorder):
    """A base classifier f whose vote under noise is a known distribution.

    Whatever the input, each sample's class is drawn from ``probs`` (its own seeded
    generator), so ``P(f(x + noise) = c) = probs[c]``. Returns logits (the drawn class gets
    the largest). Every vote is recorded in order: :attr:`votes`. The k-th vote is the same
    however the queries are split into batches (votes are drawn ahead, in fixed chunks), so
    a fixture's counts do not depend on how a solution batches its samples.
    """

    CHUNK = 4096

    def __init__(self, probs: Sequence[float], *, seed: int = 0,
                 image_shape: Sequence[int] | None = IMAGE_SHAPE) -> None:
        super().__init__()
        probs_t = torch.tensor(probs, dtype=torch.float64)
        if probs_t.dim() != 1 or (probs_t < 0).any() or abs(float(probs_t.sum()) - 1) > 1e-9:
            raise ValueError(f"probs must be a probability vector; got {list(probs)}.")
        self.probs = probs_t
        self.num_classes = len(probs_t)
        self.image_shape = image_shape
        self.generator = torch.Generator().manual_seed(seed)
        self._votes: list[torch.Tensor] = []
        self._ahead = torch.zeros(0, dtype=torch.long)  # votes drawn, not yet answered

    def _draw(self, k: int) -> torch.Tensor:
        while len(self._ahead) < k:
            chunk = torch.multinomial(self.probs, self.CHUNK, replacement=True,
                                      generator=self.generator)
            self._ahead = torch.cat([self._ahead, chunk])
        votes, self._ahead = self._ahead[:k], self._ahead[k:]
        self._votes.append(votes)
        return votes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, self.image_shape)
        votes = self._draw(len(x))
        logits = torch.nn.functional.one_hot(votes, self.num_classes).float() * 10.0
        return logits.to(x.device)

    def vote(self, k: int) -> np.ndarray:
        """The stub's next ``k`` votes, recorded as one query of ``k`` samples, without an
        image (its votes never depend on one): what :func:`stub_sampling` counts."""
        self.batch_sizes.append(k)
        self.train_modes.append(self.training)
        self.grad_modes.append(torch.is_grad_enabled())
        return self._draw(k).numpy()

    @property
    def votes(self) -> np.ndarray:
        """Every class the stub answered, in query order."""
        return torch.cat(self._votes).numpy() if self._votes else np.zeros(0, dtype=np.int64)

    def counts(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Vote counts per class over queries ``start:stop``."""
        return np.bincount(self.votes[start:stop], minlength=self.num_classes)


class NoiseProbe(_Recorder):
    """A base classifier that records every input it gets and always answers ``label``."""

    def __init__(self, num_classes: int = 4, label: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.label = label
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, None)
        self.inputs.append(x.detach().cpu().clone())
        logits = torch.zeros(len(x), self.num_classes, device=x.device)
        logits[:, self.label] = 1.0
        return logits

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The noise added to the single image ``x`` in every recorded query, (N, C, H, W)."""
        return torch.cat(self.inputs) - x.detach().cpu().unsqueeze(0)


def _stub_sample_noise(smooth: object, x: torch.Tensor, num: int, batch_size: int) -> np.ndarray:
    """SAMPLEUNDERNOISE's counts for a :class:`StubClassifier`: its next ``num`` votes, in
    queries of at most ``batch_size`` (no image, no noise: a stub's vote ignores both)."""
    stub = smooth.base_classifier  # type: ignore[attr-defined]
    if not isinstance(stub, StubClassifier):
        raise TypeError("stub_sampling works with the StubClassifier fixtures only.")
    counts = np.zeros(smooth.num_classes, dtype=np.int64)  # type: ignore[attr-defined]
    for start in range(0, num, batch_size):
        votes = stub.vote(min(batch_size, num - start))
        counts += np.bincount(votes, minlength=len(counts))
    return counts


@contextmanager
def stub_sampling(cls: type) -> Iterator[None]:
    """Within the block, ``cls._sample_noise`` (a student's SAMPLEUNDERNOISE) is replaced by
    one that counts a :class:`StubClassifier`'s votes, so the tests of PREDICT and CERTIFY
    grade those methods apart from the student's sampling (graded by its own tests).
    Restored afterwards. The replacement samples no noise and works with the stubs only."""
    own = cls.__dict__.get("_sample_noise")
    cls._sample_noise = _stub_sample_noise  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if own is None:
            del cls._sample_noise  # type: ignore[attr-defined]
        else:
            cls._sample_noise = own  # type: ignore[attr-defined]


@withheld("Lab 2, task certify")
def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial
    proportion after ``k`` successes in ``n`` trials: the alpha quantile of Beta(k, n-k+1)
    (0 when k = 0). Computed with scipy's beta distribution, independently of statsmodels."""
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def noise_stats(noise: torch.Tensor) -> dict[str, float]:
    """Mean and standard deviation of all the noise, and the mean per-pixel standard
    deviation *across samples* (0 if every sample got the same noise)."""
    flat = noise.double().flatten(1)
    return {"mean": float(flat.mean()), "std": float(flat.std()),
            "std_across_samples": float(flat.std(dim=0).mean()) if len(flat) > 1 else 0.0}


ABSTAIN = -1


def check_samples(probe: NoiseProbe, x: torch.Tensor, counts: object, *, num: int,
                  batch_size: int, sigma: float) -> None:
    """Assert that ``counts`` and the queries ``probe`` recorded are SAMPLEUNDERNOISE's:
    exactly ``num`` noisy copies of ``x`` classified in batches of at most ``batch_size``
    without gradients; Gaussian noise of mean 0 and standard deviation ``sigma``, fresh
    for every copy, on the raw image (not clipped); the probe's votes counted in a NumPy
    integer array of length ``num_classes``."""
    if not (isinstance(counts, np.ndarray) and np.issubdtype(counts.dtype, np.integer)
            and counts.shape == (probe.num_classes,)):
        raise AssertionError(
            f"return the votes as a NumPy integer array of length num_classes = "
            f"{probe.num_classes}; got {type(counts).__name__} "
            f"{getattr(counts, 'dtype', '')} {tuple(getattr(counts, 'shape', ()))}.")
    if probe.queries != num or max(probe.batch_sizes, default=0) > batch_size:
        raise AssertionError(
            f"classify exactly num = {num} noisy copies in batches of at most batch_size = "
            f"{batch_size}; the base classifier got batches of {probe.batch_sizes}.")
    expected = np.zeros(probe.num_classes, dtype=int)
    expected[probe.label] = num
    if counts.tolist() != expected.tolist():
        raise AssertionError(f"the base classifier voted {probe.label} every time, so the "
                             f"counts are {expected.tolist()}; got {counts.tolist()}.")
    if any(probe.grad_modes):
        raise AssertionError("classify the noisy copies without gradients (torch.no_grad()).")
    noisy = torch.cat(probe.inputs)
    if float(noisy.min()) >= 0 and float(noisy.max()) <= 1:
        raise AssertionError("every noisy copy lies in [0, 1]: add the noise to the raw image "
                             "and do not clip the result.")
    noise = probe.noise(x)
    if len(torch.unique(noise.flatten(1), dim=0)) != len(noise):
        raise AssertionError("some noisy copies share the same noise: draw fresh noise for "
                             "every copy (not one noise image for a batch).")
    stats = noise_stats(noise)
    if abs(stats["std"] / sigma - 1) > 0.04 or abs(stats["mean"]) > 0.04 * sigma:
        raise AssertionError(
            f"the noise should have mean 0 and standard deviation sigma = {sigma}; it has "
            f"mean {stats['mean']:.4f} and standard deviation {stats['std']:.4f}.")
    if abs(stats["std_across_samples"] / sigma - 1) > 0.06:
        raise AssertionError(
            f"each pixel's noise should vary across copies with standard deviation sigma = "
            f"{sigma}; it varies by {stats['std_across_samples']:.4f}: draw fresh noise for "
            f"every copy.")


def _check_eval_mode(stub: _Recorder, what: str) -> None:
    if any(stub.train_modes):
        raise AssertionError(f"{what} must put the base classifier in eval mode "
                             f"(base_classifier.eval()) before sampling.")


@withheld("Lab 2, task predict")
def check_prediction(stub: StubClassifier, prediction: object, *, n: int, alpha: float) -> None:
    """Assert that ``prediction`` is what PREDICT must return given the stub's recorded votes:
    the top class when the two-sided binomial test of the top two counts has p-value
    <= alpha, else ABSTAIN (-1)."""
    if stub.queries != n:
        raise AssertionError(f"predict must classify exactly n = {n} noisy samples; the base "
                             f"classifier answered {stub.queries}.")
    _check_eval_mode(stub, "predict")
    counts = stub.counts()
    order = np.argsort(-counts, kind="stable")
    n_a, n_b = int(counts[order[0]]), int(counts[order[1]]) if len(counts) > 1 else 0
    p_value = binomtest(n_a, n_a + n_b, p=0.5).pvalue
    expected = ABSTAIN if p_value > alpha or n_a == n_b else int(order[0])
    if prediction != expected:
        raise AssertionError(
            f"votes {counts.tolist()}: top two counts {n_a} and {n_b}, two-sided binomial "
            f"p-value {p_value:.3g} vs alpha = {alpha}, so predict should return {expected} "
            f"({'abstain' if expected == ABSTAIN else 'the top class'}); it returned "
            f"{prediction!r}.")


@withheld("Lab 2, task certify")
def expected_certificate(selection: np.ndarray, estimation: np.ndarray, *, sigma: float,
                         alpha: float) -> list[tuple[int, float]]:
    """CERTIFY's answers for given selection and estimation counts (one per tied top class)."""
    n = int(estimation.sum())
    answers = []
    for c_a in np.flatnonzero(selection == selection.max()):
        p_a = clopper_pearson_lower(int(estimation[c_a]), n, alpha)
        answers.append((ABSTAIN, 0.0) if p_a <= 0.5 else (int(c_a), sigma * norm.ppf(p_a)))
    return answers


@withheld("Lab 2, task certify")
def check_certificate(stub: StubClassifier, certificate: object, *, n0: int, n: int,
                      sigma: float, alpha: float) -> None:
    """Assert that ``certificate`` = (class, radius) is what CERTIFY must return given the
    stub's recorded votes: n0 selection samples, then n *fresh* estimation samples; the
    class that won the selection; radius sigma * Phi^-1(pA) with pA the one-sided (1 - alpha)
    Clopper-Pearson lower bound on its estimation count; (ABSTAIN, 0.0) when pA <= 1/2.
    The radius must match to floating-point precision."""
    if not (isinstance(certificate, tuple) and len(certificate) == 2):
        raise AssertionError(f"certify must return a tuple (class, radius); got {certificate!r}.")
    prediction, radius = certificate
    if stub.queries != n0 + n:
        raise AssertionError(
            f"certify must classify n0 = {n0} selection samples and then n = {n} fresh "
            f"estimation samples ({n0 + n} in all); the base classifier answered "
            f"{stub.queries}. Do not reuse the selection samples for the estimate.")
    _check_eval_mode(stub, "certify")
    votes = stub.votes
    counts = [np.bincount(v, minlength=stub.num_classes) for v in
              (votes[:n0], votes[n0:], votes[n:], votes[:n])]
    # the paper's order (selection first); the reverse order is accepted too
    answers = (expected_certificate(counts[0], counts[1], sigma=sigma, alpha=alpha)
               + expected_certificate(counts[2], counts[3], sigma=sigma, alpha=alpha))
    for c_a, r in answers:
        if prediction == c_a and math.isclose(float(radius), r, rel_tol=1e-9, abs_tol=1e-12):
            return
    c_a, r = answers[0]
    n_a = int(counts[1][int(np.argmax(counts[0]))])
    raise AssertionError(
        f"selection votes {counts[0].tolist()}, estimation votes {counts[1].tolist()}: the "
        f"selected class gets n_A = {n_a} of n = {n}; the one-sided (1 - alpha) "
        f"Clopper-Pearson lower bound is pA = {clopper_pearson_lower(n_a, n, alpha):.6f} "
        f"(alpha = {alpha}), so certify should return ({c_a}, {r!r}) (radius sigma * "
        f"Phi^-1(pA), sigma = {sigma}; (-1, 0.0) when pA <= 1/2); it returned "
        f"{certificate!r}.")


# --------------------------------------------------------------------------------------
# Denoised smoothing


class TinyClassifier(nn.Module):
    """A fixed random classifier of 16x16 images into 4 classes (for the objectives' tests)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RecordingDenoiser(nn.Module):
    """A tiny trainable denoiser (x + a 1x1 convolution of x) that records its inputs."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.mix = nn.Conv2d(3, 3, 1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return x + self.mix(x)
