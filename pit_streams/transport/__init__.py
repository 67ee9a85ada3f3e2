"""Kafka clients behind one small seam (bytes only)."""
