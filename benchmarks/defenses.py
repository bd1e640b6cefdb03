"""Spatial smoothing: the Lab 7 solution's batched median filter against SciPy and ART.

Filters the same batch of images, window by window (3, 5, 7), three ways:

- the **lab's solution** (``spatial_smoothing``, executed from the instructor notebook's
  solution cell, so the benchmark measures what students are asked to write): torch, the
  whole batch at once (``unfold`` and ``median``), on the chosen device;
- **SciPy**'s ``ndimage.median_filter(size=(1, 1, k, k), mode="reflect")`` on the batch as
  one array (per image and channel, on the CPU);
- **ART**'s ``SpatialSmoothing(window_size=k, channels_first=True)`` (SciPy's filter inside,
  on the CPU).

Prints images/s for each and the ratios lab/SciPy and lab/ART (goal: > 1 on the same batch),
and checks that the three outputs are identical. Exits 1 if they differ.

    python benchmarks/defenses.py [--images 512] [--shape 3,32,32] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from labsupport.instructor.labs import solution_namespace
from labsupport.runtime import describe_device, get_device

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lab7_input_defenses.py"


def best_of(repeats: int, run, sync=lambda: None) -> float:
    """The fastest of ``repeats`` timed runs (after one warm-up run), in seconds."""
    run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--shape", default="3,32,32", help="C,H,W of each image")
    parser.add_argument("--windows", default="3,5,7")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    from art.defences.preprocessor import SpatialSmoothing

    smoothing = solution_namespace(NOTEBOOK, ("spatial_smoothing",))["spatial_smoothing"]
    device = get_device(args.device)
    shape = tuple(int(v) for v in args.shape.split(","))
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, *shape), generator=generator).float() / 255
    x_np = x.numpy()
    x_dev = x.to(device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    print(f"{args.images} images {shape} on {describe_device(device)}, torch threads "
          f"{torch.get_num_threads()}; best of {args.repeats}")
    print(f"{'window':>6} | {'lab img/s':>10} | {'SciPy img/s':>11} | {'ART img/s':>10} | "
          f"{'lab/SciPy':>9} | {'lab/ART':>7} | identical")
    ok = True
    for window in (int(w) for w in args.windows.split(",")):
        art = SpatialSmoothing(window_size=window, channels_first=True, clip_values=(0.0, 1.0))
        t_lab = best_of(args.repeats, lambda w=window: smoothing(x_dev, w), sync)
        t_scipy = best_of(args.repeats, lambda w=window: ndimage.median_filter(
            x_np, size=(1, 1, w, w), mode="reflect"))
        t_art = best_of(args.repeats, lambda a=art: a(x_np))
        ours = smoothing(x_dev, window).cpu().numpy()
        same = (np.array_equal(ours, ndimage.median_filter(x_np, size=(1, 1, window, window),
                                                           mode="reflect"))
                and np.array_equal(ours, art(x_np)[0]))
        ok &= same
        n = args.images
        print(f"{window:>6} | {n / t_lab:>10.0f} | {n / t_scipy:>11.0f} | {n / t_art:>10.0f} | "
              f"{t_scipy / t_lab:>9.2f} | {t_art / t_lab:>7.2f} | {same}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
