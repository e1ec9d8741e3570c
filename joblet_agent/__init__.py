"""joblet-agent: turns validated job requests into transient systemd units."""

__version__ = "0.1.0"
