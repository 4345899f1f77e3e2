"""`egov-agent inventory`: the fleet's offices, validated, and the configs generated from them (issue 8)."""

from __future__ import annotations

import argparse
import sys

HELP = "validate the fleet inventory and generate per-office configs and Prometheus targets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's flags."""
    parser.add_argument("file", help="inventory file (YAML or CSV)")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the process exit code."""
    print("egov-agent inventory: not available in this version", file=sys.stderr)
    return 2
