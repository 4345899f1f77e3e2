"""`egov-agent sign`: Ed25519 signatures over configs published to the fleet (issue 11)."""

from __future__ import annotations

import argparse
import sys

HELP = "sign an office's config for agents that fetch it from the province"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's flags."""
    parser.add_argument("file", help="config file to sign")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the process exit code."""
    print("egov-agent sign: not available in this version", file=sys.stderr)
    return 2
