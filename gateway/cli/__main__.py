"""`python -m gateway.cli` is the `proofless` command."""

import sys

from gateway.cli.main import main

sys.exit(main())
