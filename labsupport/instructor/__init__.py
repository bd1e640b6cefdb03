"""The instructor's layer: release, sandboxed autograding, gradebook export, demo
submissions, papermill runs, the student bundle and the ``labsupport`` CLI.

The student layer (``labsupport`` without this subpackage) never imports it, and the student
wheel leaves it out.
"""
