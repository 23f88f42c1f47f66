"""Logs, metrics and traces: what solo-os tells its operator about itself."""
