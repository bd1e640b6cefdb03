"""A corpus of broken and dishonest submissions of the tiny corpus lab (``lab99_corpus.py``).

Each entry: a student name -> :class:`Entry` (category, the notebook or raw bytes, and what
grading must do with it). Built from the lab's release and its instructor's answers, so the
entries stay valid when the lab changes. The course test ``tests/course/test_corpus.py``
grades them all in one sandboxed run next to an honest student, and checks: no crash, no
hang, no effect on anyone else, no process left, every cheat at 0 or flagged, points earned
before a breakage kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from labsupport.instructor import cells, demo

GOOD_DOUBLE = "def double(x):\n    return 2 * x\n"
GOOD_SQUARE = "def square(x):\n    return x * x\n"
WRONG_DOUBLE = "def double(x):\n    return x\n"
DOUBLE_TESTS = ("test_double_visible", "test_double_hidden")
SQUARE_TESTS = ("test_square_visible", "test_square_hidden")
ALL_TESTS = DOUBLE_TESTS + SQUARE_TESTS


@dataclass
class Entry:
    """One corpus submission and what grading must make of it.

    ``zero``: test cells that must score 0; ``full``: test cells that must keep full marks;
    ``flag``: a text every one of the student's flags lists must contain one of (None: no
    flag required); ``fails``: the submission cannot be graded at all (flagged, non-zero
    exit); ``marker``: a file the submission tries to create outside its sandbox.
    """

    category: str
    notebook: Any = None
    raw: bytes | None = None
    zero: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    flag: str | None = None
    fails: bool = False
    cheat: bool = False
    markers: list[str] = field(default_factory=list)


def _answers(notebook: Any, **sources: str) -> Any:
    return demo.with_answers(notebook, sources)


def _append(notebook: Any, source: str) -> Any:
    import nbformat

    notebook = copy.deepcopy(notebook)
    notebook.cells.append(nbformat.v4.new_code_cell(source))
    return notebook


def build(source: Any, release: Any, *, root: str, victim: str) -> dict[str, Entry]:
    """The corpus for a course root ``root`` (absolute path) and an honest ``victim``."""
    good = demo.perfect(source, release)
    victim_nb = f"{root}/submitted/{victim}/lab99/lab99.ipynb"
    gradebook = f"{root}/gradebook.db"
    corpus: dict[str, Entry] = {}

    def cheat(name: str, notebook: Any, *, zero=ALL_TESTS, full=(), flag="", markers=()):
        corpus[name] = Entry("cheat", notebook, zero=zero, full=full, flag=flag, cheat=True,
                             markers=list(markers))

    def broken(name: str, notebook: Any = None, *, zero=(), full=(), flag=None, raw=None,
               fails=False):
        corpus[name] = Entry("broken", notebook, raw=raw, zero=zero, full=full, flag=flag,
                             fails=fails)

    # ---- cheats: reach the instructor's files, the gradebook or other students
    cheat("cheat-exec-source", _answers(release, double=(
        "import json\n"
        "nb = json.load(open('../../../source/lab99/lab99.ipynb'))\n"
        "for c in nb['cells']:\n"
        "    if c['metadata'].get('nbgrader', {}).get('solution') and c['cell_type'] == 'code':\n"
        "        exec(''.join(c['source']).replace('### BEGIN SOLUTION', ''))\n")),
        zero=DOUBLE_TESTS, flag="")
    cheat("cheat-exec-source-absolute", _answers(release, double=(
        f"exec(open({root!r} + '/source/lab99/lab99.ipynb').read())\n")),
        zero=DOUBLE_TESTS, flag="")
    cheat("cheat-read-gradebook", _answers(release, double=(
        "import sqlite3\n"
        f"rows = sqlite3.connect({gradebook!r}).execute('select source from source_cell')"
        ".fetchall()\n"
        "print(rows)\n")), zero=DOUBLE_TESTS, flag="")
    cheat("cheat-write-gradebook", _answers(good, square=GOOD_SQUARE + (
        "import sqlite3\n"
        f"db = sqlite3.connect({gradebook!r})\n"
        "db.execute('update grade set manual_score = 0')\n"
        "db.execute('update grade set manual_score = 99 where id in (select id from grade)')\n"
        "db.commit()\n")), zero=(), full=ALL_TESTS, flag="")
    cheat("cheat-overwrite-other-student", _answers(good, square=GOOD_SQUARE + (
        "import os\n"
        f"for path in [{victim_nb!r}, '../../{victim}/lab99/lab99.ipynb']:\n"
        "    try:\n"
        "        open(path, 'w').write('{}')\n"
        "    except OSError as error:\n"
        "        print('blocked', error)\n")), zero=(), full=ALL_TESTS, flag="")
    marker = f"{root}/pwned-by-background"
    cheat("cheat-background-process", _answers(good, square=GOOD_SQUARE + (
        "import subprocess\n"
        f"subprocess.Popen(['sh', '-c', 'sleep 4; echo pwned > {marker}'],\n"
        "                 start_new_session=True)\n")), zero=(), full=ALL_TESTS, flag="",
        markers=[marker])
    cheat("cheat-shell-escape", _answers(good, square=GOOD_SQUARE + (
        f"!rm -rf {root}/submitted/{victim}\n!cat /etc/hostname\n")),
        zero=(), full=ALL_TESTS, flag="")
    cheat("cheat-network", _answers(good, square=GOOD_SQUARE + (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
        "except OSError as error:\n"
        "    print('no network', error)\n")), zero=(), full=ALL_TESTS, flag="")
    cheat("cheat-read-own-notebook", _answers(release, double=(
        "import glob\n"
        "for path in glob.glob('*.ipynb') + glob.glob('../*.ipynb'):\n"
        "    print(open(path).read())\n")), zero=DOUBLE_TESTS, flag=None)
    # ---- cheats: change what the tests run or rely on, in the kernel
    cheat("cheat-input-transformer", _answers(release, double=(
        "ip = get_ipython()\n"
        "ip.input_transformers_post.append(lambda lines: ['pass\\n'])\n")), flag="")
    cheat("cheat-ast-transformer", _answers(release, double=(
        "import ast\n"
        "class Drop(ast.NodeTransformer):\n"
        "    def visit_Assert(self, node):\n"
        "        return None\n"
        "get_ipython().ast_transformers.append(Drop())\n")), flag="")
    cheat("cheat-patch-checks", _answers(release, double=(
        "import labsupport.checks.common as checks\n"
        "checks.assert_close = lambda *args, **kwargs: None\n"
        "def double(x):\n    return x\n")), zero=DOUBLE_TESTS, flag="")
    cheat("cheat-rebind-test-helper", _answers(release, double=(
        "assert_close = lambda *args, **kwargs: None\n"
        "def double(x):\n    return x\n")), zero=DOUBLE_TESTS, flag="")
    cheat("cheat-sys-modules", _answers(release, double=(
        "import sys, types\n"
        "fake = types.ModuleType('labsupport.checks.common')\n"
        "fake.assert_close = lambda *args, **kwargs: None\n"
        "sys.modules['labsupport.checks.common'] = fake\n"
        "def double(x):\n    return x\n")), zero=DOUBLE_TESTS, flag="")
    cheat("cheat-patch-torch", _answers(release, double=(
        "import torch\n"
        "torch.equal = lambda *args, **kwargs: True\n"
        "torch.allclose = lambda *args, **kwargs: True\n"
        "torch.testing.assert_close = lambda *args, **kwargs: None\n"
        "def double(x):\n    return x\n")), zero=DOUBLE_TESTS, flag="")
    cheat("cheat-pre-run-callback", _answers(release, double=(
        "def _fake(info):\n"
        "    globals()['assert_close'] = lambda *a, **k: None\n"
        "get_ipython().events.register('pre_run_cell', _fake)\n"
        "def double(x):\n    return x\n")), zero=DOUBLE_TESTS, flag="")
    cheat("cheat-shell-override", _answers(release, double=(
        "ip = get_ipython()\n"
        "original = ip.run_cell\n"
        "def run_cell(raw_cell, *args, **kwargs):\n"
        "    return original('pass' if 'assert' in raw_cell else raw_cell, *args, **kwargs)\n"
        "ip.run_cell = run_cell\n")), flag="")
    cheat("cheat-settrace", _answers(release, double=(
        "import sys\n"
        "sys.settrace(lambda *args: None)\n"
        "def double(x):\n    return x\n")), zero=DOUBLE_TESTS, flag="")
    cheat("cheat-kill-executor", _answers(good, square=(
        "import os, signal\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n")), zero=SQUARE_TESTS, full=DOUBLE_TESTS,
        flag="")
    cheat("cheat-builtins", _answers(release, double=(
        "import builtins\n"
        "builtins.isinstance = lambda *args: True\n"
        "def double(x):\n    return x\n")), zero=DOUBLE_TESTS, flag="")
    # ---- broken notebooks
    broken("broken-not-json", raw=b"\x00\x01 this is not a notebook {", fails=True, flag="")
    broken("broken-empty-file", raw=b"", fails=True, flag="")
    nb = copy.deepcopy(good)
    cells.find(nb, "double").metadata["nbgrader"]["schema_version"] = 99
    broken("broken-schema-version", nb, full=ALL_TESTS, flag="metadata")
    nb = copy.deepcopy(good)
    index = next(i for i, c in enumerate(nb.cells) if cells.grade_id(c) == "double")
    nb.cells.insert(index + 1, copy.deepcopy(nb.cells[index]))
    nb.cells[index + 1].pop("id", None)
    broken("broken-duplicated-cell", nb, full=ALL_TESTS, flag="duplicated")
    nb = copy.deepcopy(good)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    broken("broken-metadata-lost", nb, full=ALL_TESTS, flag="lost")
    nb = copy.deepcopy(good)
    cells.find(nb, "double").cell_type = "markdown"
    broken("broken-cell-type-changed", nb, full=ALL_TESTS, flag="cell type")
    broken("broken-exit-last-cell", _append(good, "import os\nos._exit(1)\n"),
           full=ALL_TESTS, flag="")
    broken("broken-exit-mid", _answers(good, square="import os\nos._exit(3)\n"),
           zero=SQUARE_TESTS, full=DOUBLE_TESTS, flag="")
    broken("broken-deaf-loop", _answers(good, square=(
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(0.05)\n")), zero=SQUARE_TESTS, full=DOUBLE_TESTS,
        flag="stopped")
    broken("broken-endless-loop", _answers(good, double="while True:\n    pass\n"),
           zero=DOUBLE_TESTS, full=SQUARE_TESTS)
    broken("broken-syntax-error", _answers(good, double="def double(x)\n    return 2 * x\n"),
           zero=DOUBLE_TESTS, full=SQUARE_TESTS)
    broken("broken-raises", _answers(good, double="raise RuntimeError('not done')\n"),
           zero=DOUBLE_TESTS, full=SQUARE_TESTS)
    broken("broken-system-exit", _answers(good, double=GOOD_DOUBLE + "raise SystemExit(2)\n"),
           full=ALL_TESTS)
    nb = copy.deepcopy(good)
    nb.cells = [c for c in nb.cells if cells.grade_id(c) not in ("double", "test_double_hidden")]
    broken("broken-deleted-cells", nb, zero=DOUBLE_TESTS, full=SQUARE_TESTS, flag="missing")
    broken("broken-memory-bomb", _answers(good, double="blob = bytearray(64 * 2**30)\n"),
           zero=DOUBLE_TESTS, full=SQUARE_TESTS)
    broken("broken-process-bomb", _answers(good, square=GOOD_SQUARE + (
        "import subprocess\n"
        "children = []\n"
        "try:\n"
        "    for _ in range(600):\n"
        "        children.append(subprocess.Popen(['sleep', '120']))\n"
        "except OSError as error:\n"
        "    print('stopped at', len(children), error)\n")), full=ALL_TESTS, flag="")
    broken("broken-huge-output", _answers(good, double=GOOD_DOUBLE + "print('x' * 5_000_000)\n"),
           full=ALL_TESTS)
    nb = copy.deepcopy(good)
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    broken("broken-kernelspec", nb, full=ALL_TESTS)
    nb = copy.deepcopy(good)
    cells.find(nb, "test_double_visible").source = "print('all tests passed')\n"
    broken("broken-edited-test", _answers(nb, double=WRONG_DOUBLE), zero=DOUBLE_TESTS,
           full=SQUARE_TESTS, flag="changed")
    # ---- correct answers that must keep full marks
    broken("ok-stderr", _answers(good, double=(
        "import sys\n"
        "def double(x):\n"
        "    print('doubling', tuple(x.shape), file=sys.stderr)\n"
        "    return x + x\n")), full=ALL_TESTS)
    broken("ok-progress-bar", _answers(good, square=(
        "from tqdm.auto import tqdm\n"
        "def square(x):\n"
        "    flat = x.flatten().clone()\n"
        "    for i in tqdm(range(len(flat)), desc='squaring'):\n"
        "        flat[i] = flat[i] ** 2\n"
        "    return flat.reshape(x.shape)\n")), full=ALL_TESTS)
    broken("ok-warnings", _answers(good, double=(
        "import warnings\n"
        "def double(x):\n"
        "    warnings.warn('this is fine')\n"
        "    return 2 * x\n")), full=ALL_TESTS)
    broken("ok-untouched", release, zero=ALL_TESTS)
    return corpus
