"""Lab 6's attacks against ART and torchattacks: strength and time on the same model and inputs.

The lab's own answers (the notebook's solution cells, executed here) attack the lab's digits
CNN (asset ``lab6-digits-cnn`` at the ``cpu`` profile, trained on the chosen digits dataset)
on the first test images, beside the peer libraries' versions of the same attack with the
same budget:

- **FGSM** (L-inf, eps 0.1): ART ``FastGradientMethod``, torchattacks ``FGSM``;
- **I-FGSM** (eps 0.1, step 0.01, 20 iterations): ART ``BasicIterativeMethod``, torchattacks
  ``BIM``; ours stops each image once misclassified (same success, less work);
- **DeepFool** (all 10 classes, overshoot 0.02, 50 iterations): ART ``DeepFool``
  (``nb_grads=10``, ``epsilon=0.02``) and torchattacks ``DeepFool`` (a Python loop over the
  images); goal: ours >= 5x faster than torchattacks at equal success;
- **One-Pixel** (one pixel, a population of about ``--population`` candidates, ``--generations``
  generations of differential evolution, recombination 1, no polish): ART ``PixelAttack``
  (``th=1``, ``es=1``: DE; ART fixes the population at about 400) and torchattacks
  ``OnePixel`` (its ``popsize`` is the whole population); goal: ours faster than ART at equal
  or better success.

Success: the prediction differs from the model's clean prediction (DeepFool, One-Pixel: what
they attack) or from the label (FGSM, I-FGSM). L2: median over the images the attack fooled.
Fast attacks are timed ``--repeats`` times (median), the slow ones once.

    .venv-peers/bin/python benchmarks/evasion.py [--images 100] [--pixel-images 10]
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
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # labsupport from the checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labsupport.assets import load_asset  # noqa: E402
from labsupport.digits import load_digits  # noqa: E402
from labsupport.runtime import describe_device, get_device  # noqa: E402

NOTEBOOK = REPO / "notebooks" / "lab6_evasion_attacks.py"
TASKS = ("fgsm", "iterative_fgsm", "deepfool", "one_pixel")


def lab_answers() -> dict:
    """The notebook's imports (setup, libraries) and solution cells, executed."""
    import jupytext

    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source
             for c in jupytext.read(NOTEBOOK).cells}
    setup = cells["setup"]
    namespace: dict = {}
    exec(setup[: setup.index("PROFILE = ")], namespace)
    exec(cells["libraries"], namespace)
    for task in TASKS:
        exec(cells[task], namespace)
    return namespace


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[torch.Tensor, float]:
    """The result of ``fn`` and its median wall time over ``repeats`` runs."""
    seconds, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - start)
    return out, statistics.median(seconds)


def art_classifier(model: torch.nn.Module, device: torch.device):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(),
                             input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0),
                             device_type="gpu" if device.type == "cuda" else "cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="digits dataset (digits, mnist)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--pixel-images", type=int, default=10)
    parser.add_argument("--population", type=int, default=400)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attacks", default="FGSM,I-FGSM,DeepFool,One-Pixel",
                        help="comma-separated subset to run")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import torchattacks
    from art.attacks.evasion import (
        BasicIterativeMethod,
        DeepFool,
        FastGradientMethod,
        PixelAttack,
    )

    device = get_device()
    data = load_digits(args.dataset)
    model = load_asset("lab6-digits-cnn", dataset=data, profile="cpu", device=device)
    lab = lab_answers()
    x, y = data.x_test[: args.images].to(device), data.y_test[: args.images].to(device)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    classifier = art_classifier(model, device)
    xn, yn = x.cpu().numpy(), y.cpu().numpy()

    def from_numpy(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    rows: list[tuple[str, str, float, float, float]] = []

    def record(attack: str, who: str, x_adv: torch.Tensor, seconds: float,
               reference: torch.Tensor, images: torch.Tensor) -> None:
        with torch.no_grad():
            fooled = model(x_adv).argmax(1) != reference
        l2 = (x_adv - images).flatten(1).norm(dim=1)[fooled]
        rows.append((attack, who, fooled.float().mean().item(),
                     l2.median().item() if len(l2) else float("nan"), seconds))
        print(f"{attack:>9} {who:>13}: success {rows[-1][2]:.3f}, median L2 {rows[-1][3]:.3f}, "
              f"{seconds:.3f} s", flush=True)

    r = args.repeats
    chosen = set(args.attacks.split(","))
    m = args.pixel_images
    xp, pp = x[:m], predicted[:m]

    def run_fgsm() -> None:
        out, s = timed(lambda: lab["fgsm"](model, x, y, 0.1), r)
        record("FGSM", "ours", out, s, y, x)
        art = FastGradientMethod(classifier, norm=np.inf, eps=0.1, batch_size=len(x))
        out, s = timed(lambda: from_numpy(art.generate(xn, y=yn)), r)
        record("FGSM", "ART", out, s, y, x)
        attack = torchattacks.FGSM(model, eps=0.1)
        out, s = timed(lambda: attack(x, y), r)
        record("FGSM", "torchattacks", out, s, y, x)

    def run_ifgsm() -> None:
        out, s = timed(lambda: lab["iterative_fgsm"](model, x, y, 0.1, 0.01, 20)[0], r)
        record("I-FGSM", "ours", out, s, y, x)
        art = BasicIterativeMethod(classifier, eps=0.1, eps_step=0.01, max_iter=20,
                                   batch_size=len(x), verbose=False)
        out, s = timed(lambda: from_numpy(art.generate(xn, y=yn)), r)
        record("I-FGSM", "ART", out, s, y, x)
        attack = torchattacks.BIM(model, eps=0.1, alpha=0.01, steps=20)
        out, s = timed(lambda: attack(x, y), r)
        record("I-FGSM", "torchattacks", out, s, y, x)

    def run_deepfool() -> None:
        out, s = timed(lambda: lab["deepfool"](model, x, 10, overshoot=0.02, max_iter=50)[0], r)
        record("DeepFool", "ours", out, s, predicted, x)
        art = DeepFool(classifier, max_iter=50, epsilon=0.02, nb_grads=10, batch_size=len(x),
                       verbose=False)
        out, s = timed(lambda: from_numpy(art.generate(xn)), 1)
        record("DeepFool", "ART", out, s, predicted, x)
        attack = torchattacks.DeepFool(model, steps=50, overshoot=0.02)
        out, s = timed(lambda: attack(x, predicted), 1)
        record("DeepFool", "torchattacks", out, s, predicted, x)

    def run_one_pixel() -> None:
        out, s = timed(lambda: lab["one_pixel"](model, xp, pp, pixels=1,
                                                popsize=args.population,
                                                maxiter=args.generations, seed=0), 1)
        record("One-Pixel", "ours", out, s, pp, xp)
        art = PixelAttack(classifier, th=1, es=1, max_iter=args.generations, verbose=False)
        np.random.seed(0)
        out, s = timed(lambda: from_numpy(art.generate(xp.cpu().numpy(),
                                                       y=pp.cpu().numpy())), 1)
        record("One-Pixel", "ART", out, s, pp, xp)
        # torchattacks' popsize is the whole population (it divides by the variables itself).
        attack = torchattacks.OnePixel(model, pixels=1, steps=args.generations,
                                       popsize=args.population, inf_batch=args.population)
        out, s = timed(lambda: attack(xp, pp), 1)
        record("One-Pixel", "torchattacks", out, s, pp, xp)

    runs = {"FGSM": run_fgsm, "I-FGSM": run_ifgsm, "DeepFool": run_deepfool,
            "One-Pixel": run_one_pixel}
    for name, run in runs.items():
        if name in chosen:
            run()

    print(f"\n{date.today()} · {describe_device(device)} · torch {torch.__version__} · "
          f"{data.name}, {len(x)} images ({m} for One-Pixel), digits CNN clean accuracy "
          f"{model.asset_meta['test_accuracy']:.3f} · load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| attack | library | success | median L2 | seconds | time / ours |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    ours = {a: sec for a, who, _, _, sec in rows if who == "ours"}
    for attack_name, who, rate, l2, sec in rows:
        print(f"| {attack_name} | {who} | {rate:.3f} | {l2:.3f} | {sec:.3f} | "
              f"{sec / ours[attack_name]:.1f} |")


if __name__ == "__main__":
    main()
