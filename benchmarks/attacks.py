"""PGD-10 speed: ``labsupport.attacks.pgd`` against torchattacks, ART and the compute floor.

All attacks run on the same trained SimpleCNN and the same batch of test images, with the
same attack: L-inf, eps 8/255, step 2/255, 10 steps, one random start.

- **ours**: ``labsupport.attacks.pgd`` as the labs call it (it attacks an equivalent copy of
  the model with batch norm folded into the convolutions and the channels-last layout);
- **ours, early stop**: the same attack that stops attacking each image once it is
  misclassified: same success rate, less work, valid only when the success rate (or the
  accuracy under attack) is all that is needed;
- **ours, plain model**: ``optimize=False`` (the model as given);
- **torchattacks** ``PGD`` and **ART** ``ProjectedGradientDescent`` on a ``PyTorchClassifier``;
- **pure**: 10 plain forward + input-gradient backward passes of the model on the batch, the
  compute floor of a 10-step gradient attack on the model as given;
- **torchattacks, folded** and **pure, folded**: the same two on the folded copy that *ours*
  attacks (``labsupport.attacks.fast_attack_model``, channels-last images).

Two comparisons, both reported: the *user-level* one (each library on the model as a user
hands it over: ours folds it internally, the peers do not) and the *same-module* one (every
attack on the folded copy, so only the attack loops differ); the floor is given for both
graphs.

Each is timed ``--repeats`` times, interleaved, after a warm-up; the median is reported.
Prints seconds, accuracy under attack, and the ratios ours/torchattacks (goal <= 0.8),
ours/ART (goal <= 0.5) and ours/pure (goal <= 1.1).

    .venv-peers/bin/python benchmarks/attacks.py [--batch 256] [--repeats 5]
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make every library here several times slower (and
# the timings erratic) on a shared machine; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LABSUPPORT_PROGRESS", "0")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # labsupport from the checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from labsupport.attacks import fast_attack_model, pgd  # noqa: E402
from labsupport.data import cache_dir, load_course_data  # noqa: E402
from labsupport.models import CorruptModelFile, SimpleCNN, load_model, save_model  # noqa: E402
from labsupport.runtime import describe_device, get_device, seed_everything  # noqa: E402
from labsupport.train import evaluate, train_standard  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import rounds  # noqa: E402 (benchmarks/timing.py)

EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10


def trained_model(dataset: str, device: torch.device) -> torch.nn.Module:
    """A SimpleCNN trained on 2,000 images for 3 epochs (cached under the labsupport cache)."""
    path = cache_dir() / "bench" / f"attacks-simplecnn-{dataset}.pt"
    try:
        model, _ = load_model(path, map_location=device)
        return model
    except (FileNotFoundError, CorruptModelFile):
        pass
    data = load_course_data(dataset)
    seed_everything(0)
    model = SimpleCNN(num_classes=data.num_classes).to(device)
    train_standard(model, data.x_train[:2000], data.y_train[:2000], epochs=3, seed=0)
    save_model(model, path, dataset=dataset, seed=0, train_images=2000, epochs=3)
    return model.eval()


def pure_passes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """The floor: STEPS forward passes, each with the backward pass to the input."""
    for _ in range(STEPS):
        xa = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        torch.autograd.grad(loss, xa)


def art_attack(model: torch.nn.Module, x: torch.Tensor, num_classes: int,
               device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
        nb_classes=num_classes, clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu")
    attack = ProjectedGradientDescent(
        classifier, norm=np.inf, eps=EPS, eps_step=ALPHA, max_iter=STEPS, num_random_init=1,
        batch_size=len(x), verbose=False)

    def run(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        adv = attack.generate(x=xb.cpu().numpy(), y=yb.cpu().numpy())
        return torch.from_numpy(adv)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torchattacks

    device = get_device()
    model = trained_model(args.dataset, device).eval()
    data = load_course_data(args.dataset)
    x = data.x_test[: args.batch].to(device)
    y = data.y_test[: args.batch].to(device)
    ta = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
    folded = fast_attack_model(model, x[:8])
    if folded is model:
        raise SystemExit("fast_attack_model returned the model itself: nothing to compare.")
    x_cl = x.contiguous(memory_format=torch.channels_last) if device.type in ("cpu", "cuda") else x
    ta_folded = torchattacks.PGD(folded, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
    art = art_attack(model, x, data.num_classes, device)

    def ours(**kw):
        return lambda: pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, seed=0,
                           batch_size=len(x), **kw)

    runs: dict[str, Callable[[], torch.Tensor | None]] = {
        "ours": ours(),
        "ours, early stop": ours(early_stop=True),
        "ours, plain model": ours(optimize=False),
        "torchattacks": lambda: ta(x, y),
        "ART": lambda: art(x, y),
        "pure": lambda: pure_passes(model, x, y),
        "torchattacks, folded": lambda: ta_folded(x_cl, y),
        "pure, folded": lambda: pure_passes(folded, x_cl, y),
    }
    accuracy = {}
    for name, run in runs.items():  # warm-up, and the accuracy under each attack
        adv = run()
        if adv is not None:
            accuracy[name] = evaluate(model, adv.to(device), y)
    times = rounds(runs, device, args.repeats)
    median = {name: statistics.median(t) for name, t in times.items()}

    print(f"# PGD-{STEPS} (L-inf, eps 8/255, step 2/255, random start), {date.today()}")
    print(f"dataset {args.dataset}, batch {len(x)}, device {describe_device(device)}, "
          f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"median of {args.repeats}; clean accuracy {evaluate(model, x, y):.3f}")
    print(f"{'attack':20s} {'seconds':>8s} {'(min)':>8s} {'acc. under attack':>18s}")
    for name in runs:
        acc = f"{accuracy[name]:.3f}" if name in accuracy else "-"
        print(f"{name:20s} {median[name]:8.3f} {min(times[name]):8.3f} {acc:>18s}")
    print("user level: each attack on the model as given (ours folds a copy itself)")
    ratios = [
        ("ours / torchattacks", "ours", "torchattacks", 0.8),
        ("ours / ART", "ours", "ART", 0.5),
        ("ours / pure", "ours", "pure", 1.1),
        ("ours early stop / torchattacks", "ours, early stop", "torchattacks", 0.8),
        ("ours early stop / ART", "ours, early stop", "ART", 0.5),
        ("ours early stop / pure", "ours, early stop", "pure", 1.1),
        ("ours plain model / pure", "ours, plain model", "pure", None),
        ("torchattacks / pure", "torchattacks", "pure", None),
        ("ART / pure", "ART", "pure", None),
        ("-- same module: every attack on the folded copy", None, None, None),
        ("ours / torchattacks folded", "ours", "torchattacks, folded", None),
        ("ours / pure folded", "ours", "pure, folded", 1.1),
        ("ours early stop / pure folded", "ours, early stop", "pure, folded", None),
        ("torchattacks folded / pure folded", "torchattacks, folded", "pure, folded", None),
        ("pure folded / pure", "pure, folded", "pure", None),
    ]
    for label, a, b, goal in ratios:
        if a is None:
            print(label)
            continue
        ratio = median[a] / median[b]
        verdict = ""
        if goal is not None:
            verdict = f" (goal <= {goal:.1f}: {'met' if ratio <= goal else 'NOT met'})"
        print(f"{label:32s} {ratio:6.2f}{verdict}")


if __name__ == "__main__":
    main()
