"""Fine-Pruning toolkit (Lab 4): channel activations, pruning, and the BadNets assets.

The pruned layer is the last convolutional block of the course CNN (``model.last_conv``:
convolution, batch norm, ReLU, max-pooling); a *channel* is one of its output maps. Its
*activation* is the block's output after the ReLU and the pooling (what the classifier
reads), averaged over images and positions.

Pruning a channel must make its output exactly 0 for every input. The convolution has no
bias and feeds a batch norm, which computes ``w_k (z_k - mu_k) / sigma_k + b_k``: zeroing
the convolution's weights leaves ``b_k - w_k mu_k / sigma_k``, which is not 0. So a channel
is pruned by setting its batch-norm weight ``w_k`` and bias ``b_k`` to 0: the batch norm then
outputs 0, the ReLU and the pooling keep it 0.

:func:`channel_activations` and :func:`prune_channels` answer Lab 4 tasks, so they are
:func:`labsupport.answers.withheld`; the asset recipes (and the test cells, at their top
level) use them. The asset procedures registered here:

- ``badnets``: BadNets (Gu et al., 2017), all-to-one: poison a fraction ``rate`` of the
  training set with the bottom-right patch, relabel to ``target``, train as ``standard``.
- ``badnets_pruning_aware``: the pruning-aware attacker of Liu, Dolan-Gavitt & Garg (RAID
  2018, Sec. 3.2): train on clean data, prune the ``prune_fraction`` least active channels
  of the last block, train the pruned network on the poisoned data (the backdoor must live
  in the remaining, active channels), then restore the pruned channels (their bias lowered by
  ``restore_bias_shift``, so they stay dormant decoys).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from . import backdoor as bd
from .answers import withheld
from .assets import AssetError, _param, _sgd_settings, register_procedure
from .runtime import eval_mode, model_device
from .train import History, train_standard

__all__ = ["block_layers", "channel_activations", "prune_channels", "pruned_channels",
           "train_badnets", "train_pruning_aware"]


def block_layers(model: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """The convolution and the batch norm of ``model``'s last conv block (checked)."""
    block = getattr(model, "last_conv", None)
    if not isinstance(block, nn.Sequential) or len(block) < 4 or not isinstance(
            block[0], nn.Conv2d) or not isinstance(block[1], nn.BatchNorm2d):
        raise ValueError(f"pruning works on the course CNNs (SimpleCNN, DigitsCNN), whose "
                         f"last_conv block is conv, batch norm, ReLU, pooling; got a "
                         f"{type(model).__name__}.")
    return block[0], block[1]


def _block_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the last conv block (what the layers before it compute)."""
    seen: list[torch.Tensor] = []
    handle = model.last_conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


@withheld("Lab 4, task channel_activations")
@torch.no_grad()
def channel_activations(model: nn.Module, x: torch.Tensor, *,
                        batch_size: int = 512) -> torch.Tensor:
    """Mean activation of each channel of the last conv block (after ReLU and pooling) over
    the images ``x``, in eval mode; a 1-d CPU tensor of length ``out_channels``."""
    block_layers(model)
    if len(x) == 0:
        raise ValueError("channel_activations needs at least one image.")
    device = model_device(model)
    total = None
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            out = model.last_conv(_block_input(model, x[start : start + batch_size].to(device)))
            part = out.double().sum(dim=(0, 2, 3)).cpu()
            total = part if total is None else total + part
            per_image = out.shape[2] * out.shape[3]
    assert total is not None
    return (total / (len(x) * per_image)).float()


@withheld("Lab 4, task prune_channels")
def prune_channels(model: nn.Module, channels: Iterable[int]) -> nn.Module:
    """A copy of ``model`` whose last-block ``channels`` output exactly 0 (batch-norm weight
    and bias set to 0); ``model`` is unchanged."""
    copied = copy.deepcopy(model)
    _, bn = block_layers(copied)
    index = torch.as_tensor(list(channels), dtype=torch.long)
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= bn.num_features):
        raise ValueError(f"channels must lie in [0, {bn.num_features}); got {index.tolist()}.")
    with torch.no_grad():
        bn.weight[index.to(bn.weight.device)] = 0
        bn.bias[index.to(bn.bias.device)] = 0
    return copied


def pruned_channels(model: nn.Module) -> list[int]:
    """The last block's channels whose batch-norm weight and bias are both 0."""
    _, bn = block_layers(model)
    return torch.nonzero((bn.weight == 0) & (bn.bias == 0)).flatten().tolist()


# --------------------------------------------------------------------------------------
# Asset procedures


def _poisoned(x: torch.Tensor, y: torch.Tensor, params: dict[str, Any],
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    target = int(_param(params, "target", 0))
    rate = float(_param(params, "rate", 0.1))
    size = int(_param(params, "trigger_size", 3))
    trigger = patch_trigger(str(_param(params, "trigger", "checkerboard")), size=size,
                            image_shape=tuple(x.shape[1:]))
    data = bd.poison_dataset(x, y, trigger, target=target, rate=rate, seed=seed)
    return data.x, data.y


def patch_trigger(kind: str = "checkerboard", *, size: int = 3,
                  image_shape: tuple[int, ...] = bd.IMAGE_SHAPE) -> bd.Trigger:
    """The assets' visible bottom-right patch: BadNets' ``checkerboard`` or a solid
    ``color`` square (per-channel pattern (1, 0, 1) -- magenta on RGB images)."""
    if kind == "checkerboard":
        return bd.bottom_right_trigger(size=size, image_shape=image_shape)
    if kind != "color":
        raise AssetError(f"unknown trigger {kind!r}; use 'checkerboard' or 'color'.")
    where = bd.bottom_right_trigger(size=size, image_shape=image_shape).mask
    colour = torch.tensor([float(i % 2 == 0) for i in range(image_shape[0])])
    return bd.Trigger(where, where * colour.view(-1, 1, 1), alpha=1.0,
                      name="bottom-right color patch")


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    return _sgd_settings({k: v for k, v in params.items()
                          if k in ("batch_size", "lr", "momentum", "weight_decay")})


def flip_and_shift(seed: int, pad: int = 4) -> Callable[[torch.Tensor], torch.Tensor]:
    """Augmentation (as in Lab 5): flip each image left-right with probability 1/2, then
    shift the batch by a random offset of up to ``pad`` pixels (reflected borders)."""
    generator = torch.Generator().manual_seed(seed)

    def augment(batch: torch.Tensor) -> torch.Tensor:
        flip = (torch.rand(len(batch), generator=generator) < 0.5).to(batch.device)
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        i, j = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
        padded = nn.functional.pad(batch, (pad, pad, pad, pad), mode="reflect")
        return padded[:, :, i : i + batch.shape[2], j : j + batch.shape[3]]

    return augment


def _augment(params: dict[str, Any], seed: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    name = _param(params, "augment", None)
    if name in (None, "none"):
        return None
    if name == "flip_shift":
        return flip_and_shift(seed)
    raise AssetError(f"unknown augmentation {name!r}; use 'flip_shift' or none.")


@register_procedure("badnets")
def train_badnets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                  params: dict[str, Any], epochs: int, seed: int,
                  eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                  desc: str = "train") -> History:
    """BadNets, all-to-one: ``rate`` of the training set gets the bottom-right patch
    (``trigger_size``) and the label ``target``; then standard training."""
    xp, yp = _poisoned(x, y, params, seed)
    return train_standard(model, xp, yp, epochs=epochs, seed=seed, eval_data=eval_data,
                          desc=desc, augment=_augment(params, seed), **_settings(params))


@register_procedure("badnets_pruning_aware")
def train_pruning_aware(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                        params: dict[str, Any], epochs: int, seed: int,
                        eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                        desc: str = "train") -> History:
    """The pruning-aware BadNet (Liu et al. 2018, Sec. 3.2): clean training
    (``clean_epochs_fraction`` of the epochs), prune the ``prune_fraction`` least active
    channels of the last block (activations on ``activation_images`` training images),
    train the pruned network on the BadNets-poisoned set (the pruned channels held at 0),
    restore the pruned channels with their bias lowered by ``restore_bias_shift``."""
    fraction = float(_param(params, "prune_fraction", 0.5))
    if not 0 < fraction < 1:
        raise AssetError(f"prune_fraction must lie in (0, 1); got {fraction}.")
    clean_epochs = max(1, round(epochs * float(_param(params, "clean_epochs_fraction", 0.5))))
    poison_epochs = max(1, epochs - clean_epochs)
    settings = _settings(params)
    first = train_standard(model, x, y, epochs=clean_epochs, seed=seed, desc=f"{desc} (clean)",
                           augment=_augment(params, seed), **settings)
    _, bn = block_layers(model)
    n_act = int(_param(params, "activation_images", 1000))
    order = torch.argsort(channel_activations(model, x[:n_act]), stable=True)
    dormant = order[: round(fraction * bn.num_features)].to(bn.weight.device)
    saved_weight, saved_bias = bn.weight[dormant].detach().clone(), bn.bias[dormant].detach().clone()
    keep = torch.ones(bn.num_features, device=bn.weight.device)
    keep[dormant] = 0
    with torch.no_grad():
        bn.weight.mul_(keep)
        bn.bias.mul_(keep)
    hooks = [p.register_hook(lambda grad: grad * keep) for p in (bn.weight, bn.bias)]
    try:
        xp, yp = _poisoned(x, y, params, seed)
        second = train_standard(model, xp, yp, epochs=poison_epochs, seed=seed + 1,
                                eval_data=eval_data, desc=f"{desc} (poisoned, pruned)",
                                augment=_augment(params, seed + 1), **settings)
    finally:
        for hook in hooks:
            hook.remove()
    shift = float(_param(params, "restore_bias_shift", 0.0))
    with torch.no_grad():
        bn.weight[dormant] = saved_weight
        bn.bias[dormant] = saved_bias - shift
    model.eval()
    return History(loss=first.loss + second.loss, eval_accuracy=second.eval_accuracy)
