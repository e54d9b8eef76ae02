"""Fleet simulator and shipped sample data (``fleetwatch simulate``; docs/simulator.md).

Modules, one concern each:

- ``fleet``      regions, sites, device classes, models, firmware, staged rollouts
- ``incidents``  incident kinds, their planning and effects, manifest entries
- ``device``     one device's events for a run (latency, errors, features, predictions, lifecycle)
- ``generator``  ``SimConfig`` and ``FleetSimulation``: the run, tick by tick, as OTLP requests
- ``otel``       SDK plumbing shared by both outputs (specs -> spans, seeded ids, device meters)
- ``bulk``       request-log output (and ``--db`` through ``collector.bulk``)
- ``live``       real OTLP exporters (HTTP / gRPC) in real or accelerated time
- ``cli``        ``fleetwatch simulate`` / ``python -m sample_data``
- ``readback``, ``verify``  decode a request log; check a manifest's incidents against it

Data: ``fleet-sample.otlp.zst`` (request log), ``manifest.json`` (ground truth),
``REGENERATE`` (the exact command).
"""
