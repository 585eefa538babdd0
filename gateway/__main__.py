"""`python -m gateway` runs the `passerelle` command."""

import sys

from gateway.cli import main

sys.exit(main())
