"""docs/lifecycle.md shows what `appshield diff` really prints for the worked example.

Each `<!-- output: appshield ARGS -->` marker is followed by a fenced block that must be
exactly the output of `appshield ARGS` run from the repository root. Run this module as a
script to rewrite the blocks after changing the example or the output format.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from appshield.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "lifecycle.md"
BLOCK = re.compile(
    r"<!-- output: appshield (?P<args>.+?) -->\n```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)


def _run(args: str) -> str:
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out):
            main(shlex.split(args))
    finally:
        os.chdir(cwd)
    return out.getvalue()


def _blocks() -> list[re.Match[str]]:
    return list(BLOCK.finditer(DOC.read_text()))


def test_the_doc_has_the_worked_example_and_the_placeholder() -> None:
    text = DOC.read_text()
    assert "## Record and replay" in text
    assert len(_blocks()) == 2
    assert "upload-sarif" in text


@pytest.mark.parametrize("index", [0, 1])
def test_the_doc_shows_what_the_command_prints(index: int) -> None:
    block = _blocks()[index]
    assert block["body"] == _run(block["args"]), f"rerun: python {__file__}"


def _rewrite() -> None:
    text = DOC.read_text()
    text = BLOCK.sub(
        lambda m: f"<!-- output: appshield {m['args']} -->\n```{m['lang']}\n{_run(m['args'])}```",
        text,
    )
    DOC.write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _rewrite()
