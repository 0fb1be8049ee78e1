#!/usr/bin/env python3
"""gpt2eval's command line (also installed as the `gpt2eval` console script). See README.md."""
import sys

from gpt2eval.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
