"""The gRPC side: wiring, servicers, interceptors, admission, rate limits, resilience."""
