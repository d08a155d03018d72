"""``python -m clearconv`` runs the command line."""

import sys

from clearconv.cli import main

sys.exit(main())
