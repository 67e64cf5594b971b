"""The Kubernetes API adapter: connection settings and a lean aiohttp client.

Everything in Taskmill that talks to the API server goes through here (kopf
gets its credentials from here too), so there is one place that knows about
kubeconfigs, tokens, TLS and API errors.
"""
