"""Durable local state: per-partition RocksDB stores, dedupe with TTL, changelog and restore."""
