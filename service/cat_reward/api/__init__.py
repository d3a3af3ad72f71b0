"""The HTTP layer: wire schemas, routes, error mapping and the app factory."""

__all__ = ["create_app"]


def __getattr__(name: str):
    # Imported on first use: the app factory needs the composition root (``wiring``), which in
    # turn needs this package's schemas, so an eager import here would make a cycle.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
