"""Gradient attacks with one call shape: ``attack(model, x, y, *, eps, ...) -> x_adv``.

Every attack runs in batches on the model's device, evaluates the model in eval mode and
restores its previous mode, never modifies ``x`` or ``y``, never accumulates gradients in
the model's parameters, and returns adversarial images on ``x``'s device, in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .runtime import eval_mode, model_device

NORMS = ("linf", "l2")


def _check_inputs(x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(
            f"x must be a float tensor of images shaped (N, C, H, W); got "
            f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}."
        )
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point in [0, 1]; got dtype {x.dtype}. "
                         "Convert uint8 images with x.float() / 255.")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"x must lie in [0, 1] (got min {x.min().item():.3f}, max {x.max().item():.3f}); "
            "the course models normalise inside, so pass raw images."
        )
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"y must hold one label per image: x has {len(x)} images, "
                         f"y has shape {tuple(y.shape)}.")
    if eps < 0:
        raise ValueError(f"eps must be non-negative; got {eps}.")


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(p=2, dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _flat_norm(delta)).clamp(max=1.0)


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / _flat_norm(grad)


def _random_start(x: torch.Tensor, eps: float, norm: str,
                  generator: torch.Generator | None) -> torch.Tensor:
    if norm == "linf":
        delta = torch.rand(x.shape, device=x.device, generator=generator) * 2 - 1
        return delta * eps
    direction = torch.randn(x.shape, device=x.device, generator=generator)
    radius = torch.rand((len(x),) + (1,) * (x.dim() - 1), device=x.device, generator=generator)
    return direction / _flat_norm(direction) * radius * eps


def _pgd_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float,
               steps: int, norm: str, random_start: bool, targeted: bool, early_stop: bool,
               generator: torch.Generator | None) -> torch.Tensor:
    delta = _random_start(x, eps, norm, generator) if random_start else torch.zeros_like(x)
    delta = (x + delta).clamp(0, 1) - x
    best = x + delta
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    active = torch.arange(len(x), device=x.device)  # samples still being attacked
    for _ in range(steps):
        delta_a = delta[active].requires_grad_(True)
        logits = model(x[active] + delta_a)
        loss = F.cross_entropy(logits, y[active], reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta_a)
        with torch.no_grad():
            pred = logits.argmax(1)
            success = pred == y[active] if targeted else pred != y[active]
            # Keep the latest iterate that fooled the model.
            best[active[success]] = x[active[success]] + delta_a[success]
            fooled[active[success]] = True
            direction = _ascent_direction(grad, norm)
            step = -alpha * direction if targeted else alpha * direction
            new = _project(delta_a + step, eps, norm)
            delta[active] = (x[active] + new).clamp(0, 1) - x[active]
            if early_stop:
                active = active[~success]
                if len(active) == 0:
                    break
    # Samples never fooled at an evaluated iterate carry their final iterate.
    best[~fooled] = x[~fooled] + delta[~fooled]
    return best.detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    norm: str = "linf",
    random_start: bool = True,
    targeted: bool = False,
    early_stop: bool = False,
    batch_size: int = 512,
    seed: int | None = None,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018) in the L-inf or L2 ball.

    Args:
        model: classifier taking [0, 1] images (normalisation inside).
        x, y: images (N, C, H, W) in [0, 1] and labels; for ``targeted=True``, ``y`` holds
            the target labels.
        eps: radius of the ball. alpha: step size (default ``2.5 * eps / steps``).
        steps: number of gradient steps. norm: ``"linf"`` or ``"l2"``.
        random_start: start from a uniform point in the ball (L2: random direction and radius).
        early_stop: stop attacking a sample once it is misclassified (targeted: once it hits
            the target). Same success rate, less work; the returned example is then the first
            successful iterate rather than the last.
        seed: seeds the random start, for reproducible attacks.

    Returns the adversarial images. For each sample, the returned point is an iterate at
    which the attack succeeded if there was one, else the final iterate, so the attack is
    never weaker than returning the last iterate.
    """
    _check_inputs(x, y, eps)
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; choose 'linf' or 'l2'.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}.")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    device = model_device(model)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty_like(x)
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device).detach().float()
            yb = y[start : start + batch_size].to(device)
            adv = _pgd_batch(model, xb, yb, eps=eps, alpha=alpha, steps=steps, norm=norm,
                             random_start=random_start, targeted=targeted,
                             early_stop=early_stop, generator=generator)
            out[start : start + batch_size] = adv.to(x.device)
    return out


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    targeted: bool = False,
    batch_size: int = 512,
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one signed step of size eps."""
    return pgd(model, x, y, eps=eps, alpha=eps, steps=1, norm="linf", random_start=False,
               targeted=targeted, batch_size=batch_size)


@torch.no_grad()
def success_rate(
    model: nn.Module,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    *,
    targeted: bool = False,
    batch_size: int = 512,
) -> float:
    """Fraction of ``x_adv`` on which the attack succeeded.

    Untargeted: the prediction differs from the true label ``y``. Targeted: the
    prediction equals the target label ``y``.
    """
    from .train import predict

    pred = predict(model, x_adv, batch_size=batch_size)
    hits = pred == y.cpu() if targeted else pred != y.cpu()
    return hits.float().mean().item()
