"""``python -m acn`` (also what ``torchrun -m acn`` runs)."""

import sys

from acn.cli import main

sys.exit(main())
