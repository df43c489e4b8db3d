"""`appshield.policy.variables` reads `{name}` tokens and escapes glob characters without `re`
(it is on the start-up path, and `re` with `enum` costs about 15 M instructions there). These
properties hold it to the regular expressions it replaced, on any text."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from appshield.policy import variables

# Braces, glob characters and a few letters, so tokens, stray braces and names all occur.
TEXT = st.text(alphabet="{}*?[]ab/~ _-.", max_size=40)
REFERENCE_TOKEN = re.compile(r"\{([^{}]*)\}|[{}]")


@given(TEXT)
def test_tokens_are_what_the_regular_expression_found(pattern: str) -> None:
    expected = [(m.start(), m.end(), m.group(1)) for m in REFERENCE_TOKEN.finditer(pattern)]
    assert list(variables.tokens(pattern)) == expected


@given(TEXT)
def test_escaping_is_what_the_regular_expression_did(value: str) -> None:
    assert variables.glob_escaped(value) == re.sub(r"([*?\[])", r"[\1]", value)


def test_expand_reports_the_first_stray_brace_or_unknown_name() -> None:
    known = {"home": ("/h",), "tmp": ("/t*",)}
    assert variables.expand("{home}/x/{tmp}", known) == ["/h/x//t[*]"]
    for pattern, shown in (("a}{home}", "'}'"), ("{{home}", "'{'"), ("{nope}/{home}", "'{nope}'")):
        try:
            variables.expand(pattern, known)
        except variables.VariableError as error:
            assert f"unknown variable {shown}" in str(error)
        else:
            raise AssertionError(pattern)
