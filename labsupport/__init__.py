"""labsupport: the GPU-aware support package of the trustworthy machine learning labs.

One concept a module: ``runtime`` (device, seeds, profiles, timing), ``data`` (the course
dataset), ``models`` (the simple CNN, save/load), ``train`` (training loop, evaluation),
``attacks`` (FGSM, PGD), ``backdoor`` (triggers, poisoning), ``assets`` (pre-trained models),
``report`` (figures, results.json), ``checks`` (what the labs' test cells use).

That is the student layer: what notebooks import. The instructor's tooling (release,
sandboxed autograding, gradebook, runs, CLI) lives in ``labsupport.instructor``, which the
student layer never imports and the student wheel leaves out.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labsupport")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0+unknown"
