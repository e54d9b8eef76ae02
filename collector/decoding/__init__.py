"""OTLP requests to columns: the C decoder and its Python reference, attributes, Arrow batches, sizing."""
