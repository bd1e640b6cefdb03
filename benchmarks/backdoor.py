"""Backdoor toolkit and ANP speed: what the work costs against the tensor arithmetic it needs.

What the lab runs is the notebook's own code (the students' ``stamp``, ``poison_dataset``,
``anp_mask``), executed here from the instructor solution cells; the package's versions
(``labsupport.backdoor``, which the later labs use) are timed beside them.

- **stamping** of a batch of images by the lab's ``stamp`` and by ``labsupport.backdoor.stamp``
  with the BadNets trigger
  (3x3 patch, alpha 1) and the Blend trigger (full mask, alpha 0.2), against the *floor*:
  one fused multiply-add ``x * (1 - alpha * mask) + alpha * mask * pattern`` with both
  factors precomputed (one read and one write of the batch), and against the formula as the
  lab writes it, ``(1 - m) * x + m * ((1 - a) * x + a * p)``;
- **poisoning** (the lab's ``poison_dataset`` and ``labsupport.backdoor.poison_dataset``) of
  a whole training set at rate 0.05, against its floor: a copy of the set plus the fused stamp of the poisoned rows,
  scattered back;
- **ANP mask learning** (the lab's ``anp_mask``, executed from the notebook's solution
  cells): seconds per iteration against one plain forward + backward pass of the same model
  on the same minibatch. One ANP iteration does one perturbation step (forward + backward)
  and the mask step (two forwards, one backward through both), so about 3 is the floor.

Each measurement is timed ``--repeats`` times, interleaved with what it is compared with,
after a warm-up; the best time is reported (the least disturbed by other jobs).

    .venv-peers/bin/python benchmarks/backdoor.py [--profile cpu] [--repeats 5]
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make PyTorch several times slower (and the timings
# erratic) on a shared machine; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LABSUPPORT_PROGRESS", "0")

import argparse  # noqa: E402
import sys  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # labsupport from the checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timing import timed  # noqa: E402 (benchmarks/timing.py)

from labsupport import backdoor as bd  # noqa: E402
from labsupport.models import SimpleCNN  # noqa: E402
from labsupport.runtime import describe_device, get_device, seed_everything  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "lab5_backdoor_anp.py"
#: Model widths and ANP minibatch of the lab's profiles (see the notebook's SIZES).
PROFILES = {"smoke": ((8, 16, 32), 64, 64), "cpu": ((16, 32, 64), 128, 128),
            "full": ((32, 64, 128), 256, 128)}


def lab_anp() -> dict:
    """The notebook's solution cells the experiments run (and the imports they use), executed:
    ``stamp``, ``poison_dataset``, ``anp_forward``/``anp_perturb``, ``anp_mask``."""
    import jupytext

    notebook = jupytext.read(NOTEBOOK)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in notebook.cells}
    imports = [line for line in cells["setup"].splitlines() if line.startswith(("import ", "from "))]
    namespace: dict = {}
    exec("\n".join(imports), namespace)
    exec(cells["neuron_layers"].split("\nprint(")[0], namespace)
    for grade_id in ("stamp", "poison_dataset", "anp_perturb", "anp_mask"):
        exec(cells[grade_id], namespace)
    return namespace


def bench_stamping(device: torch.device, batch: int, repeats: int) -> list[tuple[str, float]]:
    lab = lab_anp()
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for trigger in (bd.bottom_right_trigger(), bd.gaussian_noise_trigger(alpha=0.2)):
        t = trigger.to(device)
        weight = t.mask * t.alpha
        scale, shift = 1 - weight, weight * t.pattern  # precomputed: the floor's factors
        m, p, a = t.mask, t.pattern, t.alpha
        # Two groups: the formula's five image-sized temporaries, freed between calls, would
        # make the allocator hand the next call fresh pages to fault in.
        seconds = timed({"stamp": lambda t=t: bd.stamp(x, t),
                         "lab": lambda t=t: lab["stamp"](x, t),
                         "floor": lambda s=scale, b=shift: torch.addcmul(b, x, s)},
                        device, repeats, warmup=3)
        seconds |= timed({"formula": lambda m=m, p=p, a=a: (1 - m) * x + m * ((1 - a) * x + a * p)},
                         device, repeats, warmup=3)
        assert torch.allclose(bd.stamp(x, t), torch.addcmul(shift, x, scale), atol=1e-6)
        rows += [(f"{kind} {t.name}", batch / seconds[kind])
                 for kind in ("stamp", "lab", "floor", "formula")]
    return rows


def bench_poisoning(device: torch.device, n: int, repeats: int) -> list[tuple[str, float]]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g).to(device)
    y = (torch.arange(n) % 4).to(device)
    t = bd.bottom_right_trigger().to(device)
    weight = t.mask * t.alpha
    scale, shift = 1 - weight, weight * t.pattern
    chosen = torch.randperm(n, generator=g)[: round(0.05 * n)].to(device)

    def floor() -> torch.Tensor:
        out = x.clone()
        out[chosen] = torch.addcmul(shift, x[chosen], scale)
        return out

    lab = lab_anp()
    seconds = timed({"ours": lambda: bd.poison_dataset(x, y, t, target=0, rate=0.05, seed=0),
                     "lab": lambda: lab["poison_dataset"](x, y, t, target=0, rate=0.05, seed=0),
                     "floor": floor}, device, repeats, warmup=3)
    return [("poison_dataset", n / seconds["ours"]), ("lab poison_dataset", n / seconds["lab"]),
            ("floor: copy + stamp 5%", n / seconds["floor"])]


def bench_anp(device: torch.device, profile: str, repeats: int, iters: int
              ) -> list[tuple[str, float]]:
    lab = lab_anp()
    channels, hidden, batch = PROFILES[profile]
    seed_everything(0)
    model = SimpleCNN(channels=channels, hidden=hidden).to(device).eval()
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    y = (torch.arange(batch) % 4).to(device)

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model.train()(x), y).backward()

    def anp() -> None:
        lab["anp_mask"](model, x, y, eps=0.4, alpha=0.2, iters=iters, lr=0.2,
                        batch_size=batch, seed=0)

    seconds = timed({"plain": plain, "anp": anp}, device, repeats, warmup=3)
    model.eval()
    return [("ANP iteration (s)", seconds["anp"] / iters),
            ("plain forward + backward (s)", seconds["plain"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--batch", type=int, default=1024, help="images stamped per call")
    parser.add_argument("--train", type=int, default=20_000, help="training-set size poisoned")
    parser.add_argument("--iters", type=int, default=10, help="ANP iterations per timing")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = get_device()
    print(f"# backdoor benchmark, {date.today()}, device {describe_device(device)}, "
          f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"profile {args.profile}")

    stamping = dict(bench_stamping(device, args.batch, args.repeats))
    print(f"\nstamping, batch {args.batch} (images/s):")
    for name in ("bottom-right", "gaussian-noise"):
        ours, floor = stamping[f"stamp {name}"], stamping[f"floor {name}"]
        formula, lab = stamping[f"formula {name}"], stamping[f"lab {name}"]
        print(f"  {name:>15}: lab stamp {lab:12,.0f} | package stamp {ours:12,.0f} | floor "
              f"{floor:12,.0f} | formula {formula:12,.0f} | lab/floor {lab / floor:.2f}, "
              f"package/floor {ours / floor:.2f}, package/formula {ours / formula:.2f}")

    poisoning = dict(bench_poisoning(device, args.train, args.repeats))
    ours, floor = poisoning["poison_dataset"], poisoning["floor: copy + stamp 5%"]
    lab = poisoning["lab poison_dataset"]
    print(f"\npoisoning {args.train:,} images at rate 0.05 (images/s): lab poison_dataset "
          f"{lab:,.0f} | package poison_dataset {ours:,.0f} | floor {floor:,.0f} | lab/floor "
          f"{lab / floor:.2f}, package/floor {ours / floor:.2f}")

    anp = dict(bench_anp(device, args.profile, args.repeats, args.iters))
    it, plain = anp["ANP iteration (s)"], anp["plain forward + backward (s)"]
    channels, _, batch = PROFILES[args.profile]
    print(f"\nANP mask learning, SimpleCNN{channels}, minibatch {batch}: {it * 1000:.1f} ms "
          f"per iteration | plain forward+backward {plain * 1000:.1f} ms | ratio "
          f"{it / plain:.2f} (floor about 3)")


if __name__ == "__main__":
    main()
