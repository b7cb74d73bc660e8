"""The shipped code never hands a string to a shell: commands are argument lists.

Checked on the syntax tree of every module of the package and every agent: no
``shell=True``, no ``os.system``/``os.popen``/``*_shell`` helpers, and no subprocess call
whose command is a string (a literal, an f-string or a concatenation).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted([*REPO.glob("lib/xenha/**/*.py"), *REPO.glob("agents/*"), *REPO.glob("bin/*")])
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}
FORBIDDEN = {("os", "system"), ("os", "popen"), ("asyncio", "create_subprocess_shell"), ("subprocess", "getoutput"),
             ("subprocess", "getstatusoutput")}  # fmt: skip


def is_string_expression(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.BinOp) and (is_string_expression(node.left) or is_string_expression(node.right))


def violations(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        owner = (
            function.value.id if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name) else ""
        )
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if (owner, name) in FORBIDDEN:
            found.append(f"line {node.lineno}: {owner}.{name}")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"line {node.lineno}: shell=...")
        if owner == "subprocess" and name in SUBPROCESS_CALLS and node.args and is_string_expression(node.args[0]):
            found.append(f"line {node.lineno}: subprocess.{name} with a string command")
    return found


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: str(path.relative_to(REPO)))
def test_no_shell(source: Path) -> None:
    assert violations(ast.parse(source.read_text(), str(source))) == []


def test_the_check_catches_what_it_should() -> None:
    caught = violations(
        ast.parse(
            "import os, subprocess\n"
            "subprocess.run('ls -l', shell=True)\n"
            "subprocess.check_output(f'virsh {x}')\n"
            "os.system('reboot')\n"
            "subprocess.run(['ls', '-l'])\n"
        )
    )
    assert len(caught) == 4, caught
