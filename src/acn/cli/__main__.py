"""``python -m acn.cli`` (the same as ``python -m acn`` and the ``acn`` entry point)."""

import sys

from acn.cli import main

sys.exit(main())
