"""``python -m covet_pipe.cli``: the covet-pipe command line (importing this module runs nothing)."""

import sys

from covet_pipe.cli import main

if __name__ == "__main__":
    sys.exit(main())
