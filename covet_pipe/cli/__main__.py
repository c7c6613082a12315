"""``python -m covet_pipe.cli``: the covet-pipe command line."""

import sys

from covet_pipe.cli import main

sys.exit(main())
