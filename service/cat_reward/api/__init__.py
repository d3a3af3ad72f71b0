"""The HTTP layer: wire schemas, routes, error mapping and the app factory."""

from .app import create_app

__all__ = ["create_app"]
