"""Fleet simulator and shipped sample data (``fleetwatch simulate``; docs/simulator.md).

Modules, one concern each:

- ``fleet``      regions, sites, device classes, models, firmware, staged rollouts
- ``incidents``  incident kinds, their effects on devices, manifest entries
- ``incident_plan``  which cohort and times each requested incident kind gets
- ``visibility``  how much telemetry a run has where an incident would show (kinds too small are left out)
- ``device``     one device over a run: its draws laid out in time, its spans tick by tick
- ``lifecycle``  one device's firmware and model updates, reboot, model loads, deployment spans
- ``inference_draws``  one device's inference arrivals, latencies, errors, shadow / label sampling
- ``model_outputs``  its model's features, edge and cloud predictions, true labels
- ``physics``    its clock, daily load, SoC temperature and gauge readings
- ``streams``    the seeded random streams (one per device and purpose)
- ``generator``  ``SimConfig`` and ``FleetSimulation``: the run, tick by tick, as OTLP requests
- ``otel``       SDK plumbing shared by both outputs (specs -> spans, seeded ids, device meters)
- ``bulk``       request-log output (and ``--db`` through ``collector.store.bulk``)
- ``live``       real OTLP exporters (HTTP / gRPC) in real or accelerated time
- ``progress``   a bar on a terminal, periodic lines otherwise
- ``cli``        ``fleetwatch simulate`` / ``python -m sample_data``
- ``readback``, ``verify``  decode a request log; check a manifest's incidents against it

Data: ``fleet-sample.otlp.zst`` (request log), ``manifest.json`` (ground truth),
``REGENERATE`` (the exact command).
"""
