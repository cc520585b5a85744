"""``python -m stbin``: the same as the ``stbin`` command."""

import sys

from stbin.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
