"""The ``fleetwatch`` command: a thin layer over the library that imports each layer only when a verb needs it."""
