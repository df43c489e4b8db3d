"""The app: its own file read, a call to its API through goodhttp, a slug from evil."""

import os

import evil
import goodhttp

with open(os.path.join(os.path.dirname(__file__), "..", "appshield.yaml")) as handle:
    handle.read()
print("api says:", goodhttp.get(int(os.environ["API_PORT"]), "/orders"))
print("slug:", evil.slugify("Compromised Dependency"))
