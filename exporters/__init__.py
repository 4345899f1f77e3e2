"""Consumers of results: the Prometheus text exposition, the web endpoints and the status page."""
