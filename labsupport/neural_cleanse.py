"""Lab 3 (Neural Cleanse, Wang et al., IEEE S&P 2019): the suspects and the reference method.

**The suspects.** Lab 3 hands out two models, ``lab3-suspect-a`` and ``lab3-suspect-b``
(asset recipes in ``assets/manifest.json``, identical but for the letter). Exactly one was
trained with a BadNets backdoor: a small patch trigger, all-to-one, to one target class.
Which one, the trigger and the target are derived from the **course secret** (:func:`plan`),
which the instructor sets in the environment variable ``LABSUPPORT_COURSE_SECRET`` before
building the assets (``labsupport assets build --all``). Choose a long random secret, e.g.
``python -c "import secrets; print(secrets.token_hex(16))"``. Without it the documented
default :data:`DEFAULT_SECRET` is used (CI and self-study: then anyone reading this module
can work out the answer, which is fine for practice and not for a graded course).

Nothing shipped names the answer: the recipes, file names and metadata are the same for both
suspects; the weights record only a slow salted hash of the secret (:func:`fingerprint`),
so an instructor who changes the secret gets rebuilt assets, while a student without it
accepts the pre-built ones (see ``KEY_EXTRAS`` in :mod:`labsupport.assets`).
:func:`reveal` returns the truth only when the secret in use built the models (self-study,
CI, the instructor).

**The reference method.** :func:`reverse_engineer` (the authors' optimisation with their
cost schedule), :func:`anomaly_index` (the MAD rule) and :func:`decide` answer graded tasks
of Lab 3, so they are :func:`~labsupport.answers.withheld`: a student's own function cannot
call them. The benchmark, the science tests and the test cells use them.

Reference defaults, from the authors' code (github.com/bolunwang/backdoor, ``visualizer.py``
and ``gtsrb_visualize_example.py``): Adam with learning rate 0.1 and betas (0.5, 0.9); the
cost (the L1 weight lambda) starts at 1e-3, is multiplied by 1.5 after ``patience`` = 5
epochs in a row whose attack success reached 0.99 and divided by 1.5 ** 1.5 after 5 epochs
in a row that did not; the best mask is the smallest among epochs that reached 0.99; the run
stops early once the cost has gone both up and down and the best norm has not improved by 1%
for ``early_stop_patience`` epochs (the Visualizer's default is twice the patience). The mask
and pattern are ``tanh(theta) / 2 + 1 / 2``; the mask has one channel. (The authors start the
cost at 0 and raise it to 1e-3 once the attack succeeds; the lab starts at 1e-3.)
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import backdoor as bd
from .answers import withheld
from .runtime import model_device
from .train import History, train_standard

__all__ = [
    "DEFAULT_SECRET", "SECRET_ENV", "SUSPECTS", "Plan", "anomaly_index", "course_secret",
    "decide", "fingerprint", "plan", "reveal", "reverse_engineer", "secret_is_set",
    "train_suspect",
]

SECRET_ENV = "LABSUPPORT_COURSE_SECRET"
#: The secret used when ``LABSUPPORT_COURSE_SECRET`` is unset (CI, self-study). Public.
DEFAULT_SECRET = "labsupport-self-study"
#: The suspects' names, in the order the lab lists them.
SUSPECTS = ("A", "B")
#: Asset name of each suspect.
ASSETS = {"A": "lab3-suspect-a", "B": "lab3-suspect-b"}
#: Side of the square trigger patch.
TRIGGER_SIZE = 4
_FINGERPRINT_ITERATIONS = 100_000


def course_secret() -> str:
    """The course secret: ``$LABSUPPORT_COURSE_SECRET``, else :data:`DEFAULT_SECRET`."""
    return os.environ.get(SECRET_ENV) or DEFAULT_SECRET


def secret_is_set() -> bool:
    """Whether an instructor set the secret explicitly (the environment variable)."""
    return bool(os.environ.get(SECRET_ENV))


def fingerprint(secret: str | None = None) -> str:
    """A slow salted hash of the secret (PBKDF2-SHA256): recorded with the suspects' weights so
    that changing the secret rebuilds them; it does not give the secret back."""
    secret = course_secret() if secret is None else secret
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), b"labsupport lab3 suspects",
                                 _FINGERPRINT_ITERATIONS)
    return digest.hex()


def _cache_key() -> tuple[str, bool]:
    """``(fingerprint, explicit)`` for :data:`labsupport.assets.KEY_EXTRAS`."""
    return fingerprint(), secret_is_set()


@dataclass(frozen=True)
class Plan:
    """What the secret decides: the backdoored suspect, its target class and trigger."""

    backdoored: str
    target: int
    trigger: bd.Trigger

    @property
    def clean(self) -> str:
        """The suspect trained without a backdoor."""
        return SUSPECTS[1 - SUSPECTS.index(self.backdoored)]


def plan(secret: str | None = None, *, num_classes: int = 4,
         image_shape: tuple[int, int, int] = (3, 32, 32)) -> Plan:
    """The backdoored suspect, target class and trigger that ``secret`` (default: the course
    secret) decides: a ``TRIGGER_SIZE`` square of random black-and-white pixels (per channel)
    at a random position near one corner."""
    secret = course_secret() if secret is None else secret
    seed = int.from_bytes(hashlib.sha256(f"lab3 plan:{secret}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    backdoored = rng.choice(SUSPECTS)
    target = rng.randrange(num_classes)
    c, h, w = image_shape
    s = TRIGGER_SIZE
    top = rng.choice((rng.randint(1, 3), h - s - rng.randint(1, 3)))
    left = rng.choice((rng.randint(1, 3), w - s - rng.randint(1, 3)))
    bits = [float(rng.random() < 0.5) for _ in range(c * s * s)]
    bits[0], bits[1] = 0.0, 1.0  # never a flat patch
    mask = torch.zeros(1, h, w)
    pattern = torch.zeros(c, h, w)
    mask[:, top : top + s, left : left + s] = 1
    pattern[:, top : top + s, left : left + s] = torch.tensor(bits).view(c, s, s)
    return Plan(backdoored, target, bd.Trigger(mask, pattern, 1.0, name="true trigger"))


def train_suspect(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, suspect: str,
                  secret: str | None = None, poison_rate: float = 0.1, epochs: int,
                  seed: int = 0, batch_size: int = 128, lr: float = 0.05,
                  momentum: float = 0.9, weight_decay: float = 5e-4,
                  desc: str = "train") -> History:
    """Train ``model`` in place as suspect ``suspect`` of ``secret``'s plan: on a BadNets-
    poisoned copy of ``(x, y)`` (``poison_rate`` of the set, relabelled to the target) when
    the plan backdoors it, on ``(x, y)`` otherwise. The returned History holds timings only
    (the loss would tell the two apart)."""
    if suspect not in SUSPECTS:
        raise ValueError(f"suspect must be one of {SUSPECTS}; got {suspect!r}.")
    the_plan = plan(secret, num_classes=int(y.max()) + 1, image_shape=tuple(x.shape[1:]))
    if the_plan.backdoored == suspect:
        poisoned = bd.poison_dataset(x, y, the_plan.trigger, target=the_plan.target,
                                     rate=poison_rate, seed=seed)
        x, y = poisoned.x, poisoned.y
    history = train_standard(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                             momentum=momentum, weight_decay=weight_decay, seed=seed, desc=desc)
    return History(epoch_seconds=history.epoch_seconds)


def _procedure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, params: dict[str, Any],
               epochs: int, seed: int, eval_data: Any = None, desc: str = "train") -> History:
    """The asset procedure ``neural_cleanse_suspect`` (registered in labsupport.assets)."""
    return train_suspect(
        model, x, y, suspect=str(params["suspect"]), poison_rate=float(params["poison_rate"]),
        epochs=epochs, seed=seed, batch_size=int(params.get("batch_size", 128)),
        lr=float(params.get("lr", 0.05)), momentum=float(params.get("momentum", 0.9)),
        weight_decay=float(params.get("weight_decay", 5e-4)), desc=desc)


def reveal(*models: nn.Module, image_shape: tuple[int, int, int]) -> Plan | None:
    """The truth about the suspects ``models`` (for images shaped ``image_shape``), when the
    secret in use is the one that built them (their ``asset_meta``); ``None`` otherwise (a
    student without the instructor's secret)."""
    if not models:
        raise ValueError("reveal(model_a, model_b, image_shape=...) needs the suspects.")
    mine = fingerprint()
    if any((getattr(m, "asset_meta", None) or {}).get("key_extra") != mine for m in models):
        return None
    return plan(num_classes=int(getattr(models[0], "num_classes", 10)),
                image_shape=tuple(image_shape))


# --------------------------------------------------------------------------------------
# The reference method (withheld: answers of Lab 3's tasks)


class _Schedule:
    """The authors' cost schedule and best-so-far bookkeeping, one call per epoch."""

    def __init__(self, init_cost: float, patience: int, multiplier: float, threshold: float,
                 early_stop_patience: int) -> None:
        self.cost = init_cost
        self.patience, self.threshold = patience, threshold
        self.up, self.down = multiplier, multiplier ** 1.5
        self.early_stop_patience = early_stop_patience
        self.above = self.below = self.stalled = 0
        self.went_up = self.went_down = False
        self.best = self.stall_reference = float("inf")

    def record(self, success: float, norm: float) -> tuple[bool, bool]:
        """Update after an epoch; returns (new best, stop now)."""
        improved = success >= self.threshold and norm < self.best
        if improved:
            self.best = norm
        if self.best < float("inf"):
            self.stalled = self.stalled + 1 if self.best >= 0.99 * self.stall_reference else 0
        self.stall_reference = min(self.stall_reference, self.best)
        if self.went_up and self.went_down and self.stalled >= self.early_stop_patience:
            return improved, True
        if success >= self.threshold:
            self.above, self.below = self.above + 1, 0
        else:
            self.above, self.below = 0, self.below + 1
        if self.above >= self.patience:
            self.above, self.cost, self.went_up = 0, self.cost * self.up, True
        elif self.below >= self.patience:
            self.below, self.cost, self.went_down = 0, self.cost / self.down, True
        return improved, False


@withheld("Lab 3, task find_candidate_backdoor")
def reverse_engineer(model: nn.Module, target: int, x: torch.Tensor, y: torch.Tensor, *,
                     epochs: int = 100, batch_size: int = 32, init_cost: float = 1e-3,
                     lr: float = 0.1, patience: int = 5, cost_multiplier: float = 1.5,
                     attack_threshold: float = 0.99,
                     early_stop_patience: int = 10) -> dict[str, Any]:
    """Neural Cleanse's trigger reverse-engineering for one ``target`` (see the module doc).

    Returns a dict: ``mask`` (H, W) and ``pattern`` (C, H, W) on the CPU, ``norm`` (the L1
    norm of the returned mask), ``success`` (its epoch's attack success) and per-epoch lists
    ``costs`` (the cost used), ``successes`` and ``norms`` (the mask's norm at epoch end).
    """
    device = model_device(model)
    images = x[y != target].to(device)
    if len(images) == 0:
        raise ValueError(f"no image has a label other than the target {target}.")
    theta_mask = torch.zeros(images.shape[-2:], device=device, requires_grad=True)
    theta_pattern = torch.zeros(images.shape[1:], device=device, requires_grad=True)
    optimizer = torch.optim.Adam([theta_mask, theta_pattern], lr=lr, betas=(0.5, 0.9))
    schedule = _Schedule(init_cost, patience, cost_multiplier, attack_threshold,
                         early_stop_patience)
    goal = torch.full((batch_size,), int(target), device=device)
    trace: dict[str, list[float]] = {"costs": [], "successes": [], "norms": []}
    best: tuple[torch.Tensor, torch.Tensor, float, float] | None = None
    frozen = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    for p in frozen:
        p.requires_grad_(False)  # gradients for the trigger only: no wasted weight gradients
    try:
        with torch.set_grad_enabled(True):  # also inside a caller's no_grad()
            for _ in range(epochs):
                hits = images.new_zeros(())
                for start in range(0, len(images), batch_size):
                    batch = images[start : start + batch_size]
                    m = torch.tanh(theta_mask) * 0.5 + 0.5
                    pat = torch.tanh(theta_pattern) * 0.5 + 0.5
                    logits = model(batch + m * (pat - batch))
                    ce = F.cross_entropy(logits, goal[: len(batch)])
                    optimizer.zero_grad(set_to_none=True)
                    (ce + schedule.cost * m.sum()).backward()
                    optimizer.step()
                    hits += (logits.detach().argmax(1) == target).sum()
                with torch.no_grad():
                    m = torch.tanh(theta_mask) * 0.5 + 0.5
                    norm = float(m.sum())
                success = float(hits) / len(images)
                for key, value in (("costs", schedule.cost), ("successes", success),
                                   ("norms", norm)):
                    trace[key].append(value)
                improved, stop = schedule.record(success, norm)
                if improved:
                    with torch.no_grad():
                        best = (m.cpu(), (torch.tanh(theta_pattern) * 0.5 + 0.5).cpu(), norm,
                                success)
                if stop:
                    break
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    if best is None:  # never reached the threshold: the last mask
        with torch.no_grad():
            best = (torch.tanh(theta_mask).cpu() * 0.5 + 0.5,
                    torch.tanh(theta_pattern).cpu() * 0.5 + 0.5, trace["norms"][-1],
                    trace["successes"][-1])
    found = dict(zip(("mask", "pattern", "norm", "success"), best, strict=True))
    return {**found, **trace}


@withheld("Lab 3, task anomaly_index")
def anomaly_index(norms: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    """The MAD anomaly index of every label: ``|n - median| / (1.4826 * MAD)``; with MAD = 0,
    0 for the norms at the median and infinity for the others."""
    values = np.asarray(torch.as_tensor(norms, dtype=torch.float64).cpu(), dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"norms must be a non-empty 1-d sequence; got shape {values.shape}.")
    deviation = np.abs(values - np.median(values))
    spread = 1.4826 * np.median(deviation)
    if spread == 0:
        return np.where(deviation == 0, 0.0, np.inf)
    return deviation / spread


@withheld("Lab 3, task decide")
def decide(norms: Mapping[str, Sequence[float]],
           indices: Mapping[str, Sequence[float]]) -> tuple[str | None, int | None]:
    """Which model is backdoored and its target: among the models whose smallest norm lies
    below their median norm with anomaly index above 2, the one with the largest index, and
    the label of that norm; ``(None, None)`` when no model is flagged."""
    flagged = []
    for name, values in norms.items():
        values = np.asarray(values, dtype=np.float64)
        label = int(np.argmin(values))
        score = float(np.asarray(indices[name], dtype=np.float64)[label])
        if values[label] < np.median(values) and score > 2:
            flagged.append((score, name, label))
    if not flagged:
        return None, None
    _, name, label = max(flagged, key=lambda item: item[0])
    return name, label
