"""python -m include.integrity verify | history | output (contract: Evidence command line)."""
import sys

from include.integrity.cli import main

sys.exit(main())
