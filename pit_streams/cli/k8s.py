"""``pit-streams k8s render``: Strimzi resources and Deployments from the catalog and the apps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pit_streams.acl import DEFAULT_CLUSTER
from pit_streams.catalog.model import CATALOG_ENV, DEFAULT_CATALOG, load_catalog
from pit_streams.k8s import OUT_OF_DATE, RenderSettings, render, stale_files, write_rendered
from pit_streams.loader import resolve_declared


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pit-streams k8s render``."""
    p = sub.add_parser("k8s", help="Kubernetes manifests from the catalog and the apps")
    k8s = p.add_subparsers(dest="k8s_cmd", required=True)
    r = k8s.add_parser("render", help="write the Strimzi resources and Deployments (deterministic)")
    r.add_argument("--out", default="k8s", help="output directory (default: k8s)")
    r.add_argument("--catalog", help=f"catalog file (default: ${CATALOG_ENV} or {DEFAULT_CATALOG})")
    r.add_argument("-A", "--app", action="append", dest="apps", metavar="MODULE",
                   help="app or producer module (repeatable; default: every App and ProducerSpec in apps/*.py)")
    r.add_argument("--cluster", default=DEFAULT_CLUSTER, help="Strimzi Kafka cluster name")
    r.add_argument("--image", default=RenderSettings.image, help="worker image")
    r.add_argument("--sign-outputs", action="store_true",
                   help="mount each worker's Ed25519 key from the Secret {app}-signing-key (key signing.key)")
    r.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out differs from a fresh render")
    r.set_defaults(func=_run_render)


def _run_render(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    files = render(catalog, resolve_declared(args.apps), RenderSettings(cluster=args.cluster, image=args.image,
                                                                          sign_outputs=args.sign_outputs))
    out_dir = Path(args.out)
    if args.check:
        stale = stale_files(files, out_dir)
        if stale:
            print(f"pit-streams: {OUT_OF_DATE} (differs: {', '.join(stale)})", file=sys.stderr)
            return 1
        print(f"{out_dir}/ is up to date ({len(files)} files)")
        return 0
    changed = write_rendered(files, out_dir)
    for rel in changed:
        print(f"{'wrote  ' if rel in files else 'removed'} {out_dir / rel}")
    print(f"{len(files)} files in {out_dir}/, {len(changed)} changed")
    return 0
