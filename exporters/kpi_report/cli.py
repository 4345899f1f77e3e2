"""`egov-agent kpi-report`: one period's KPI report for every office, level and the province."""

from __future__ import annotations

import argparse
import sys

HELP = "write the monthly modernization KPI report from the central store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's flags."""
    parser.add_argument("--source", required=True, help="Prometheus or VictoriaMetrics base URL")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the process exit code."""
    print("egov-agent kpi-report: not available in this version", file=sys.stderr)
    return 2
