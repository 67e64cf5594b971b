"""The worker runtime: handlers registered by decorator, run with their
per-attempt timeout, fed by long-polling the operator's lease API."""
