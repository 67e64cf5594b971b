"""Models of Taskmill's custom resources and of the lease wire protocol.

Purely data: pydantic models, enums and constants, no I/O. Everything else
imports from here; this package imports nothing of Taskmill's. The CRD YAML in
``crds/`` is generated from these models (``python -m taskmill.crdgen``).
"""
