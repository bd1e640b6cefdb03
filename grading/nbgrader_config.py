"""nbgrader configuration of the course (the course root is this folder, ``grading/``).

Read by ``labsupport release|grade`` (through nbgrader's Python API) and by the ``nbgrader``
command when run here. Tests load it and override what they must (e.g. a shorter timeout).
"""

from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
)

from labsupport.instructor.grading import RestoreMissingCells

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "trustworthy-ml"

# Per-cell time limit while autograding and validating. Under the autograder the labs run
# their `smoke` profile, whose experiment cells take seconds on a laptop CPU; the margin
# covers a loaded grading machine. A cell that runs past it scores 0 (it is interrupted)
# and the rest of the notebook is still graded.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# A test cell that writes anything to stderr scores 0. The labs keep test cells silent;
# this is only a backstop for messages that are harmless and outside the student's control.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = (
    r"\A(?:\s|Matplotlib is building the font cache[^\n]*\n?)*\Z"
)

# A student who deletes a test cell would otherwise get no score for it, silently: put
# graded cells back from the gradebook and grade them (`labsupport grade` also flags them).
c.OverwriteCells.add_missing_cells = True
c.RestoreMissingCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    RestoreMissingCells,
    CheckCellMetadata,
]
