"""A 10,000-rule policy loads in well under 2 s (CPU time of this process, so that other
work on a busy machine does not count)."""

from __future__ import annotations

import time

from appshield.policy.loader import load_text

HEADER = (
    "version: 1\ndefaults: {process: deny, file: allow, network: deny, import: allow}\nrules:\n"
)


def _rule(i: int) -> str:
    kind = i % 4
    if kind == 0:
        return (
            f"  - id: r{i}\n    category: file\n    action: deny\n    match:\n"
            f'      path: ["/srv/app{i}/**", "~/d{i}/*.txt"]\n      access: [read, write]\n'
        )
    if kind == 1:
        return (
            f"  - id: r{i}\n    category: network\n    action: allow\n"
            f'    match: {{host: "*.h{i}.example.com", port: [443, "8000-8100"]}}\n'
        )
    if kind == 2:
        return (
            f"  - id: r{i}\n    category: process\n    action: allow\n"
            f'    match: {{executable: tool{i}, args: [run, "**"]}}\n'
        )
    return (
        f"  - id: r{i}\n    category: import\n    action: alert\n"
        f"    match: {{module: pkg{i}.sub}}\n    scope: [vendor.*]\n"
    )


def test_ten_thousand_rules_load_fast() -> None:
    text = HEADER + "".join(_rule(i) for i in range(10_000))
    start = time.process_time()
    document = load_text(text)
    spent = time.process_time() - start
    assert len(document.rules) == 10_000
    assert spent < 2.0, f"10,000 rules took {spent:.2f} s of CPU"
