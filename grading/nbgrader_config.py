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

from labsupport.instructor.autograde import AUTOGRADE_STEPS
from labsupport.instructor.grading import RestoreMissingCells

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "trustworthy-ml"

# Per-cell time limit while autograding and validating. Under the autograder the labs run
# their `smoke` profile, whose experiment cells take seconds on a laptop CPU; the margin
# covers a loaded grading machine. A cell that runs past it scores 0 (it is interrupted)
# and the rest of the notebook is still graded.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# nbgrader scores a test cell that writes anything to stderr as 0. A correct answer may
# print to stderr (a progress bar, a warning, a debug print): a test fails by raising, so
# stderr output is dropped before grading (all of it: the pattern matches any text).
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?s).*"

# What the release puts where a solution was: say what to do, also in the error an unfilled
# task's test ends in (nbgrader's defaults are a bare "YOUR ANSWER HERE" and
# "NotImplementedError:"). The course tests look for NotImplementedError in every stub.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE: replace these two lines with your solution (the task above says "
              "what to write).\n"
              "raise NotImplementedError(\"not written yet: write your solution in this cell, "
              "run it, then run the test cell below\")",
}
c.ClearSolutions.text_stub = (
    "YOUR ANSWER HERE: double-click this cell and replace this text with your answers to the "
    "questions above, citing the numbers of your table and figures.")

# Student code runs in the grading sandbox (labsupport.instructor.sandbox), never in the
# grader's process: nbgrader's Execute step is replaced by SandboxedExecute (which takes
# its per-cell limit from Execute.timeout).
c.Autograde.autograde_preprocessors = list(AUTOGRADE_STEPS)

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

# `labsupport collect LAB DOWNLOAD` (nbgrader's zip_collect): the student id and the file's
# name are read from each file's path in the LMS download (relative, with a leading "/") by
# the first of these patterns that matches; add or replace patterns for another LMS (groups
# student_id and file_id required; timestamp optional, else the file's time in the archive).
c.ZipCollectApp.collector_plugin = "labsupport.instructor.collect.LmsCollector"
c.ZipCollectApp.extractor_plugin = "labsupport.instructor.collect.TimeKeepingExtractor"
c.LmsCollector.named_regexps = [
    # Canvas: <name>_<user id>_<submission id>_<file>, <name>_LATE_<user id>_..._<file>
    r"(?:.*/)?(?P<name>[^/_]+)(?P<late>_LATE)?_(?P<student_id>\d+)_(?P<submission_id>\d+)_"
    r"(?P<file_id>[^/]+)$",
    # Moodle: <Full Name>_<id>_assignsubmission_file_<file>, or files in a folder so named
    r"(?:.*/)?(?P<name>[^/_]+)_(?P<student_id>\d+)_assignsubmission_file"
    r"(?:_|_?/(?:[^/]+/)*)(?P<file_id>[^/]+)$",
    # GitHub Classroom (gh classroom clone): <assignment>-submissions/<assignment>-<user>/...
    r"(?:.*/)?(?P<assignment>[^/]+)-submissions/(?P=assignment)-"
    r"(?P<student_id>[A-Za-z0-9][A-Za-z0-9-]*)/(?:[^/]+/)*(?P<file_id>[^/]+)$",
]

# Feedback (`labsupport feedback`, and nbgrader's own generate_feedback or the formgrader's
# button): hidden-test cells show their name, points and result only, never their code.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "labsupport.instructor.feedback.RedactHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
