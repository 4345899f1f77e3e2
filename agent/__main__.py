"""`python -m agent` runs the egov-agent command line."""

import sys

from agent.cli import main

sys.exit(main())
