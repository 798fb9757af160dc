"""The HTTP face of the monitor: state API, classic batch endpoints, Prometheus exporter, web dashboard.

Everything reads the same Redis state as ``monitor state`` (one shared async Store per process).
``monitor api`` serves :func:`monitor.api.app.create_api` with uvicorn; see docs/api.md.
"""


def __getattr__(name: str):
    if name == "create_api":  # lazily: importing monitor.api.<module> must not pull FastAPI in
        from monitor.api.app import create_api

        return create_api
    raise AttributeError(name)


__all__ = ["create_api"]
