"""Gradient attacks with one call shape: ``attack(model, x, y, *, eps, ...) -> x_adv``.

Every attack runs in batches on the model's device, evaluates the model in eval mode and
restores its previous mode, never modifies ``x`` or ``y``, never accumulates gradients in
the model's parameters, and returns adversarial images on ``x``'s device, in [0, 1].
"""

from __future__ import annotations

import copy
import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .answers import withheld
from .runtime import eval_mode, model_device

NORMS = ("linf", "l2")


# --------------------------------------------------------------------------------------
# Input checks


def _check_inputs(x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(
            f"x must be a float tensor of images shaped (N, C, H, W); got "
            f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}."
        )
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point in [0, 1]; got dtype {x.dtype}. "
                         "Convert uint8 images with x.float() / 255.")
    if x.numel() and not (x.min() >= 0 and x.max() <= 1):  # also catches NaN
        raise ValueError(
            f"x must lie in [0, 1] (got min {x.min().item():.3f}, max {x.max().item():.3f}); "
            "the course models normalise inside, so pass raw images."
        )
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a tensor of integer labels; got {type(y).__name__}. "
                         "Use torch.as_tensor(y).")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"y must hold one label per image: x has {len(x)} images, "
                         f"y has shape {tuple(y.shape)}.")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class indices; got dtype {y.dtype}. "
                         "Use y.long() (not one-hot or probabilities).")
    if not (isinstance(eps, numbers.Real) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite non-negative number; got {eps!r}. "
                         "For L-inf attacks on [0, 1] images, 8/255 is usual.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}.")


def _check_labels(y: torch.Tensor, logits: torch.Tensor) -> None:
    if len(y) and (y.min() < 0 or y.max() >= logits.shape[1]):
        raise ValueError(f"Labels must lie in 0..{logits.shape[1] - 1} (the model has "
                         f"{logits.shape[1]} outputs); got {y.min().item()}..{y.max().item()}.")


# --------------------------------------------------------------------------------------
# A faster, equivalent copy of the model to attack


def _plain(*modules: nn.Module) -> bool:
    """No hooks or parametrizations that could change what these modules compute."""
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                   or hasattr(m, "parametrizations") for m in modules)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """A plain Conv2d followed by a plain, eval-mode BatchNorm2d with running statistics."""
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and not bn.training
            and bn.running_mean is not None and _plain(conv, bn))


def _swappable(relu: nn.Module, pool: nn.Module) -> bool:
    """ReLU then max-pooling, which equals max-pooling then ReLU (ReLU is monotone)."""
    return (type(relu) is nn.ReLU and type(pool) is nn.MaxPool2d and not pool.return_indices
            and _plain(relu, pool))


def fast_attack_model(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """An equivalent copy of an eval-mode ``model`` that computes input gradients faster.

    Inside every ``nn.Sequential``, a batch norm that directly follows a convolution is
    folded into it, and ReLU followed by max-pooling becomes max-pooling followed by ReLU
    (the same function, with 4x fewer ReLUs); the copy uses the channels-last memory layout
    on CPU and CUDA, and its parameters do not require gradients. The original model is not
    touched. If ``example`` images are given and the copy's logits on them differ from the
    model's (a forward that calls sub-modules by index, say), or the model cannot be
    copied, the model itself is returned.
    """
    try:
        fast = copy.deepcopy(model)
    except Exception:  # a model holding something that cannot be copied
        return model
    for module in fast.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if _foldable(module[i], module[i + 1]):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
            for i in range(len(module) - 1):
                if _swappable(module[i], module[i + 1]):
                    module[i], module[i + 1] = module[i + 1], module[i]
    fast.requires_grad_(False)
    if model_device(fast).type in ("cpu", "cuda"):
        fast = fast.to(memory_format=torch.channels_last)
    if example is not None:
        with torch.no_grad():
            expected = model(example)
            try:
                got = fast(example)
            except Exception:  # a forward that depends on what was rearranged
                return model
        scale = expected.abs().max().clamp_min(1.0).item()
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3,
                                                             atol=1e-4 * scale):
            return model
    return fast


# --------------------------------------------------------------------------------------
# Projected gradient descent


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
    """PGD on one batch (already on the model's device). Returns the adversarial images."""
    delta = _random_start(x, eps, norm, generator) if random_start else torch.zeros_like(x)
    delta = (x + delta).clamp(0, 1) - x
    best = x + delta
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    active: torch.Tensor | None = None  # indices still attacked (None: all of them)
    for step in range(steps):
        xa, ya, da = (x, y, delta) if active is None else (x[active], y[active], delta[active])
        da = da.detach().requires_grad_(True)
        logits = model(xa + da)
        if step == 0:
            _check_labels(ya, logits)
        loss = F.cross_entropy(logits, ya, reduction="sum")
        (grad,) = torch.autograd.grad(loss, da)
        with torch.no_grad():
            pred = logits.argmax(1)
            success = pred == ya if targeted else pred != ya
            # Keep the latest iterate that fooled the model.
            hit = success.nonzero().squeeze(1)
            index = hit if active is None else active[hit]
            best[index] = xa[hit] + da[hit]
            fooled[index] = True
            direction = _ascent_direction(grad, norm)
            new = _project(da - alpha * direction if targeted else da + alpha * direction,
                           eps, norm)
            new = (xa + new).clamp_(0, 1) - xa
            if active is None:
                delta = new
            else:
                delta[active] = new
            if early_stop:
                keep = ~success
                active = keep.nonzero().squeeze(1) if active is None else active[keep]
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
    optimize: bool = True,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018) in the L-inf or L2 ball.

    Args:
        model: classifier taking [0, 1] images (normalisation inside).
        x, y: images (N, C, H, W) in [0, 1] and labels; for ``targeted=True``, ``y`` holds
            the target labels.
        eps: radius of the ball. alpha: step size (default ``2.5 * eps / steps``).
        steps: number of gradient steps. norm: ``"linf"`` or ``"l2"``.
        random_start: start from a uniform point in the ball (L2: random direction and radius).
        targeted: descend the loss of the target labels ``y`` instead of ascending the
            loss of the true labels.
        early_stop: stop attacking a sample once it is misclassified (targeted: once it hits
            the target). Same success rate, less work, when only the success rate is
            needed; the returned example is then the first successful iterate.
        batch_size: images attacked at once.
        seed: seeds the random start, for reproducible attacks.
        optimize: attack an equivalent, faster copy of the model (batch norm folded into
            the convolutions, ReLU after max-pooling, channels-last layout; checked against
            the model on the first images; see :func:`fast_attack_model`).

    Returns the adversarial images. For each sample, the returned point is an iterate at
    which the attack succeeded if there was one, else the final iterate, so the attack is
    never weaker than returning the last iterate.
    """
    _check_inputs(x, y, eps, batch_size)
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; choose 'linf' or 'l2'.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}.")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    if not (isinstance(alpha, numbers.Real) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha (the step size) must be positive; got {alpha!r}.")
    device = model_device(model)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    # Gradients are needed even when called under torch.no_grad() or inference_mode().
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        out = torch.empty_like(x)
        attacked = model
        if optimize and len(x):
            attacked = fast_attack_model(model, x[:8].to(device, torch.float32))
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device, torch.float32).clone()
            yb = y[start : start + batch_size].to(device, torch.int64).clone()
            if optimize and device.type in ("cpu", "cuda"):
                xb = xb.contiguous(memory_format=torch.channels_last)
            adv = _pgd_batch(attacked, xb, yb, eps=eps, alpha=alpha, steps=steps, norm=norm,
                             random_start=random_start, targeted=targeted,
                             early_stop=early_stop, generator=generator)
            out[start : start + batch_size] = adv.to(x.device)
    return out


# --------------------------------------------------------------------------------------
# FGSM and success rate


@withheld("Lab 6, task fgsm")
def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    targeted: bool = False,
    batch_size: int = 512,
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one signed gradient step of
    size ``eps``, ``clip(x + eps * sign(grad_x loss(x, y)), 0, 1)``; targeted: minus the
    step, with ``y`` the target labels.

    FGSM is a graded task of Lab 6, so this function refuses to run inside a function
    defined in a notebook (:func:`labsupport.answers.withheld`)."""
    _check_inputs(x, y, eps, batch_size)
    device = model_device(model)
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        out = torch.empty_like(x)
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device, torch.float32).clone()
            yb = y[start : start + batch_size].to(device, torch.int64).clone()
            xb.requires_grad_(True)
            logits = model(xb)
            _check_labels(yb, logits)
            loss = F.cross_entropy(logits, yb, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
            sign = -grad.sign() if targeted else grad.sign()
            out[start : start + batch_size] = (xb.detach() + eps * sign).clamp_(0, 1).to(x.device)
    return out


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

    if len(x_adv) != len(y):
        raise ValueError(f"x_adv and y disagree in length: {len(x_adv)} images, {len(y)} "
                         "labels.")
    if len(y) == 0:
        raise ValueError("Cannot measure a success rate on no images.")
    pred = predict(model, x_adv, batch_size=batch_size)
    hits = pred == y.cpu() if targeted else pred != y.cpu()
    return hits.float().mean().item()
