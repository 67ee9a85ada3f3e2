"""Contender worker processes; each is started by the harness as its own subprocess."""
