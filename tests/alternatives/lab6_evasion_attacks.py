"""Independently written correct answers to Lab 6's tasks (task grade_id -> answer cell).

Written in another style than the instructor's: ``fgsm`` takes the gradient with
``backward()`` of a negative log-likelihood and reports on stderr; ``iterative_fgsm`` and
``deepfool`` keep every sample in the batch and mask the finished ones (instead of indexing
the active ones), with a tqdm bar; ``deepfool`` takes the gradients of *all* logits and then
gathers the candidates; ``one_pixel`` is a small class using scipy's new-style callback;
``CountingModel`` counts in a forward pre-hook; ``compare`` counts the table with loops.
Each must keep full marks.
"""

SOLUTIONS: dict[str, str] = {
    "fgsm": '''\
import sys


def fgsm(model, x, y, eps, targeted=False, target=None):
    wanted = target if targeted else y
    leaf = x.clone().detach()
    leaf.requires_grad = True
    log_probs = torch.log_softmax(model(leaf), dim=1)
    torch.nn.functional.nll_loss(log_probs, wanted, reduction="sum").backward()
    sign = 1.0 if not targeted else -1.0
    print(f"fgsm: eps={eps}, targeted={targeted}", file=sys.stderr)
    return torch.clamp(x + sign * eps * torch.sign(leaf.grad), min=0.0, max=1.0).detach()
''',
    "iterative_fgsm": '''\
from tqdm.auto import tqdm


def iterative_fgsm(model, x, y, eps, step, max_iter):
    low, high = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    current = x.clone().detach()
    done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    used = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    for _ in tqdm(range(max_iter), desc="I-FGSM"):
        current.requires_grad_(True)
        scores = model(current)
        done = done | (scores.argmax(dim=1) != y)
        if bool(done.all()):
            current = current.detach()
            break
        per_sample = torch.nn.functional.cross_entropy(scores, y, reduction="none")
        gradient = torch.autograd.grad(per_sample.sum(), current)[0]
        moved = torch.minimum(torch.maximum(current.detach() + step * gradient.sign(), low), high)
        mask = (~done).view(-1, *[1] * (x.dim() - 1))
        current = torch.where(mask, moved, current.detach())
        used = used + (~done).long()
    return current.detach(), used
''',
    "deepfool": '''\
from tqdm.auto import tqdm


def deepfool(model, x, num_classes, overshoot=0.02, max_iter=50):
    n = x.shape[0]
    with torch.no_grad():
        ranked = torch.sort(model(x), dim=1, descending=True).indices[:, :num_classes]
    start_label = ranked[:, 0]
    total = torch.zeros_like(x)
    point = x.clone()
    count = torch.zeros(n, dtype=torch.int64, device=x.device)
    finished = torch.zeros(n, dtype=torch.bool, device=x.device)
    for _ in tqdm(range(max_iter), desc="DeepFool"):
        leaf = point.clone().requires_grad_(True)
        logits = model(leaf)
        finished = finished | (logits.argmax(dim=1) != start_label)
        if bool(finished.all()):
            break
        # Gradients of every logit, then the candidates' rows.
        jac = torch.stack([torch.autograd.grad(logits[:, j].sum(), leaf, retain_graph=True)[0]
                           for j in range(logits.shape[1])], dim=1).flatten(2)
        cand_grad = jac[torch.arange(n, device=x.device)[:, None], ranked]
        cand_logit = logits.detach().gather(1, ranked)
        w = cand_grad[:, 1:] - cand_grad[:, :1]
        f = cand_logit[:, 1:] - cand_logit[:, :1]
        norms = torch.linalg.vector_norm(w, dim=2)
        ratio = f.abs() / norms
        pick = ratio.min(dim=1).indices
        w_pick = w[torch.arange(n, device=x.device), pick]
        size = ratio.min(dim=1).values + 1e-4
        step = size[:, None] * w_pick / torch.linalg.vector_norm(w_pick, dim=1, keepdim=True)
        moving = (~finished).view(-1, *[1] * (x.dim() - 1))
        total = torch.where(moving, total + step.view_as(x), total)
        point = torch.where(moving, torch.clamp(x + (1 + overshoot) * total, 0, 1), point)
        count += (~finished).long()
    return point.detach(), count
''',
    "one_pixel": '''\
class _PixelSearch:
    """Differential evolution over (row, col, values...) for one image."""

    def __init__(self, model, image, label, pixels):
        self.model, self.image, self.label, self.pixels = model, image, label, pixels
        self.channels, self.height, self.width = image.shape
        self.hit = None

    def bounds(self):
        one = [(0, self.height), (0, self.width)] + [(0, 1)] * self.channels
        return one * self.pixels

    def images(self, genes):
        genes = np.atleast_2d(np.asarray(genes).T)  # (members, variables)
        batch = self.image.unsqueeze(0).repeat(genes.shape[0], 1, 1, 1)
        width = 2 + self.channels
        for p in range(self.pixels):
            part = genes[:, p * width : (p + 1) * width]
            r = np.minimum(part[:, 0].astype(int), self.height - 1)
            c = np.minimum(part[:, 1].astype(int), self.width - 1)
            for m in range(genes.shape[0]):
                batch[m, :, r[m], c[m]] = torch.as_tensor(part[m, 2:], dtype=batch.dtype)
        return batch

    def loss(self, genes):
        with torch.no_grad():
            probs = torch.softmax(self.model(self.images(genes)), dim=1)
        wrong = torch.nonzero(probs.argmax(dim=1) != self.label).flatten()
        if self.hit is None and wrong.numel() > 0:
            self.hit = np.asarray(genes)[:, wrong[0].item()].copy()
        return probs[:, self.label].numpy()

    def stop(self, intermediate_result):
        return self.hit is not None


def one_pixel(model, x, y, pixels=1, popsize=400, maxiter=100, seed=0):
    results = []
    for image, label in zip(x, y.tolist()):
        search = _PixelSearch(model, image.detach(), label, pixels)
        variables = len(search.bounds())
        found = differential_evolution(search.loss, search.bounds(), maxiter=maxiter,
                                       popsize=max(1, popsize // variables), recombination=1,
                                       atol=-1, polish=False, seed=seed, vectorized=True,
                                       updating="deferred", callback=search.stop)
        genes = search.hit if search.hit is not None else found.x
        results.append(search.images(genes.reshape(-1, 1))[0])
    return torch.stack(results)
''',
    "counting_model": '''\
class CountingModel(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.reset()
        self.register_forward_pre_hook(CountingModel._count)

    @staticmethod
    def _count(module, inputs):
        module.queries += int(inputs[0].size(0))

    def reset(self):
        self.queries = 0

    def forward(self, x):
        return self.inner(x)
''',
    "compare": '''\
def compare(correct_a, correct_b, confidence=0.95):
    first = [bool(v) for v in (correct_a.tolist() if hasattr(correct_a, "tolist") else correct_a)]
    second = [bool(v) for v in (correct_b.tolist() if hasattr(correct_b, "tolist") else correct_b)]
    if not first or len(first) != len(second):
        raise ValueError("need two equally long, non-empty outcome vectors")
    n = len(first)
    both = only_a = only_b = neither = 0
    for u, v in zip(first, second):
        if u and v:
            both += 1
        elif u:
            only_a += 1
        elif v:
            only_b += 1
        else:
            neither += 1
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    quantile = norm.ppf((1 + confidence) / 2)
    margin = quantile * ((p_a * (1 - p_a) + p_b * (1 - p_b)) / n) ** 0.5
    exact = mcnemar(np.array([[both, only_a], [only_b, neither]]), exact=True)
    return {"accuracy_a": p_a, "accuracy_b": p_b, "difference": p_a - p_b,
            "ci_low": p_a - p_b - margin, "ci_high": p_a - p_b + margin,
            "b": only_a, "c": only_b, "p_value": exact.pvalue}
''',
}
