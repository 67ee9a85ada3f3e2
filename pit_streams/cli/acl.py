"""``pit-streams acl -A apps.nav``: the Kafka ACLs (or Strimzi ``KafkaUser``) a principal needs."""

from __future__ import annotations

import argparse
import sys

from pit_streams.acl import DEFAULT_CLUSTER, access_of, describe, kafka_user
from pit_streams.errors import ConfigError
from pit_streams.loader import resolve_declared


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pit-streams acl``."""
    p = sub.add_parser("acl", help="print the Kafka ACLs (or Strimzi KafkaUser) an app's principal needs")
    p.add_argument("-A", "--app", action="append", dest="apps", metavar="MODULE",
                   help="app or producer module, e.g. apps.nav (repeatable; default: everything in apps/)")
    p.add_argument("--format", choices=("text", "yaml"), default="text")
    p.add_argument("--cluster", default=DEFAULT_CLUSTER, help="Strimzi Kafka cluster name (yaml)")
    p.set_defaults(func=_run_acl)


def _run_acl(args: argparse.Namespace) -> int:
    import yaml

    declared = resolve_declared(args.apps)
    if not declared:
        raise ConfigError("no App or ProducerSpec found: pass -A apps.module")
    if args.format == "yaml":
        docs = [kafka_user(access_of(d.target), args.cluster) for d in declared]
        sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=True, default_flow_style=False, width=120))
    else:
        print("\n\n".join(describe(access_of(d.target), d.spec) for d in declared))
    return 0
