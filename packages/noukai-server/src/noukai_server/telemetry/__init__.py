"""What the server tells the outside about what runs: Prometheus metrics and OpenTelemetry traces."""
