"""The compiled audit hook, the one thing pyproject.toml does not declare (setuptools' table
for extension modules there is still experimental; everything else lives in pyproject.toml).

Optional: an install without a C compiler still succeeds, and appshield then runs its Python
audit hook alone, which decides alike, only slower (docs/operations.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("appshield._c_audit_hook", ["appshield/_c_audit_hook.c"], optional=True),
    ]
)
