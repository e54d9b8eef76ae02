"""The data contract as tests state it on their own (not taken from the code under test)."""

from __future__ import annotations

import json

from opentelemetry.sdk.resources import Resource

PROMOTED_RESOURCE = {
    "service.name": "service_name",
    "device.id": "device_id",
    "fleet.site": "site",
    "fleet.region": "region",
    "device.class": "device_class",
    "device.firmware.version": "firmware_version",
}

def device_resource(device: int) -> Resource:
    return Resource.create(
        {
            "service.name": "vision-edge",
            "device.id": f"cam-{device:04d}",
            "fleet.site": "site-berlin",
            "fleet.region": "eu-central",
            "device.class": "jetson-orin",
            "device.firmware.version": "4.2.1",
            "host.arch": "arm64",
        }
    )



def row_attributes(row: dict, mapping: dict[str, str], json_column: str) -> dict:
    attributes = json.loads(row[json_column]) if row[json_column] else {}
    for key, column in mapping.items():
        if row[column] is not None:
            attributes[key] = row[column]
    return attributes



def normalise(attributes) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()}
