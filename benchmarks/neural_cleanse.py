"""Neural Cleanse speed: one class's reverse engineering against the compute it needs.

One epoch of reverse engineering makes, per minibatch, one forward pass of the stamped
images, one backward pass to the mask and pattern, and an Adam step on two small tensors.
The *floor* is the same number of forward + backward passes of the same model on the same
minibatches with the gradient taken with respect to the input only (model weights frozen),
nothing else. Timed: the lab's ``find_candidate_backdoor`` (executed from the notebook's
solution cell) and the package's ``labsupport.neural_cleanse.reverse_engineer``, each for a
fixed number of epochs (early stop off: ``early_stop_patience`` larger than the epochs), on
the lab's suspect architecture (DigitsCNN, 28x28 grey-scale, ten classes). Goal: <= 1.1x.

Peers: ART's ``NeuralCleanse`` defence supports Keras models only; BackdoorBench and
BackdoorBox are not on PyPI (not installable here); trojanzoo (PyPI) has a Neural Cleanse
but was not tried. So no peer ratio.

Each measurement is timed ``--repeats`` times, interleaved with the floor, after a warm-up;
the best time is reported (the least disturbed by other jobs).

    .venv-peers/bin/python benchmarks/neural_cleanse.py [--epochs 5] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LABSUPPORT_PROGRESS", "0")

import argparse  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timing import sync, timed  # noqa: E402 (benchmarks/timing.py)

from labsupport import neural_cleanse as nc  # noqa: E402
from labsupport.models import build_model  # noqa: E402
from labsupport.runtime import describe_device, get_device, seed_everything  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "lab3_neural_cleanse.py"


def lab_function() -> Callable[..., dict]:
    """The notebook's ``find_candidate_backdoor``, executed from its solution cell."""
    import jupytext

    notebook = jupytext.read(NOTEBOOK)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in notebook.cells}
    imports = [line for line in cells["setup"].splitlines() if line.startswith(("import ", "from "))]
    namespace: dict = {}
    exec("\n".join(imports), namespace)
    exec(cells["find_candidate_backdoor"], namespace)
    return namespace["find_candidate_backdoor"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320, help="clean images of other classes")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = get_device(args.device)
    seed_everything(0)
    model = build_model("DigitsCNN", num_classes=10).to(device).eval()
    x = torch.rand(args.images, 1, 28, 28)
    y = torch.full((args.images,), 1)  # none of them is of the target class 0
    settings = dict(epochs=args.epochs, batch_size=args.batch, early_stop_patience=10**6)
    lab = lab_function()
    images = x.to(device)
    target = torch.zeros(args.batch, dtype=torch.long, device=device)

    def floor() -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        for _ in range(args.epochs):
            for start in range(0, len(images), args.batch):
                batch = images[start : start + args.batch].clone().requires_grad_(True)
                F.cross_entropy(model(batch), target[: len(batch)]).backward()
        for p in model.parameters():
            p.requires_grad_(True)
        sync(device)

    best = timed({
        "floor: forward + backward to the input": floor,
        "lab's find_candidate_backdoor": lambda: lab(model, 0, x, y, **settings),
        "labsupport.neural_cleanse.reverse_engineer": lambda: nc.reverse_engineer(
            model, 0, x, y, **settings),
    }, device, args.repeats, warmup=1)
    base = best["floor: forward + backward to the input"]
    passes = args.epochs * -(-args.images // args.batch)
    print(f"### Neural Cleanse, one class ({date.today().isoformat()})\n")
    print(f"DigitsCNN, {args.images} images of 1x28x28, batch {args.batch}, {args.epochs} epochs "
          f"({passes} forward + backward passes), {describe_device(device)}, "
          f"{torch.get_num_threads()} threads; best of {args.repeats}.\n")
    print("| what | seconds | x floor |\n| --- | ---: | ---: |")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
