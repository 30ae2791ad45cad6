"""``python -m agents.harness.cli``: the ``cl-env`` command."""

import sys

from agents.harness.cli import main

sys.exit(main())
