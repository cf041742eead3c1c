"""The running daemon's I/O parts: the single-writer pipeline, change bus, metrics, recorder."""
