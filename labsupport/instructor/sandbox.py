"""Run a command in isolation: the grading sandbox.

On Linux with bubblewrap (``bwrap``) the command sees a fresh root file system holding only
what it needs, read-only (the system, the Python environment, the ``labsupport`` package, the
model cache) plus its own box folder (read-write) at ``/box``: no gradebook, no ``source/``
or ``release/``, no other student, no home folder. It runs in its own mount, pid, network,
IPC and UTS namespaces (loopback only), with resource limits (address space, processes, file
size, open files) and a wall-clock limit; when it ends, every process it started ends too
(pid namespace, ``--die-with-parent``). Run as root, it also drops to an unprivileged user
id of its own per grading slot, so one submission cannot exhaust another's process limit.

Without bubblewrap, ``unshare`` (util-linux) gives the same namespaces and hides the course
folders and home folders under empty mounts (a deny-list, weaker than bubblewrap's
allow-list). Elsewhere (macOS, no privileges) nothing is isolated: a loud warning says so.
``LABSUPPORT_SANDBOX=bwrap|unshare|none`` forces a mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MODES = ("bwrap", "unshare", "none")
MODE_ENV = "LABSUPPORT_SANDBOX"
#: First unprivileged user id of the grading slots (when the grader runs as root).
SLOT_UID = 61000
GIB = 1 << 30


class SandboxError(RuntimeError):
    """The sandbox could not be set up (message says why and what to do)."""


class NotIsolatedWarning(UserWarning):
    """Grading runs without isolation: student code has the grader's rights."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run. The address-space limit must leave room for
    PyTorch's libraries (a CUDA build maps about 4 GiB at import)."""

    memory_bytes: int = 12 * GIB
    processes: int = 256
    file_bytes: int = 2 * GIB
    open_files: int = 4096
    wall_seconds: float = 1800.0


def mode() -> str:
    """The isolation available here: ``bwrap``, ``unshare`` or ``none``."""
    forced = os.environ.get(MODE_ENV)
    if forced:
        if forced not in MODES:
            raise SandboxError(f"{MODE_ENV}={forced!r}: choose one of {', '.join(MODES)}.")
        return forced
    if not sys.platform.startswith("linux"):
        return "none"
    if shutil.which("bwrap") and _works(["bwrap", "--ro-bind", "/", "/", "--unshare-all",
                                        "--die-with-parent", "true"]):
        return "bwrap"
    if shutil.which("unshare") and _works(["unshare", *_unshare_flags(), "true"]):
        return "unshare"
    return "none"


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _unshare_flags() -> list[str]:
    flags = ["--fork", "--pid", "--mount-proc", "--net", "--mount", "--ipc", "--uts",
             "--kill-child"]
    return flags if os.geteuid() == 0 else ["--user", "--map-root-user", *flags]


def warn_if_not_isolated(current: str) -> None:
    """The loud warning of a grading run without isolation."""
    if current == "none":
        warnings.warn(
            "GRADING IS NOT ISOLATED: no bubblewrap or unshare here, so student code runs with "
            "your rights and can read the gradebook and other submissions. Grade on Linux "
            "with bubblewrap (apt install bubblewrap) for real grades.",
            NotIsolatedWarning, stacklevel=2)


def _environment_roots() -> list[Path]:
    """Folders the Python environment needs: prefixes and every venv on ``sys.path``."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        for parent in (path, *path.parents):
            if (parent / "pyvenv.cfg").is_file():
                roots.add(parent)
                break
    roots.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return sorted(r for r in roots if r.exists() and r != Path("/"))


def package_roots() -> list[Path]:
    """The ``labsupport`` package folder and, in a checkout, its ``assets/``."""
    import labsupport

    package = Path(labsupport.__file__).resolve().parent
    roots = [package]
    if (package.parent / "assets" / "manifest.json").is_file():
        roots.append(package.parent / "assets")
    return roots


def _bwrap(box: Path, readonly: Sequence[Path], env: dict[str, str]) -> list[str]:
    # As root, no user namespace: the command inside drops to its own unprivileged user id.
    namespaces = (["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                   "--unshare-cgroup-try"] if os.geteuid() == 0 else ["--unshare-all"])
    argv = ["bwrap", *namespaces, "--die-with-parent", "--new-session", "--clearenv",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for name in ("usr", "etc"):
        argv += ["--ro-bind", f"/{name}", f"/{name}"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    binds = [r for r in (*_environment_roots(), *package_roots(), *readonly)
             if not str(r).startswith(("/usr/", "/etc/"))]
    # Folders above a bind are made traversable (bwrap would copy a 0700 /root).
    parents = sorted({p for r in binds for p in r.parents if p != Path("/")},
                     key=lambda p: len(p.parts))
    for parent in parents:
        argv += ["--perms", "0755", "--dir", str(parent)]
    for root in binds:
        argv += ["--ro-bind", str(root), str(root)]
    argv += ["--bind", str(box), "/box", "--chdir", "/box"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv


def hidden_paths(extra: Sequence[Path]) -> list[Path]:
    """What the ``unshare`` mode hides: home folders and the given folders."""
    candidates = [Path.home(), Path("/root"), Path("/home"), *extra]
    return sorted({p.resolve() for p in candidates if p.is_dir()})


def command(box: Path, argv: Sequence[str], *, current: str, env: dict[str, str],
            limits: Limits, slot: int = 0, readonly: Sequence[Path] = (),
            hide: Sequence[Path] = ()) -> list[str]:
    """The full command line running ``argv`` isolated in ``box`` (see the module doc).

    ``readonly``: extra folders mounted read-only at their own path (bwrap mode).
    ``hide``: extra folders hidden under an empty mount (unshare mode).
    """
    limit = ["prlimit", f"--as={limits.memory_bytes}", f"--fsize={limits.file_bytes}",
             f"--nofile={limits.open_files}"]
    drop: list[str] = []
    if os.geteuid() == 0 and current != "none":
        uid = SLOT_UID + slot
        limit.append(f"--nproc={limits.processes}")
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--"]
    if current == "bwrap":
        return [*limit, "--", *_bwrap(box, readonly, env), *drop, *argv]
    environment = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    if current == "unshare":
        keep = [str(p) for p in (*_environment_roots(), *package_roots(), box)]
        hider = [sys.executable, "-m", "labsupport.instructor.sandbox", "--hide",
                 *[str(p) for p in hidden_paths(hide)], "--keep", *keep, "--"]
        return [*limit, "--", "unshare", *_unshare_flags(), *hider, *drop, *environment,
                *argv]
    return [*limit, "--", *environment, *argv]


def run(box: Path, argv: Sequence[str], *, current: str, env: dict[str, str],
        limits: Limits = Limits(), slot: int = 0, readonly: Sequence[Path] = (),
        hide: Sequence[Path] = (), stdout: Path | None = None, log: Path | None = None) -> int:
    """Run ``argv`` isolated in ``box``; return its exit status (-9 when it ran past
    ``limits.wall_seconds`` and was killed). Its standard output goes to the file ``stdout``
    and its standard error to ``log`` (each dropped when None); keep both outside ``box``."""
    if os.geteuid() == 0 and current != "none":
        uid = SLOT_UID + slot
        for path in (box, *box.rglob("*")):
            os.chown(path, uid, uid)
    cmd = command(box, argv, current=current, env=env, limits=limits, slot=slot,
                  readonly=readonly, hide=hide)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(stdout, "ab")) if stdout else subprocess.DEVNULL
        err = stack.enter_context(open(log, "ab")) if log else subprocess.DEVNULL
        process = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=str(box))
        try:
            return process.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            return -9
        finally:
            _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the run's whole process group (the sandbox's pid namespace dies with it)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()


def _hide_and_exec(argv: list[str]) -> int:
    """``--hide P... --keep K... -- CMD``: inside a fresh mount namespace (unshare mode), put
    an empty tmpfs over each hidden folder, bind back the kept folders beneath them, exec."""
    split = argv.index("--")
    options, cmd = argv[:split], argv[split + 1:]
    keep_at = options.index("--keep")
    hide, keep = options[1:keep_at], options[keep_at + 1:]
    staged = {}
    for path in keep:  # keep a handle on kept folders before their parents are hidden
        if any(Path(path).is_relative_to(h) for h in hide):
            stage = Path("/tmp") / f".keep-{len(staged)}"
            stage.mkdir(exist_ok=True)
            subprocess.run(["mount", "--bind", path, str(stage)], check=True)
            staged[path] = stage
    for path in hide:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", path], check=True)
    for path, stage in staged.items():
        Path(path).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--move", str(stage), path], check=True)
    os.execvp(cmd[0], cmd)
    return 127


if __name__ == "__main__":
    sys.exit(_hide_and_exec(sys.argv[1:]))
