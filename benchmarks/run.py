"""Run the benchmark suite (same as `funcnets bench`): prints a table, optionally writes
JSON (--json) and a PNG of the ratios (--plot).

    python benchmarks/run.py --json benchmarks/results.json --plot benchmarks/ratios.png
"""

import sys

from funcnets.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
