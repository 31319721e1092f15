"""The admin side of a node: REST API, Prometheus metrics, and the CLI's client for them."""
