# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # A tiny lab for the grading corpus
#
# Two tasks with visible and hidden tests and one written answer: small enough that a corpus
# of broken and dishonest submissions grades in seconds each.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Google Colab setup: the release puts the pinned install of the course's support package
# here (labsupport.instructor.colab); this source copy does nothing.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from labsupport.checks.common import assert_close


# %% nbgrader={"grade": false, "grade_id": "double", "locked": false, "schema_version": 3, "solution": true, "task": false}
def double(x):
    """Twice ``x``."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_double_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_close(double(torch.ones(3)), 2 * torch.ones(3), what="double of ones")

# %% nbgrader={"grade": true, "grade_id": "test_double_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
assert_close(double(torch.arange(5.0)), torch.arange(5.0) * 2, what="double of a range")
assert torch.equal(double(torch.tensor([-3])), torch.tensor([-6]))
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "square", "locked": false, "schema_version": 3, "solution": true, "task": false}
def square(x):
    """``x`` squared, elementwise."""
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_square_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
assert_close(square(torch.full((2,), 3.0)), torch.full((2,), 9.0), what="square of threes")

# %% nbgrader={"grade": true, "grade_id": "test_square_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
assert_close(square(torch.arange(4.0) - 2), (torch.arange(4.0) - 2) ** 2, what="square")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# Why is squaring not linear?
#
# ### BEGIN SOLUTION
# Because (a + b)^2 differs from a^2 + b^2.
# ### END SOLUTION
