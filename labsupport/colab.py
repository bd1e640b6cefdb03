"""The first code cell of every lab: installs ``labsupport`` on Google Colab, nowhere else.

Colab has neither this repository nor the package, so the release notebook installs it from
the course repository (never nbgrader: it would replace Colab's Jupyter stack). Elsewhere the
cell does nothing: students in JupyterLab use the course environment.
Instructors who host the course elsewhere change ``PACKAGE_SOURCE`` and the cell text with it
(the course tests check that every lab's first cell equals ``COLAB_CELL``).
"""

from __future__ import annotations

PACKAGE_SOURCE = "labsupport @ git+https://github.com/trustworthy-ml-course/labs.git"

COLAB_CELL = f'''# Google Colab only: install the course's support package (does nothing elsewhere).
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{PACKAGE_SOURCE}"], check=True)'''
