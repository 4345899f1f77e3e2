"""Prometheus remote-write 1.0 push with a crash-safe disk queue per destination (no heavy imports here)."""
