"""The operator: kopf watches feed the pure dispatch core; this package applies
its decisions to the API (status writes, Events) and serves the lease API's
calls. Imports models, dispatch and kube; never the CLI."""
