"""Redaction of values that look like secrets, before a report leaves the process.

Reports say what was attempted (a command line, a path, a host), and command lines are where
people put passwords and tokens. What is redacted, by default:
- the value of a secret-named option: `--password=x`, `--api-key x`, `--token=x`;
- `NAME=value` where NAME looks secret (`AWS_SECRET_ACCESS_KEY=...`, `DB_PASSWORD=...`);
- credentials in URLs: `https://user:pass@host` keeps the user, hides the password;
- `Authorization: Bearer x`, `Bearer x`, `Basic x`, and `X-Api-Key: x`-like headers;
- well-known token shapes: AWS access key ids (`AKIA...`), GitHub/Slack tokens, JWTs.

Short options (`-p x`) are left alone on purpose: `-p` is a port for ssh and a password for
mysql, and hiding every port would make reports useless. `APPSHIELD_REDACT=0` turns it all off.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import NamedTuple
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = ["MASK", "Redactor"]

MASK = "[REDACTED]"

_SECRET_WORD = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key"
    r"|auth|credentials?|session[-_]?id|cookie)"
)


class _Compiled(NamedTuple):
    secret_name: re.Pattern[str]
    option_with_value: re.Pattern[str]
    long_option: re.Pattern[str]
    substitutions: tuple[tuple[re.Pattern[str], str], ...]


@functools.cache
def _compiled() -> _Compiled:
    # Compiled on the first report, not at import: compiling costs ~5 ms of start-up.
    return _Compiled(
        # A name that contains a secret word: DB_PASSWORD, aws_secret_access_key, GITHUB_TOKEN.
        re.compile(rf"^[-\w.]*{_SECRET_WORD}[-\w.]*$", re.IGNORECASE),
        re.compile(rf"^(--?[-\w.]*{_SECRET_WORD}[-\w.]*=)(.+)$", re.IGNORECASE),
        re.compile(rf"^--[-\w.]*{_SECRET_WORD}[-\w.]*$", re.IGNORECASE),
        _substitutions(),
    )


def _substitutions() -> tuple[tuple[re.Pattern[str], str], ...]:
    return (
        # scheme://user:password@host -> keep the user, hide the password
        (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):([^/\s@]+)@"), rf"\1:{MASK}@"),
        (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {MASK}"),
        (
            re.compile(
                rf"\b([-\w]*{_SECRET_WORD}[-\w]*\s*[:=]\s*)(?!\[REDACTED\]|(?:Bearer|Basic|Token)\s)[^\s&;,'\"]+",
                re.IGNORECASE,
            ),
            rf"\1{MASK}",
        ),
        (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
        (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|xox[abpors]-[A-Za-z0-9-]{10,})"), MASK),
        (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), MASK),
    )


class Redactor:
    """The on/off switch and a memo of recent results; safe to share between threads."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        # text -> its redacted form. One report redacts the same target up to three times
        # (span attribute, file.path, the APPSHIELD_LOG line), each six regex passes; a
        # dict get/set is atomic, so sharing it between threads is safe.
        self._done: dict[str, str] = {}

    def text(self, value: str) -> str:
        if not self.enabled or not value:
            return value
        exact = value.__class__ is str  # a subclass could lie in __hash__/__eq__
        done = self._done.get(value) if exact else None
        if done is not None:
            return done
        original = value
        for pattern, replacement in _compiled().substitutions:
            value = pattern.sub(replacement, value)
        if exact and len(original) <= 4096:  # bounded: 256 texts of at most 4 KiB each
            if len(self._done) >= 256:
                self._done.clear()
            self._done[original] = value
        return value

    def argv(self, argv: Sequence[str]) -> list[str]:
        """Redact an argument vector item by item; a secret-named long option also hides
        the next item (`--password hunter2`)."""
        if not self.enabled:
            return list(argv)
        out: list[str] = []
        hide_next = False
        for item in argv:
            if hide_next:
                out.append(MASK)
                hide_next = False
                continue
            out.append(self._one_arg(item))
            hide_next = bool(_compiled().long_option.match(item))
        return out

    def _one_arg(self, item: str) -> str:
        patterns = _compiled()
        option = patterns.option_with_value.match(item)
        if option:
            return option.group(1) + MASK
        name, sep, _ = item.partition("=")
        if sep and patterns.secret_name.match(name):
            return name + "=" + MASK
        return self.text(item)

    def command_line(self, argv: Sequence[str], fallback: str) -> str:
        return " ".join(self.argv(argv)) if argv else self.text(fallback)
