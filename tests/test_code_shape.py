"""The shape of the code in src/: no function over 80 lines without a comment saying why.

A function's length is counted as Python's AST sees it, from the ``def``
line to its last line, docstring included (decorators are not counted). A
longer one must say why in a comment that starts ``# Over 80 lines`` and
gives a reason, placed between the ``def`` line and its first statement
after the docstring (right after the signature, or right after the
docstring).
"""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 80
REASON = re.compile(r"#\s*Over 80 lines\b[^A-Za-z]*(?P<why>.*)")


def _first_statement(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.stmt:
    """The first statement of ``fn``'s body that is not its docstring."""
    body = fn.body
    if (
        len(body) > 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[1]
    return body[0]


def _reason(fn: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> str | None:
    """The reason given for ``fn``'s length, or None when there is none."""
    # lines are 1-based in the AST: the def line up to the first statement's
    for line in lines[fn.lineno - 1 : _first_statement(fn).lineno - 1]:
        text = line.strip()
        if not text.startswith("#"):
            continue
        m = REASON.match(text)
        if m and len(m.group("why").split()) >= 3:
            return m.group("why")
    return None


def long_functions(source: str) -> list[tuple[str, int, int, str | None]]:
    """``(name, line, length, reason)`` of every function in ``source`` over 80 lines."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_LINES:
                found.append((node.name, node.lineno, length, _reason(node, lines)))
    return found


def test_no_function_in_src_is_over_80_lines_without_saying_why():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50  # the tree was found
    unexplained = [
        f"{path.relative_to(SRC)}:{line} {name} is {length} lines"
        for path in files
        for name, line, length, why in long_functions(path.read_text(encoding="utf-8"))
        if why is None
    ]
    assert not unexplained, (
        "functions over 80 lines with no '# Over 80 lines: <why>' comment after the def: "
        + "; ".join(unexplained)
    )


def _function(body_lines: int, comment: str | None = None, docstring: bool = False) -> str:
    head = ["def f(x):"]
    if docstring:
        head += ['    """Doc."""']
    if comment is not None:
        head += [f"    {comment}"]
    return "\n".join(head + ["    x += 1"] * body_lines) + "\n"


@pytest.mark.parametrize("docstring", [False, True])
def test_the_checker_counts_the_whole_function(docstring):
    # the def line, and the docstring when there is one, count with the body
    head = 2 if docstring else 1
    assert long_functions(_function(MAX_LINES - head, docstring=docstring)) == []
    found = long_functions(_function(MAX_LINES - head + 1, docstring=docstring))
    assert found == [("f", 1, MAX_LINES + 1, None)]


def test_the_checker_accepts_a_reason_after_the_def_or_the_docstring():
    why = "# Over 80 lines: one flat sequence of steps, read top to bottom."
    for docstring in (False, True):
        [(*_, reason)] = long_functions(_function(90, why, docstring))
        assert reason == "one flat sequence of steps, read top to bottom."


@pytest.mark.parametrize(
    "comment",
    [
        "# Over 80 lines:",  # no reason
        "# Over 80 lines: long",  # not a reason either
        "# long, but fine",  # not the marker
    ],
)
def test_the_checker_refuses_a_missing_or_empty_reason(comment):
    [(*_, reason)] = long_functions(_function(90, comment))
    assert reason is None


def test_the_checker_refuses_a_reason_further_down_the_body():
    source = _function(90).replace("    x += 1\n", "    x += 1\n    # Over 80 lines: a b c\n", 1)
    assert long_functions(source)[0][3] is None
