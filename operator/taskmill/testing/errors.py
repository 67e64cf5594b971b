"""The error the local control plane raises, shared by the modules it is built from."""

from __future__ import annotations

__all__ = ["ControlPlaneError"]


class ControlPlaneError(RuntimeError):
    """The control plane could not be started, reached or stopped."""
