"""The topic catalog, ``infra/topics.yaml``: the single source of truth for every topic.

Three uses, one file, one module per job:

- ``model`` — ``TopicSpec``/``Catalog``, read and shape-checked from YAML;
- ``rules`` — ``pit-streams topics check``: the catalog obeys the platform contract (names,
  compaction of state topics, delete-only audit topics, payload types that exist, no float money);
- ``apps`` — ``check_app_against_catalog``: a worker refuses to start if its app touches a topic,
  or a payload type, that the catalog does not list;
- ``apply`` — ``pit-streams topics apply``: creates missing topics with the catalogued settings
  and reports (never changes) existing topics that differ.

The command-line parsing lives in ``pit_streams.cli.topics``.
See docs/adr/0004-catalog-and-manifests.md for the rules and why.
"""

from pit_streams.catalog.apply import ApplyReport, admin_config, apply_catalog
from pit_streams.catalog.apps import (
    FIX_MISSING,
    app_catalog_problems,
    check_app_against_catalog,
    check_topics_catalogued,
    copartitioning_problem,
)
from pit_streams.catalog.model import (
    CATALOG_ENV,
    DEFAULT_CATALOG,
    Catalog,
    TopicSpec,
    load_catalog,
    parse_catalog,
    resolve_catalog_path,
)
from pit_streams.catalog.rules import (
    AUDIT_MIN_RETENTION_MS,
    CHANGELOG_PAYLOAD_TYPES,
    CLEANUP_POLICIES,
    DEAD_LETTER_PAYLOAD_TYPE,
    KINDS,
    MONEY_WORDS,
    check_catalog,
    default_pool,
    is_money_name,
    money_float_fields,
)

__all__ = [
    "AUDIT_MIN_RETENTION_MS",
    "CATALOG_ENV",
    "CHANGELOG_PAYLOAD_TYPES",
    "CLEANUP_POLICIES",
    "DEAD_LETTER_PAYLOAD_TYPE",
    "DEFAULT_CATALOG",
    "FIX_MISSING",
    "KINDS",
    "MONEY_WORDS",
    "ApplyReport",
    "Catalog",
    "TopicSpec",
    "admin_config",
    "app_catalog_problems",
    "apply_catalog",
    "check_app_against_catalog",
    "check_catalog",
    "check_topics_catalogued",
    "copartitioning_problem",
    "default_pool",
    "is_money_name",
    "load_catalog",
    "money_float_fields",
    "parse_catalog",
    "resolve_catalog_path",
]
