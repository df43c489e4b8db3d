"""`import appshield.auto`: switch the shield on with one line at the top of an app.

The policy is discovered (APPSHIELD_POLICY, then `appshield.yaml` / `.appshield.yaml` in the
current folder and each parent up to the repository root) and installed locked. If it cannot
start (no policy found, an invalid policy, a missing dependency), the process ends with exit
code 2 and one line on stderr: it never runs unshielded. With APPSHIELD_DISABLE=1 set at
start-up, nothing is patched and one line says so.

Importing it in a process that `appshield run`, the bootstrap or `opentelemetry-instrument`
already shielded changes nothing.
"""

from __future__ import annotations

from appshield.activation import activate

handle = activate("auto")
