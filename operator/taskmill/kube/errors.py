"""The one error of the connection settings, shared by the kubeconfig loader
and the credential plugins it runs (so callers catch a single type)."""

from __future__ import annotations


class ConfigError(Exception):
    """No usable cluster connection settings, or no credentials from them."""
