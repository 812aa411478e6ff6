"""
C{python -m p2pnet ...}: the same as the C{p2pnet} console script.
"""

import sys

from p2pnet.cli import main

sys.exit(main())
