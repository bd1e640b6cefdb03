'''Independently written correct answers to Lab 7's tasks, in another style than the
instructor's (reflection by index arithmetic, ``F.unfold`` and ``kthvalue``; a loop over the
squeezers and NumPy for the threshold; a hook that stores the pooled features, adaptive
pooling, a detector that overrides ``train`` differently and draws a tqdm bar; log-softmax
and an explicit soft cross-entropy that reports to stderr; a straight-through
``autograd.Function`` and a top-2 margin). Each must keep full marks.
'''

SOLUTIONS: dict[str, str] = {
    "spatial_smoothing": """
def _reflected(n, pad, device):
    # scipy's 'reflect' (half-sample symmetric): -1 -> 0, -2 -> 1, n -> n - 1, n + 1 -> n - 2
    i = torch.arange(-pad, n + pad, device=device)
    period = 2 * n
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - 1 - i, i)


def spatial_smoothing(x, window=3):
    if type(window) is not int or window <= 0 or window % 2 != 1:
        raise ValueError(f"spatial_smoothing: the window must be odd and positive, not {window!r}")
    n, c, h, w = x.shape
    pad = (window - 1) // 2
    rows, cols = _reflected(h, pad, x.device), _reflected(w, pad, x.device)
    padded = x.index_select(2, rows).index_select(3, cols)
    columns = F.unfold(padded.reshape(n * c, 1, h + 2 * pad, w + 2 * pad), kernel_size=window)
    middle = (window * window + 1) // 2
    return columns.kthvalue(middle, dim=1).values.reshape(n, c, h, w)
""",
    "feature_squeezing": """
import numpy as np


def squeeze_bits(x, bits):
    top = float(2**bits - 1)
    return (x * top).round().div(top)


def feature_squeezing_score(model, x, squeezers):
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            reference = F.softmax(model(x), dim=-1)
            best = None
            for squeeze in squeezers:
                distance = torch.linalg.vector_norm(reference - F.softmax(model(squeeze(x)), dim=-1),
                                                    ord=1, dim=-1)
                best = distance if best is None else torch.maximum(best, distance)
    finally:
        model.train(was_training)
    return best


def detector_threshold(scores_clean, fpr=0.05):
    scores = np.sort(np.asarray(scores_clean, dtype=np.float64).ravel())
    n = scores.size
    for candidate in scores:  # the smallest score with few enough above it
        if np.count_nonzero(scores > candidate) <= int(np.floor(fpr * n + 1e-9)):
            return float(candidate)
    return float(scores[-1])
""",
    "binary_detector": """
from tqdm.auto import tqdm


class BinaryDetector(nn.Module):
    def __init__(self, model, image_shape):
        super().__init__()
        frozen = copy.deepcopy(model)
        for parameter in frozen.parameters():
            parameter.requires_grad = False
        self.frozen = [frozen.eval()]  # kept out of the module tree: never trained
        self.pooled = []
        frozen.last_conv.register_forward_hook(
            lambda module, inputs, output: self.pooled.append(
                F.adaptive_avg_pool2d(output, 1).flatten(1)))
        device = next(frozen.parameters()).device
        with torch.no_grad():
            width = self._features(torch.zeros((2, *image_shape), device=device)).shape[-1]
        self.head = nn.Linear(width, 2).to(device)

    def _features(self, x):
        self.pooled.clear()
        self.frozen[0](x)
        return self.pooled.pop()

    def forward(self, x):
        return self.head(self._features(x))


def train_detector(detector, x_clean, x_adv, *, epochs=5, lr=1e-2, batch_size=128, seed=0):
    device = detector.head.weight.device
    images = torch.cat((x_clean, x_adv), dim=0)
    targets = torch.zeros(len(images), dtype=torch.int64)
    targets[len(x_clean):] = 1
    optimizer = torch.optim.Adam(list(detector.head.parameters()), lr=lr)
    batches = make_loader(images, targets, batch_size=batch_size, shuffle=True, seed=seed)
    detector.head.train()
    for _ in tqdm(range(epochs), desc="detector"):
        for images_b, targets_b in batches:
            optimizer.zero_grad()
            nn.functional.cross_entropy(detector(images_b.to(device)),
                                        targets_b.to(device)).backward()
            optimizer.step()
    detector.eval()
    return detector


def detector_rates(detector, x_clean, x_adv):
    with torch.no_grad():
        adv_flags = [int(v) for v in detector(x_adv).argmax(dim=1)]
        clean_flags = [int(v) for v in detector(x_clean).argmax(dim=1)]
    return {"false_positive_rate": sum(clean_flags) / len(clean_flags),
            "detection_rate": sum(adv_flags) / len(adv_flags)}
""",
    "distill": """
import sys


def soft_labels(model, x, T, batch_size=512):
    mode = model.training
    model.train(False)
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in torch.split(x, batch_size)])
    model.train(mode)
    return torch.exp(torch.log_softmax(logits.float() / T, dim=1))


def train_at_temperature(model, x, targets, *, T, epochs, lr=1e-3, batch_size=128, seed=0):
    if not targets.is_floating_point():
        targets = F.one_hot(targets.long(), num_classes=int(model(x[:1]).shape[1])).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train(True)
    for epoch in range(epochs):
        total = 0.0
        for images, probabilities in make_loader(x, targets, batch_size=batch_size, shuffle=True,
                                                 seed=seed):
            log_p = torch.log_softmax(model(images) / T, dim=1)
            loss = -(probabilities * log_p).sum(dim=1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss)
        print(f"T={T} epoch {epoch}: loss {total:.4f}", file=sys.stderr)
    model.train(False)
    return model


def distill(make_model, x, y, *, T=100.0, teacher=None, epochs=5, lr=1e-3, batch_size=128,
            seed=0):
    options = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
    if teacher is None:
        teacher = make_model()
        train_at_temperature(teacher, x, y, T=T, **options)
    student = make_model()
    train_at_temperature(student, x, soft_labels(teacher, x, T), T=T, **options)
    return teacher, student
""",
    "adaptive_attacks": """
class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, defended):
        return defended.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _ascend(x, gradient_of, eps, steps, alpha):
    step = alpha if alpha is not None else 2.5 * eps / steps
    lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    current = x.detach().clone()
    for _ in range(steps):
        g = gradient_of(current)
        current = torch.clamp(current + step * torch.sign(g), lower, upper).detach()
    return current


def bpda_attack(model, defense, x, y, *, eps, steps=10, alpha=None):
    model.eval()

    def gradient_of(current):
        current = current.clone().requires_grad_(True)
        defended = defense(current.detach())
        loss = F.cross_entropy(model(_StraightThrough.apply(current, defended)), y,
                               reduction="sum")
        loss.backward()
        return current.grad

    return _ascend(x, gradient_of, eps, steps, alpha)


def margin_attack(model, x, y, *, eps, steps=10, alpha=None):
    model.eval()

    def gradient_of(current):
        current = current.clone().requires_grad_(True)
        z = model(current)
        top2 = z.topk(2, dim=1)
        best_other = torch.where(top2.indices[:, 0] == y, top2.values[:, 1], top2.values[:, 0])
        margin = best_other - z[torch.arange(len(y)), y]
        return torch.autograd.grad(margin.sum(), current)[0]

    return _ascend(x, gradient_of, eps, steps, alpha)
""",
}
