"""prevent-service: the Prevent safeguarding duty, run inside Microsoft 365 (or on local files)."""

__version__ = "0.1.0"
