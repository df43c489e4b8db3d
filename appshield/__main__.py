"""`python -m appshield`: the same command as the `appshield` script."""

import sys

from appshield.cli import main

sys.exit(main())
