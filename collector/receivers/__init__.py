"""OTLP receivers: HTTP and gRPC, authentication, answers, decompression, OTLP/JSON."""
