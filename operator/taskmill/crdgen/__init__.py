"""The CRD YAML in ``crds/``, generated from the pydantic models in ``taskmill.models``.

The models are the one source of truth: field types, bounds, patterns,
defaults and CEL rules live next to the fields, and this package only carries
them over. ``schema`` turns a model into a structural schema, ``render``
builds the CRD documents, ``output`` writes ``crds/`` or reports drift, and
``python -m taskmill.crdgen [--check]`` runs it. Pure functions, except
``output`` which touches only the CRD directory.

Other code uses ``render_crds()`` (the CRDs as dicts, e.g. to install them
into a test API server) and ``crd_yaml(doc)``.
"""

from taskmill.crdgen.render import crd_yaml, render_crds

__all__ = ["crd_yaml", "render_crds"]
