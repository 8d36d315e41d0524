"""``python -m scorekit.cli``: the same as the ``scorekit`` command."""

import sys

from scorekit.cli.command import main

sys.exit(main())
