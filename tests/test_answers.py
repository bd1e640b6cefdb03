"""labsupport.answers: a withheld function refuses to run inside a notebook-defined function,
and works everywhere else (library code, a cell's top level, pytest)."""

from __future__ import annotations

import pytest

from labsupport.answers import WriteYourOwn, assert_own, withheld


@withheld("Lab 0, task double")
def double(x):
    return 2 * x


def run_cell(source: str, namespace: dict, number: int = 1) -> dict:
    """Execute ``source`` as IPython does a notebook cell (its code file name)."""
    exec(compile(source, f"/tmp/ipykernel_4242/{1000 + number}.py", "exec"), namespace)
    return namespace


def test_works_in_library_code_and_pytest():
    assert double(3) == 6
    assert double.__withheld_task__ == "Lab 0, task double"
    assert not hasattr(double, "__wrapped__")


def test_works_at_a_cells_top_level_comprehensions_included():
    ns = run_cell("a = double(2)\nb = [double(k) for k in range(3)]\n"
                  "c = {k: double(k) for k in range(2)}\nd = {double(k) for k in range(2)}\n"
                  "for k in range(2):\n    e = double(k)\n", {"double": double})
    assert (ns["a"], ns["b"], ns["c"], ns["d"], ns["e"]) == (4, [0, 2, 4], {0: 0, 1: 2},
                                                             {0, 2}, 2)


def test_a_generator_expression_counts_as_a_function():
    """Its frame's caller is its consumer, not its definer: refused even at the top level."""
    with pytest.raises(WriteYourOwn, match="<genexpr>"):
        run_cell("total = sum(double(k) for k in range(3))\n", {"double": double})


@pytest.mark.parametrize("body", [
    "return double(x)",
    "return [double(k) for k in [x]][0]",
    "return sum(double(k) for k in [x])",
    "return (lambda: double(x))()",
])
def test_refuses_inside_a_notebook_function(body):
    ns = run_cell(f"def mine(x):\n    {body}\n", {"double": double})
    with pytest.raises(WriteYourOwn, match=r"Lab 0, task double.*mine\(\)"):
        ns["mine"](1)


def test_refuses_a_lambda_alias_defined_in_a_cell():
    ns = run_cell("mine = lambda x: double(x)\n", {"double": double})
    with pytest.raises(WriteYourOwn):
        ns["mine"](1)


def test_refuses_when_a_notebook_function_is_anywhere_up_the_stack():
    """The student's function calls library code that calls the withheld function."""
    ns = run_cell("def mine(x, helper):\n    return helper(x)\n", {})
    with pytest.raises(WriteYourOwn):
        ns["mine"](1, lambda x: double(x))


def test_assert_own_accepts_notebook_functions_and_classes_only():
    ns = run_cell("def mine(x):\n    return x\n\nclass Mine:\n    def __init__(self):\n"
                  "        pass\n", {})
    assert_own(ns["mine"], "mine")
    assert_own(ns["Mine"], "Mine")
    for alias in (double, pytest.approx, print, lambda x: x):
        with pytest.raises(AssertionError, match="must be a function you define"):
            assert_own(alias, "mine")
