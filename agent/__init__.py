"""egov-agent: a lightweight monitoring agent for e-government offices, exporting to Prometheus."""

__version__ = "0.1.0"
