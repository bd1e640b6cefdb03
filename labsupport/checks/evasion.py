"""Fixtures for Lab 6's test cells (evasion attacks compared).

Everything is tiny (6x6 or non-square images, a handful of samples, models of a few hundred
weights), seeded and silent, so a test cell runs in about a second. The fixtures:

- :func:`images`, :func:`mlp`, :func:`linear`: data and small classifiers (a ReLU network, an
  affine one whose DeepFool step is known in closed form), :func:`labelled` labels images by
  a model's own predictions so every image starts correctly classified.
- :class:`QueryCounter`: counts the forward calls and the images a model is asked about
  (independent of the student's ``CountingModel``).
- :class:`PixelModel`: a classifier fooled exactly when one given pixel (all its channels)
  is set bright, which one-pixel attacks must find; :func:`pixel_data` holds its images.
- References, transliterated from the papers and the authors' code, one sample at a time:
  :func:`ifgsm_reference`, :func:`deepfool_reference`, :func:`compare_reference`. They answer
  Lab 6's tasks, so they are :func:`labsupport.answers.withheld`: test cells call them at their
  top level; a student's function cannot.
- :func:`silent` (from :mod:`.common`) wraps the calls of a student's code in a test cell.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..answers import withheld
from .common import assert_close as _assert_close
from .common import quiet, silent

__all__ = [
    "PixelModel", "QueryCounter", "assert_close", "compare_reference", "deepfool_reference",
    "ifgsm_reference", "images", "labelled", "linear", "mlp", "pixel_data", "quiet",
    "silent",
]

#: The fixtures' default image shape: small, grey-scale, not the labs' 28x28 or 32x32.
SHAPE = (1, 6, 6)


def assert_close(actual, expected, what: str, *, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Assert two tensors agree (:func:`.common.assert_close`, ``what`` positional)."""
    _assert_close(actual, expected, what=what, rtol=rtol, atol=atol)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, *, shape: tuple[int, ...] = SHAPE, low: float = 0.2, high: float = 0.8,
           seed: int = 0) -> torch.Tensor:
    """``n`` uniform random images in ``[low, high]``."""
    return low + (high - low) * torch.rand((n, *shape), generator=_generator(seed))


def _seeded(build, seed: int) -> nn.Module:
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build().eval()
    finally:
        torch.random.set_rng_state(state)


def mlp(num_classes: int = 4, *, shape: tuple[int, ...] = SHAPE, hidden: int = 24,
        seed: int = 0, scale: float = 3.0) -> nn.Module:
    """A seeded ReLU network (flatten, linear, ReLU, linear), weights scaled by ``scale``."""
    def build() -> nn.Module:
        model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.ReLU(),
                              nn.Linear(hidden, num_classes))
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
        return model

    return _seeded(build, seed)


def linear(num_classes: int = 4, *, shape: tuple[int, ...] = SHAPE, seed: int = 0,
           scale: float = 1.0) -> nn.Module:
    """A seeded affine classifier ``W x + b`` (DeepFool's linearisation is exact on it)."""
    def build() -> nn.Module:
        model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), num_classes))
        with torch.no_grad():
            model[1].weight.mul_(scale)
        return model

    return _seeded(build, seed)


@torch.no_grad()
def labelled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own predictions on ``x`` (so every image starts correctly classified)."""
    return model(x).argmax(1)


class QueryCounter(nn.Module):
    """Wraps a model; counts forward calls (``calls``) and images (``images``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.images = 0
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += int(x.shape[0])
        self.batch_sizes.append(int(x.shape[0]))
        return self.model(x)


class PixelModel(nn.Module):
    """Two classes: class 1 wins exactly when pixel ``(row, col)`` is bright (above
    ``threshold``) in *every* channel; the logit margin of class 0 falls smoothly as that
    pixel's least bright channel rises, and no other pixel matters. With ``dark=True`` it is
    the other way round: class 1 wins when the pixel is darker than ``threshold`` in every
    channel."""

    def __init__(self, row: int, col: int, *, threshold: float = 0.6,
                 sharpness: float = 10.0, dark: bool = False) -> None:
        super().__init__()
        self.row, self.col, self.threshold, self.sharpness = row, col, threshold, sharpness
        self.dark = dark

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixel = x[:, :, self.row, self.col]
        if self.dark:
            margin = self.sharpness * (pixel.max(dim=1).values - self.threshold)
        else:
            margin = self.sharpness * (self.threshold - pixel.min(dim=1).values)
        return torch.stack([margin, -margin], dim=1)


def pixel_data(n: int = 3, *, shape: tuple[int, ...] = (1, 5, 9), row: int = 3, col: int = 7,
               seed: int = 0) -> tuple[PixelModel, torch.Tensor, torch.Tensor]:
    """A :class:`PixelModel` whose sensitive pixel lies at ``(row, col)``, ``n`` dark images
    (all pixels below 0.5, so class 0) and their labels (zeros)."""
    x = images(n, shape=shape, low=0.0, high=0.5, seed=seed)
    return PixelModel(row, col), x, torch.zeros(n, dtype=torch.long)


# --------------------------------------------------------------------------------------
# References (one sample at a time, as in the papers' pseudocode and the authors' code)


def _input_gradient(model: nn.Module, image: torch.Tensor, label: int) -> tuple[torch.Tensor,
                                                                                 int]:
    """Gradient of the cross-entropy of ``label`` at one image, and the predicted class."""
    point = image.unsqueeze(0).clone().requires_grad_(True)
    scores = model(point)
    F.cross_entropy(scores, torch.tensor([label])).backward()
    return point.grad[0], int(scores.argmax())


@withheld("Lab 6, task iterative_fgsm")
def ifgsm_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                    step: float, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterative FGSM (Kurakin et al. 2017) image by image, each stopped once misclassified:
    ``x_{t+1} = clip_[0,1](clip_{x, eps}(x_t + step * sign(grad)))``; returns the images and
    the steps each took."""
    outputs, steps = [], []
    for image, label in zip(x, y.tolist(), strict=True):
        current, taken = image.clone(), 0
        while taken < max_iter:
            grad, predicted = _input_gradient(model, current, label)
            if predicted != label:
                break
            moved = current + step * grad.sign()
            moved = torch.maximum(torch.minimum(moved, image + eps), image - eps)
            current = moved.clamp(0.0, 1.0).detach()
            taken += 1
        outputs.append(current)
        steps.append(taken)
    return torch.stack(outputs), torch.tensor(steps, dtype=torch.long)


@withheld("Lab 6, task deepfool")
def deepfool_reference(model: nn.Module, x: torch.Tensor, num_classes: int,
                       overshoot: float = 0.02, max_iter: int = 50
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool (Moosavi-Dezfooli et al. 2016, Algorithm 2) transliterated from the authors'
    ``deepfool.py``, one image at a time, with the iterate clipped to [0, 1]; returns the
    images and the iterations each took."""
    outputs, counts = [], []
    for image in x:
        with torch.no_grad():
            ranked = model(image[None]).flatten().argsort(descending=True)[:num_classes]
        label = int(ranked[0])
        r_tot = torch.zeros_like(image)
        point = image.clone()
        loops = 0
        while loops < max_iter:
            var = point[None].clone().requires_grad_(True)
            fs = model(var)[0]
            if int(fs.argmax()) != label:
                break
            grads = [torch.autograd.grad(fs[int(k)], var, retain_graph=True)[0][0]
                     for k in ranked]
            best, w = math.inf, None
            for k in range(1, len(ranked)):
                w_k = grads[k] - grads[0]
                f_k = float((fs[int(ranked[k])] - fs[label]).detach())
                pert_k = abs(f_k) / float(w_k.norm().detach())
                if pert_k < best:
                    best, w = pert_k, w_k
            r_i = (best + 1e-4) * w / w.norm()
            r_tot = r_tot + r_i
            point = (image + (1 + overshoot) * r_tot).clamp(0.0, 1.0).detach()
            loops += 1
        outputs.append(point)
        counts.append(loops)
    return torch.stack(outputs), torch.tensor(counts, dtype=torch.long)


@withheld("Lab 6, task compare")
def compare_reference(correct_a, correct_b, confidence: float = 0.95) -> dict[str, float]:
    """The expected answer of ``compare``: accuracies, their difference with the unpaired
    Wald interval, the discordant counts and McNemar's exact p-value."""
    from scipy.stats import binomtest, norm

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    n = a.size
    first, second = float(a.mean()), float(b.mean())
    gap = first - second
    z = norm.ppf(0.5 + confidence / 2)
    half = z * math.sqrt((first * (1 - first) + second * (1 - second)) / n)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    # McNemar's exact test is the two-sided binomial test of the discordant pairs at 1/2.
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return dict(accuracy_a=first, accuracy_b=second, difference=gap, ci_low=gap - half,
                ci_high=gap + half, b=only_a, c=only_b, p_value=float(p))


def outcomes(n: int, *, accuracy_a: float, accuracy_b: float, agreement: float,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paired 0/1 outcomes of two attacks on ``n`` images: ``b`` copies ``a`` on about an
    ``agreement`` share of the images and is drawn independently on the rest."""
    rng = np.random.default_rng(seed)
    a = rng.random(n) < accuracy_a
    b = np.where(rng.random(n) < agreement, a, rng.random(n) < accuracy_b)
    return a, b


# --------------------------------------------------------------------------------------
# Checks: each runs a student's function on fixtures and compares with the references.
# Visible and hidden test cells call them with different fixtures (seeds, shapes, classes).


def _unchanged(x: torch.Tensor, before: torch.Tensor, name: str) -> None:
    assert torch.equal(x, before), f"{name} changed its input x"


def _in_range(x: torch.Tensor, name: str) -> None:
    assert x.min() >= 0 and x.max() <= 1, (
        f"{name}'s result leaves the image range [0, 1] (values in [{float(x.min()):.3f}, "
        f"{float(x.max()):.3f}])")


def check_fgsm(fgsm, *, seed: int = 0, shape: tuple[int, ...] = SHAPE, classes: int = 4,
               n: int = 10, eps: float = 0.15) -> None:
    """fgsm against the package's FGSM (withheld; called here, not from the student's code)
    on images spanning [0, 1] (so clipping matters), untargeted and targeted."""
    from ..attacks import fgsm as reference

    model = mlp(classes, shape=shape, seed=seed)
    x = images(n, shape=shape, low=0.0, high=1.0, seed=seed + 1)
    y = labelled(model, x)
    target = (y + 1) % classes
    for targeted in (False, True):
        before = x.clone()
        with silent():
            got = fgsm(model, x, y, eps, targeted=targeted, target=target if targeted else None)
        what = f"fgsm(model, x, y, {eps}{', targeted=True, target=(y + 1) % C' if targeted else ''})"
        _unchanged(x, before, "fgsm")
        assert isinstance(got, torch.Tensor) and got.shape == x.shape, (
            f"{what} must return a tensor shaped like x {tuple(x.shape)}")
        _in_range(got, "fgsm")
        expected = reference(model, x, target if targeted else y, eps=eps, targeted=targeted)
        assert_close(got, expected, what)


def check_iterative_fgsm(iterative_fgsm, *, seed: int = 0, shape: tuple[int, ...] = SHAPE,
                         classes: int = 4, n: int = 12, eps: float = 0.06, step: float = 0.05,
                         max_iter: int = 9) -> None:
    """iterative_fgsm against the per-sample reference: images spanning [0, 1], steps large
    against eps (projection and clipping matter), one sample misclassified from the start,
    then a budget too small to flip anything (every sample takes max_iter steps)."""
    model = mlp(classes, shape=shape, seed=seed).double()
    x = images(n, shape=shape, low=0.0, high=1.0, seed=seed + 1).double()
    y = labelled(model, x)
    y[0] = (y[0] + 1) % classes
    cases = [(x, y, eps, step, max_iter), (x[1:], y[1:], eps / 30, step / 50, max_iter // 2)]
    for xs, ys, e, s, m in cases:
        before = xs.clone()
        with silent():
            out = iterative_fgsm(model, xs, ys, e, s, m)
        what = f"iterative_fgsm(model, x, y, eps={e:.4g}, step={s:.4g}, max_iter={m})"
        assert isinstance(out, tuple) and len(out) == 2, f"{what} must return (x_adv, iterations)"
        got, steps = out
        _unchanged(xs, before, "iterative_fgsm")
        expected, expected_steps = ifgsm_reference(model, xs, ys, e, s, m)
        assert isinstance(steps, torch.Tensor) and steps.dtype == torch.int64, (
            f"{what}: iterations must be an int64 tensor; got {getattr(steps, 'dtype', steps)}")
        assert steps.tolist() == expected_steps.tolist(), (
            f"{what}: steps taken per sample {steps.tolist()}, expected "
            f"{expected_steps.tolist()}")
        assert (got - xs).abs().max() <= e + 1e-9, f"{what}: the perturbation exceeds eps"
        _in_range(got, "iterative_fgsm")
        assert_close(got, expected, what, atol=1e-9)


def check_deepfool(deepfool, *, seed: int = 0, shape: tuple[int, ...] = SHAPE,
                   classes: int = 6, n: int = 12) -> None:
    """deepfool against the per-sample transliteration of the authors' code: the two highest
    classes only with overshoot 0.1, all classes with the default overshoot, images spanning
    [0, 1] with max_iter=2; and the number of model calls (batched, not per sample)."""
    model = mlp(classes, shape=shape, seed=seed).double()
    inner = images(n, shape=shape, seed=seed + 1).double()
    edge = images(n, shape=shape, low=0.0, high=1.0, seed=seed + 2).double()
    cases = [(inner, 2, {"overshoot": 0.1}), (inner, classes, {}),
             (edge, classes, {"max_iter": 2})]
    for x, k, options in cases:
        before = x.clone()
        counter = QueryCounter(model)
        with silent():
            out = deepfool(counter, x, k, **options)
        what = "deepfool(model, x, {}{})".format(
            k, "".join(f", {key}={value}" for key, value in options.items()))
        assert isinstance(out, tuple) and len(out) == 2, f"{what} must return (x_adv, iterations)"
        got, iterations = out
        _unchanged(x, before, "deepfool")
        expected, expected_iterations = deepfool_reference(model, x, k, **options)
        assert isinstance(iterations, torch.Tensor) and iterations.dtype == torch.int64, (
            f"{what}: iterations must be an int64 tensor")
        assert iterations.tolist() == expected_iterations.tolist(), (
            f"{what}: iterations per sample {iterations.tolist()}, expected "
            f"{expected_iterations.tolist()}")
        _in_range(got, "deepfool")
        assert_close(got, expected, what, atol=1e-7)
        limit = (int(expected_iterations.max()) + 2) * (k + 1)
        assert counter.calls <= limit, (
            f"{what} called the model {counter.calls} times for {n} images in at most "
            f"{int(expected_iterations.max())} iterations: attack the whole batch at once (at "
            f"most {limit} calls)")


def check_one_pixel(one_pixel, *, seed: int = 0) -> None:
    """one_pixel on pixel models: a grey non-square image (the sensitive pixel right of column
    H), a colour image (all channels must be set), bright images fooled only by a dark pixel
    (set, not added), and an unbreakable model (the best candidate is returned); model calls
    (one per generation) and images evaluated (stop once fooled)."""
    shapes = [((1, 5, 9), (3, 7)), ((1, 4, 7), (1, 6))][seed % 2]
    colour = [((3, 4, 6), (2, 5)), ((3, 3, 5), (0, 4))][seed % 2]
    for (shape, (row, col)), popsize in ((shapes, 90), (colour, 100)):
        model, x, y = pixel_data(2, shape=shape, row=row, col=col, seed=seed)
        counter = QueryCounter(model)
        before = x.clone()
        with silent():
            got = one_pixel(counter, x, y, pixels=1, popsize=popsize, maxiter=25, seed=seed)
        _unchanged(x, before, "one_pixel")
        assert isinstance(got, torch.Tensor) and got.shape == x.shape, (
            f"one_pixel must return images shaped like x {tuple(x.shape)}")
        assert (labelled(model, got) != y).all(), (
            f"one_pixel did not fool a model that one pixel ({row}, {col}) of a {shape} image "
            "fools")
        changed = (got != x).any(dim=1)
        assert changed.sum(dim=(1, 2)).tolist() == [1, 1] and changed[:, row, col].all(), (
            f"each {shape} image must differ from the original in exactly pixel ({row}, {col})")
        _in_range(got, "one_pixel")
        population = max(1, popsize // (2 + shape[0])) * (2 + shape[0])
        assert counter.calls <= 2 * 27, (
            f"{counter.calls} model calls for 2 images and at most 25 generations: evaluate "
            "the population in one batched forward pass (vectorized=True)")
        assert counter.images <= 2 * population * 26 // 2, (
            f"{counter.images} images evaluated for 2 images: stop the search once the image "
            "is misclassified")
    # Bright images fooled only by a dark pixel: the pixel is set, not added to.
    model = PixelModel(1, 2, threshold=0.3, dark=True)
    x = images(2, shape=(1, 3, 4), low=0.9, high=1.0, seed=seed + 3)
    y = torch.zeros(2, dtype=torch.long)
    with silent():
        got = one_pixel(model, x, y, popsize=60, maxiter=25, seed=seed)
    assert (labelled(model, got) != y).all(), (
        "one_pixel did not fool a model that one dark pixel fools: set the pixel to the "
        "candidate's value")
    # Unbreakable (threshold above 1): the best candidate brightens the sensitive pixel.
    model = PixelModel(1, 1, threshold=1.5, sharpness=2.0)
    x = images(1, shape=(1, 3, 3), low=0.0, high=0.2, seed=seed + 4)
    y = torch.zeros(1, dtype=torch.long)
    counter = QueryCounter(model)
    with silent():
        got = one_pixel(counter, x, y, popsize=45, maxiter=15, seed=seed)
    assert float(got[0, 0, 1, 1]) > 0.8, (
        f"on a model no pixel fools, the result sets the sensitive pixel to "
        f"{float(got[0, 0, 1, 1]):.2f}: minimise the true class's probability and return the "
        "best candidate")
    assert counter.calls == 16, (
        f"{counter.calls} model calls for one image and maxiter=15 (expected 1 + 15)")


def check_counting_model(counting_model, *, seed: int = 0, n: int = 5) -> None:
    """CountingModel: images counted from 0 under no_grad and with gradients, the output and
    the input gradient unchanged, reset()."""
    model = mlp(seed=seed)
    x = images(n, seed=seed + 1)
    with silent():
        counter = counting_model(model)
    assert isinstance(counter, nn.Module), "CountingModel must be a torch.nn.Module"
    assert counter.queries == 0, f"a new counter holds {counter.queries} queries, not 0"
    with silent(), torch.no_grad():
        out = counter(x)
    assert_close(out, model(x), "CountingModel's output")
    assert counter.queries == n, f"{n} images counted as {counter.queries} queries"
    point = x[:3].clone().requires_grad_(True)
    with silent():
        counter(point)[:, 1].sum().backward()
    assert point.grad is not None, "no gradient flowed through CountingModel"
    grad = point.grad.clone()
    point.grad = None
    model(point)[:, 1].sum().backward()
    assert_close(grad, point.grad, "the input gradient through CountingModel")
    assert counter.queries == n + 3, f"{n} + 3 images counted as {counter.queries} queries"
    with silent():
        counter.reset()
    assert counter.queries == 0, "reset() must set queries back to 0"
    with silent(), torch.no_grad():
        counter(x[:2])
    assert counter.queries == 2, f"2 images after reset() counted as {counter.queries}"


def check_compare(compare, *, seed: int = 0) -> None:
    """compare against the reference: a small hand-made example, random paired outcomes at
    several confidences and input types, few discordant pairs (exact vs chi-square), errors."""
    cases = [([1, 1, 1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 1, 0, 0], 0.95)]
    a, b = outcomes(200 + 50 * seed, accuracy_a=0.6, accuracy_b=0.45, agreement=0.7, seed=seed)
    cases.append((torch.from_numpy(a), torch.from_numpy(b), 0.9))
    cases.append((a, b, 0.99))
    cases.append((np.array([1] * 20 + [1, 1, 1, 0] + [0] * 6),
                  np.array([1] * 20 + [0, 0, 0, 1] + [0] * 6), 0.95))
    for first, second, confidence in cases:
        with silent():
            got = compare(first, second, confidence=confidence)
        expected = compare_reference(np.asarray(first), np.asarray(second), confidence)
        for key, value in expected.items():
            assert key in got, f"compare's result lacks {key!r}"
            assert abs(float(got[key]) - value) < 1e-9, (
                f"compare at confidence {confidence} on {len(first)} images "
                f"({type(first).__name__}): {key} = {got[key]}, expected {value}")
    for bad in (([1, 0, 1], [1, 0]), ([1], [1, 0, 1]), ([], [])):
        try:
            with silent():
                compare(*bad)
        except ValueError:
            continue
        raise AssertionError(f"compare{bad} must raise a ValueError")
