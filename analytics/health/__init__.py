"""Fleet health beyond SLOs: cold starts, saturation, model-load failures, rollouts, telemetry budget."""
