"""``python -m defdistill.cli``."""

import sys

from defdistill.cli.main import main

sys.exit(main())
