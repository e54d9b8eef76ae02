"""Between receivers and exporters: admission (memory budget), group-commit batching, fan-out."""
