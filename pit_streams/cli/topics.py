"""``pit-streams topics check|apply``: check the topic catalog, create its missing topics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pit_streams.app import App
from pit_streams.catalog.apply import admin_config, apply_catalog
from pit_streams.catalog.apps import app_catalog_problems
from pit_streams.catalog.model import CATALOG_ENV, DEFAULT_CATALOG, load_catalog, parse_catalog, resolve_catalog_path
from pit_streams.catalog.rules import check_catalog
from pit_streams.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pit-streams topics check`` and ``pit-streams topics apply``."""
    p = sub.add_parser("topics", help="check the topic catalog or create its topics")
    topics = p.add_subparsers(dest="topics_cmd", required=True)
    check = topics.add_parser("check", help="check infra/topics.yaml against the platform contract")
    check.add_argument("--catalog", help=f"catalog file (default: ${CATALOG_ENV} or {DEFAULT_CATALOG})")
    check.set_defaults(func=_run_check)
    apply = topics.add_parser("apply", help="create missing topics, report drifted ones (never changes them)")
    apply.add_argument("--broker", help="Kafka bootstrap host:port (default: $PIT_KAFKA_BOOTSTRAP)")
    apply.add_argument("--catalog", help=f"catalog file (default: ${CATALOG_ENV} or {DEFAULT_CATALOG})")
    apply.add_argument("--replicas-override", type=int, metavar="N",
                       help="replication factor for every topic (dev/test clusters with fewer brokers)")
    apply.add_argument("--dry-run", action="store_true", help="say what would be created, create nothing")
    apply.set_defaults(func=_run_apply)


def _run_check(args: argparse.Namespace) -> int:
    path = resolve_catalog_path(args.catalog)
    if not path.is_file():
        load_catalog(path)  # raises the ConfigError that names the fix
    catalog, problems = parse_catalog(path.read_text(encoding="utf-8"), path)
    problems += check_catalog(catalog)
    if not problems and Path("apps").is_dir():
        from pit_streams.loader import discover_declared

        for declared in discover_declared():
            if isinstance(declared.target, App):
                problems += [f"{declared.spec}: {p}" for p in app_catalog_problems(declared.target, catalog)]
    if problems:
        for line in problems:
            print(f"{path}: {line}", file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    print(f"{path}: {len(catalog.topics)} topics, all rules pass")
    return 0


def _run_apply(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient

    catalog = load_catalog(args.catalog)
    problems = check_catalog(catalog)
    if problems:
        raise ConfigError(f"{catalog.path} fails 'pit-streams topics check' ({problems[0]}): fix it before applying")
    if args.replicas_override is not None and args.replicas_override < 1:
        raise ConfigError("--replicas-override must be at least 1")
    admin = AdminClient(admin_config(args.broker))
    report = apply_catalog(catalog, admin, replicas_override=args.replicas_override, dry_run=args.dry_run)
    for line in report.errors:
        print(f"pit-streams: {line}", file=sys.stderr)
    if report.errors:
        return 2
    print(f"{len(report.created)} created, {len(report.unchanged)} unchanged, {len(report.drift)} drifted")
    return 0 if report.ok else 1
