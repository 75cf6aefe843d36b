"""No product function's body runs over 60 lines: long ones are split into named steps.

The body is counted from its first statement after the docstring, so a Typer command's option
declarations and help text do not count. The lab (recocli/lab) is not the product."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("lakehouse", "spark_jobs", "recocli")
LIMIT = 60


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
    return node.end_lineno - body[0].lineno + 1


def test_no_product_function_body_over_60_lines():
    long = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "lab" in path.relative_to(ROOT).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and body_lines(node) > LIMIT:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    long.append(f"{where} {node.name} ({body_lines(node)} lines)")
    assert not long, "split into named steps: " + ", ".join(long)
