"""What operators see: the ops HTTP server, Prometheus metrics, logs, the live dashboard."""
