"""`make demo`: the main job on the embedded default data."""

from __future__ import annotations

import sys

from sfunwind.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["--help"]))
