"""Build hook for the optional C decoder of OTLP trace requests.

Everything else lives in pyproject.toml. The extension is optional: on a
gateway without a C compiler the install still succeeds and the collector
falls back to its pure-Python decoder (same output, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collector.decoding._speedups",
            sources=["collector/decoding/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
