"""``python -m mnemos`` runs the command line (same as the ``mnemos`` script)."""

import sys

from mnemos.cli import main

sys.exit(main())
