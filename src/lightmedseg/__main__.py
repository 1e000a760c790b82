"""``python -m lightmedseg ...``: the same command line as the ``lightmedseg`` console script."""

import sys

from lightmedseg.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
