"""The batch loop, the checkpoint, dead letters, retries and shutdown."""
