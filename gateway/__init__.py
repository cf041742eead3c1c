"""Device telemetry and auto-alarm gateway."""

__version__ = "0.1.0"
