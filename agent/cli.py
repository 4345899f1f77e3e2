"""The `egov-agent` command line: run, check-config, probe, schema, and the commands of EXTENSIONS."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import yaml

from agent import __version__
from agent.config import Config, builtin_auths, builtin_modules, config_schema, load_config
from agent.errors import ConfigError, StartupError
from agent.logs import LEVELS, setup_logging

DEFAULT_CONFIG = "config/agent.yaml"
EXTENSIONS: dict[str, str] = {
    "inventory": "agent.inventory",
    "kpi-report": "exporters.kpi_report.cli",
    "sign": "agent.signing",
}
"""Subcommands kept in their own modules: each has HELP, add_arguments(parser) and run(args) -> exit code."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handlers = {"run": _run, "check-config": _check_config, "probe": _probe, "schema": _schema}
    handler = handlers.get(args.command) or importlib.import_module(EXTENSIONS[args.command]).run
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="egov-agent", description="Monitoring agent for e-government offices.")
    parser.add_argument("--version", action="version", version=f"egov-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    run.add_argument("--web.listen-address", dest="listen_address", help="HOST:PORT, overrides web.listen_address")
    run.add_argument("--web.config.file", dest="web_config_file", help="TLS and basic auth config (exporter-toolkit)")
    _log_flags(run)

    check = sub.add_parser("check-config", help="validate a config file; exit 0 if valid, 1 otherwise")
    check.add_argument("file")

    probe = sub.add_parser("probe", help="run one module against one target and print the metrics")
    probe.add_argument("--config", help="config file with the module (built-in modules need none)")
    probe.add_argument("--module", required=True, help="module name")
    probe.add_argument("--auth", help="a name from the config's auths: (or public_v2), as a check's auth:")
    probe.add_argument("--debug", action="store_true", help="print the run's log and the module on stderr")
    probe.add_argument("target")
    _log_flags(probe)

    sub.add_parser("schema", help="print the config file's JSON Schema")
    for name, module_name in EXTENSIONS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def _log_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log.level", dest="log_level", choices=sorted(LEVELS), default="info")
    parser.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"], default="logfmt")


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agent.lifecycle import Agent
    from agent.webconfig import load_web_config

    setup_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
        # The flag is relative to the working directory, web.config_file to the config file's folder.
        web_path = args.web_config_file or (
            str(Path(args.config).parent / config.web.config_file) if config.web.config_file else None)
        web_config = load_web_config(web_path) if web_path else None
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return 1
    for warning in config.warnings():
        logging.getLogger("agent.config").warning(warning, extra={"kv": {"config": args.config}})
    try:
        return asyncio.run(_serve(Agent(config, args.config, args.listen_address, web_config=web_config)))
    except StartupError as err:
        print(f"egov-agent: {err}", file=sys.stderr)
        return 1


async def _serve(agent: Any) -> int:
    result: int = await agent.run()
    return result


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return 1
    for warning in config.warnings():
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    if config.web.config_file:
        from pathlib import Path

        from agent.webconfig import load_web_config

        try:
            web = load_web_config(str(Path(args.file).parent / config.web.config_file))
        except ConfigError as err:
            print(err.render(), file=sys.stderr)
            return 1
        for warning in web.warnings:
            print(f"{web.path}: warning: {warning}", file=sys.stderr)
    jobs = sum(len(check.targets) for check in config.checks)
    print(f"{args.file}: valid: {len(config.checks)} checks, {jobs} jobs, office {config.office.org_id}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from agent.probe_once import probe_once

    setup_logging(args.log_level, args.log_format)
    config: Config | None = None
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as err:
            print(err.render(), file=sys.stderr)
            return 2
    modules = config.modules if config is not None else builtin_modules()
    module = modules.get(args.module)
    if module is None:
        print(f"egov-agent: unknown module {args.module!r}; known: {', '.join(sorted(modules))}", file=sys.stderr)
        return 2
    auths = config.auths if config is not None else builtin_auths()
    if args.auth is not None and args.auth not in auths:
        print(f"egov-agent: unknown auth {args.auth!r}; known: {', '.join(sorted(auths))}", file=sys.stderr)
        return 2
    auth = auths[args.auth] if args.auth is not None else None
    try:
        text, result = asyncio.run(probe_once(config, args.module, module, args.target, auth))
    except ValueError as err:
        print(f"egov-agent: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    if args.debug:
        print(_debug_text(args.module, module, result, text), file=sys.stderr, end="")
    return 0 if result.success else 1


def _debug_text(name: str, module: Any, result: Any, metrics: str) -> str:
    """blackbox_exporter's debug output: the run's log, its metrics, and the module with secrets redacted."""
    lines = ["Logs for the probe:"]
    for line in result.lines:
        stamp = time.strftime("%H:%M:%S", time.localtime(line.at)) + f".{int(line.at * 1000) % 1000:03d}"
        lines.append(f"{stamp} {line.level}: {line.message}")
    state = "succeeded" if result.success else f"failed: outcome={result.outcome}"
    lines.append(f"Probe {state}, duration {result.duration:.6f}s")
    lines += ["", "Metrics that would have been returned:", metrics.rstrip("\n"), "", "Module configuration:"]
    dumped = yaml.safe_dump({name: module.model_dump(mode="json")}, allow_unicode=True, sort_keys=False)
    return "\n".join(lines) + "\n" + dumped


def _schema(_: argparse.Namespace) -> int:
    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0
