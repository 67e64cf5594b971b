"""The ``taskmill`` and ``kubectl taskmill`` commands (click)."""
