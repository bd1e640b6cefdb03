"""Randomized-smoothing certification: the Lab 2 solution against ART and the compute floor.

Certifies the same base classifier (the Lab 2 asset trained with noise sigma), on the same
test images, with the same n0, n and alpha, three ways:

- the **lab's solution** (``Smooth.certify``, executed from the instructor notebook's
  solution cells, so the benchmark measures what students are asked to write);
- **ART**'s ``PyTorchRandomizedSmoothing.certify`` (its ``sample_size`` is n0; the model
  keeps its normalisation inside, and inputs are raw [0, 1] images, because ART adds the
  noise before its preprocessing; an abstention is class -1 there too);
- the **pure batched forward** pass of the base model over the same number of images, in
  the same batch sizes (the floor: no noise, no counting, no statistics).

Prints samples/s for each, the ratio lab/ART (goal >= 2: a GPU goal, since ART draws its
noise with NumPy on the host and copies it to the device; on a CPU both sit at the floor and
the honest ratio is about 1) and lab/forward (goal >= 0.85). Checks that both certifiers
agree where both certify: the same class, and implied lower bounds pA = Phi(R / sigma)
within sampling error. Exits 1 if they disagree.

    python benchmarks/smoothing.py [--profile cpu] [--dataset synthetic] [--images 10]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm

from labsupport.assets import load_asset
from labsupport.data import load_course_data
from labsupport.instructor.labs import solution_namespace
from labsupport.runtime import describe_device, get_device, model_device

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lab2_randomized_smoothing.py"
SOLUTION_CELLS = ("smooth_class", "sample_noise", "predict", "certify")


def lab_solution() -> dict:
    """The notebook's imports and solution cells, executed: returns their namespace."""
    return solution_namespace(NOTEBOOK, SOLUTION_CELLS)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_sizes(count: int, batch_size: int) -> list[int]:
    return [min(batch_size, count - start) for start in range(0, count, batch_size)]


def time_forward(model, x, n0, n, batch_size) -> float:
    """Seconds for the forward passes alone, in the batch sizes certification uses."""
    device = model_device(model)
    sizes = (batch_sizes(n0, batch_size) + batch_sizes(n, batch_size)) * len(x)
    batch = (x[0].to(device) + 0.2 * torch.randn(max(sizes), *x.shape[1:], device=device))
    with torch.no_grad():
        model(batch[: sizes[0]])  # warm-up
        sync(device)
        start = time.perf_counter()
        for size in sizes:
            model(batch[:size]).argmax(1)
        sync(device)
    return time.perf_counter() - start


def time_lab(Smooth, model, x, sigma, n0, n, alpha, batch_size, num_classes):
    smooth = Smooth(model, num_classes=num_classes, sigma=sigma)
    smooth.certify(x[0], min(n0, 8), min(n, 8), alpha, batch_size)  # warm-up
    device = model_device(model)
    sync(device)
    start = time.perf_counter()
    results = [smooth.certify(image, n0, n, alpha, batch_size) for image in x]
    sync(device)
    seconds = time.perf_counter() - start
    return seconds, np.array([p for p, _ in results]), np.array([r for _, r in results])


def time_art(model, x, sigma, n0, n, alpha, batch_size, num_classes):
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    device = model_device(model)
    art = PyTorchRandomizedSmoothing(
        model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
        nb_classes=num_classes, channels_first=True, clip_values=None,
        device_type="gpu" if device.type == "cuda" else "cpu",
        sample_size=n0, scale=sigma, alpha=alpha)
    images = x.numpy().astype(np.float32)
    art.certify(images[:1], n=min(n, 8), batch_size=batch_size)  # warm-up
    sync(device)
    start = time.perf_counter()
    predictions, radii = art.certify(images, n=n, batch_size=batch_size)
    sync(device)
    return time.perf_counter() - start, np.asarray(predictions), np.asarray(radii)


def agreement(lab, art, sigma: float, n: int) -> dict:
    """Where both certify: same class, and implied pA within 4 standard errors of sampling."""
    (lab_p, lab_r), (art_p, art_r) = lab, art
    both = (lab_p >= 0) & (art_p >= 0)
    same_class = int(np.sum(lab_p[both] == art_p[both]))
    p_lab, p_art = norm.cdf(lab_r[both] / sigma), norm.cdf(art_r[both] / sigma)
    p = (p_lab + p_art) / 2
    tolerance = 4 * np.sqrt(2 * p * (1 - p) / n) + 2 / n
    within = int(np.sum(np.abs(p_lab - p_art) <= tolerance))
    return {"both": int(both.sum()), "same_class": same_class, "radius_within": within,
            "one_abstains": int(np.sum((lab_p >= 0) != (art_p >= 0))),
            "mean_abs_radius_diff": float(np.mean(np.abs(lab_r[both] - art_r[both])))
            if both.any() else math.nan}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="asset profile (smoke, cpu, full)")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--sigma", type=float, default=0.20, choices=(0.05, 0.20))
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=1100)
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds (best is kept)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = get_device(args.device)
    data = load_course_data(args.dataset)
    model = load_asset(f"lab2-noise-{args.sigma:.2f}", dataset=data, profile=args.profile,
                       device=device)
    x = data.x_test[: args.images]
    Smooth = lab_solution()["Smooth"]
    samples = args.images * (args.n0 + args.n)
    common = (args.sigma, args.n0, args.n, args.alpha, args.batch_size, data.num_classes)

    best = {"forward": math.inf, "lab": math.inf, "art": math.inf}
    first = {}
    for round_ in range(args.rounds):
        torch.manual_seed(round_)
        np.random.seed(round_)
        best["forward"] = min(best["forward"],
                              time_forward(model, x, args.n0, args.n, args.batch_size))
        seconds, *lab = time_lab(Smooth, model, x, *common)
        best["lab"] = min(best["lab"], seconds)
        seconds, *art = time_art(model, x, *common)
        best["art"] = min(best["art"], seconds)
        first = first or {"lab": lab, "art": art}
    rate = {k: samples / v for k, v in best.items()}
    check = agreement(first["lab"], first["art"], args.sigma, args.n)

    import art as art_module

    print(f"Randomized smoothing certification: profile {args.profile}, dataset {data.name}, "
          f"device {describe_device(device)}")
    print(f"  {args.images} images x (n0 {args.n0} + n {args.n}) noisy samples, alpha "
          f"{args.alpha}, batch {args.batch_size}, sigma {args.sigma}; best of {args.rounds}")
    print(f"  pure batched forward  {rate['forward']:>10,.0f} samples/s")
    print(f"  lab solution          {rate['lab']:>10,.0f} samples/s")
    print(f"  ART {art_module.__version__:<17} {rate['art']:>10,.0f} samples/s")
    print(f"  ratio lab / ART       {rate['lab'] / rate['art']:10.2f}   (goal >= 2; a GPU goal, "
          "about 1 is the honest CPU figure)")
    print(f"  ratio lab / forward   {rate['lab'] / rate['forward']:10.2f}   (goal >= 0.85)")
    print(f"  agreement: {check['both']} images certified by both; same class "
          f"{check['same_class']}/{check['both']}; implied pA within sampling error "
          f"{check['radius_within']}/{check['both']} (mean |radius difference| "
          f"{check['mean_abs_radius_diff']:.4f}); one abstains, the other not: "
          f"{check['one_abstains']}")
    ok = check["same_class"] == check["both"] and check["radius_within"] == check["both"]
    print("  agreement OK" if ok else "  AGREEMENT FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
