"""Free adversarial training costs what standard training costs: Lab 1's solution, timed.

Runs the lab's own ``standard_train`` and ``free_adv_train`` (executed from the instructor
notebook's solution cells, so the benchmark measures what students are asked to write) on
the same model, data and minibatches, for the same number of forward/backward passes:
standard training for ``E`` epochs, free AT with ``m`` replays for ``E / m`` epochs
(``m`` divides ``E``). Many short rounds alternate between the two to share the machine's
noise; the fastest round of each (the least disturbed, as ``timeit`` reports) and the
medians are compared.

Prints images/s for each and the ratio free-AT time / standard time (goal <= 1.05: the only
extra work is the gradient with respect to the input, i.e. the first convolution's
input-gradient, and the perturbation update). Also times the *floor*: standard training that
computes the input gradient too (what free AT cannot avoid), and prints free AT / floor.

    python benchmarks/free_at.py [--dataset synthetic] [--images 256] [--epochs 4] [--m 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from labsupport.data import load_course_data  # noqa: E402
from labsupport.instructor.labs import solution_namespace  # noqa: E402
from labsupport.models import SimpleCNN  # noqa: E402
from labsupport.runtime import Timer, describe_device, get_device, seed_everything  # noqa: E402
from labsupport.train import make_loader  # noqa: E402

NOTEBOOK = (Path(__file__).resolve().parent.parent / "notebooks"
            / "lab1_free_adversarial_training.py")
SOLUTION_CELLS = ("standard_train", "free_adv_train")


def lab_solution() -> dict:
    """The notebook's imports and solution cells, executed: returns their namespace."""
    return solution_namespace(NOTEBOOK, SOLUTION_CELLS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--m", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.epochs % args.m:
        parser.error("--m must divide --epochs, so both runs make the same number of passes")
    os.environ["LABSUPPORT_PROGRESS"] = "0"
    solution = lab_solution()
    device = get_device()
    data = load_course_data(args.dataset).subset(args.images, 1)
    eps = 8 / 255

    def floor_train(model, loader, optimizer, *, epochs):
        """Standard training plus the input gradient: the compute free AT cannot avoid."""
        from labsupport.train import fit

        def step(model, x, y):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x.requires_grad_(True)), y)
            loss.backward()
            optimizer.step()
            return loss.item()

        return fit(model, loader, step, epochs=epochs, desc="floor")

    def run(kind: str) -> float:
        seed_everything(0)
        model = SimpleCNN(num_classes=data.num_classes).to(device)
        loader = make_loader(data.x_train, data.y_train, batch_size=args.batch_size, seed=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9,
                                    weight_decay=5e-4)
        with Timer(device) as timer:
            if kind == "standard":
                solution["standard_train"](model, loader, optimizer, epochs=args.epochs)
            elif kind == "floor":
                floor_train(model, loader, optimizer, epochs=args.epochs)
            else:
                solution["free_adv_train"](model, loader, optimizer, epochs=args.epochs,
                                           eps=eps, m=args.m)
        return timer.seconds

    run("standard")  # warm-up (allocator, kernels)
    run("free")
    times: dict[str, list[float]] = {"standard": [], "floor": [], "free": []}
    for _ in range(args.rounds):
        for kind in times:
            times[kind].append(run(kind))
    passes = args.epochs * args.images
    median = {kind: statistics.median(values) for kind, values in times.items()}
    print(f"free_at benchmark, {time.strftime('%Y-%m-%d')}: dataset {data.name}, device "
          f"{describe_device(device)}, {args.images} images x {args.epochs} epochs "
          f"(free AT: m={args.m}, {args.epochs // args.m} epochs), batch {args.batch_size}, "
          f"{args.rounds} rounds")
    for kind, seconds in median.items():
        spread = f"{min(times[kind]):.2f}-{max(times[kind]):.2f}"
        print(f"  {kind:>8}: median {seconds:.2f} s ({spread}), {passes / seconds:,.0f} images/s")
    best = {kind: min(values) for kind, values in times.items()}
    for name, (a, b) in {"free AT / standard": ("free", "standard"),
                         "floor / standard": ("floor", "standard"),
                         "free AT / floor": ("free", "floor")}.items():
        goal = "  (goal <= 1.05)" if name == "free AT / standard" else ""
        print(f"  ratio {name:<18} {best[a] / best[b]:.3f} fastest rounds, "
              f"{median[a] / median[b]:.3f} medians{goal}")

if __name__ == "__main__":
    main()
