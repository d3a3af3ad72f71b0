"""A shorter way through FastAPI for the one request a trainer sends by the thousand (POST /rewards).

FastAPI's request handler is general: for every request it walks the dependency tree (cache keys,
callable classification, four parameter kinds per dependant), parses the content type with
``email.message``, opens exit stacks and telemetry hooks. For ``POST /rewards`` that was about a
third of the in-process CPU of a request. ``GuardedJSONRoute`` is an ``APIRoute`` (FastAPI's
documented extension point: openapi.json is made from the route exactly as before) whose handler
answers the common case itself, doing what FastAPI's handler would do for it, in the same order
as far as anyone can tell:

- the body is read and parsed as FastAPI does (``request.json()``) and validated against the same
  model (``from_attributes``, as FastAPI's body field); header parameters against their own
  annotations;
- only then the route's one dependency, the ``Guard`` (key, scope, rate limit): FastAPI runs it
  before validating, but a request that does not validate never gets here (see below), and for
  one that does the guard's outcome is the same either way;
- the endpoint, which returns its own ``Response``.

Anything else goes to FastAPI's own handler, with nothing done yet that shows (the body read is
cached on the request, the guard has not run): a content type other than exactly
``application/json``, a body that does not parse or validate, a header that does not validate,
dependency overrides, FastAPI telemetry on. At build time the fast way is used only when the
route is shaped as this module expects (one ``Guard`` and nothing under it, one body model, header
parameters, the ``Request``, no other parameter), else the route is a plain ``APIRoute``.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter

from .security import Guard


def _effective_dependant(route: APIRoute):
    """The dependency tree FastAPI gives this route's handler, including the dependencies its
    router was included with. FastAPI 0.1xx builds a route's handler once per inclusion, naming the
    inclusion in a context variable; older versions copy the route with every dependency in it.
    When the variable cannot be read, the route's own tree (which then lacks the include-time
    guard, so the fast way is not taken: see ``_shape``)."""
    try:
        from fastapi import routing

        context = routing._effective_route_context_var.get()  # noqa: SLF001 - read only, checked below
    except (AttributeError, LookupError):
        context = None
    if context is not None and getattr(context, "original_route", None) is route:
        return context.dependant, getattr(context, "dependency_overrides_provider", None)
    return route.dependant, route.dependency_overrides_provider


def _shape(dependant) -> tuple[Guard, Any, list] | None:
    """(guard, body field, header fields) when the tree is one this module answers, else None."""
    try:
        subs = list(dependant.dependencies)
        if len(subs) != 1 or not isinstance(subs[0].call, Guard) or subs[0].dependencies:
            return None
        guard_dep = subs[0]
        if (
            guard_dep.body_params or guard_dep.query_params or guard_dep.header_params or guard_dep.cookie_params
            or guard_dep.path_params or guard_dep.request_param_name != "request"
        ):
            return None
        if dependant.query_params or dependant.path_params or dependant.cookie_params:
            return None
        if len(dependant.body_params) != 1 or dependant.request_param_name is None:
            return None
        if (
            dependant.http_connection_param_name or dependant.websocket_param_name or dependant.response_param_name
            or dependant.background_tasks_param_name or dependant.security_scopes_param_name
        ):
            return None
        body = dependant.body_params[0]
        model = body.field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        for header in dependant.header_params:
            info = header.field_info
            # An optional string header under an explicit alias (no underscore conversion, no
            # alias choices), None when absent: read as ``request.headers.get(alias)``.
            if (
                info.annotation != (str | None) or not isinstance(info.alias, str) or "_" in info.alias
                or info.validation_alias not in (None, info.alias) or info.is_required() or info.default is not None
            ):
                return None
        if typing.get_type_hints(dependant.call).get("return") is not Response:
            return None  # the endpoint makes its own response: nothing left for FastAPI to serialize
        return subs[0].call, body, list(dependant.header_params)
    except (AttributeError, NameError, TypeError):  # a FastAPI whose trees look otherwise: its own handler
        return None


class GuardedJSONRoute(APIRoute):
    """See the module's docstring. ``fast_path`` says whether the route answers the common case
    itself (tests check it is on for ``POST /rewards``)."""

    fast_path = False

    def get_route_handler(self):
        general = super().get_route_handler()
        dependant, overrides_provider = _effective_dependant(self)
        shape = _shape(dependant)
        if shape is None:
            return general
        guard, body_field, header_fields = shape
        body_name = body_field.name
        body_adapter = TypeAdapter(Annotated[body_field.field_info.annotation, body_field.field_info])
        headers = [
            (f.name, f.field_info.alias, TypeAdapter(Annotated[f.field_info.annotation, f.field_info]))
            for f in header_fields
        ]
        request_name = dependant.request_param_name
        endpoint = dependant.call
        self.fast_path = True

        async def handler(request: Request):
            scope = request.scope
            if scope.get("fastapi.telemetry") is not None or (
                overrides_provider is not None and getattr(overrides_provider, "dependency_overrides", None)
            ):
                return await general(request)
            if request.headers.get("content-type") != "application/json":
                return await general(request)
            values: dict[str, Any] | None = None
            try:
                # Read and parsed as FastAPI does, and cached on the request, so FastAPI's handler
                # reads the same body (or meets the same failure) if it has to take over.
                if await request.body():
                    body = await request.json()
                    values = {body_name: body_adapter.validate_python(body, from_attributes=True)}
                    for name, alias, adapter in headers:
                        raw = request.headers.get(alias)
                        values[name] = adapter.validate_python(raw) if raw is not None else None
            except Exception:  # noqa: BLE001 - bad JSON, invalid fields, a disconnect: FastAPI words each
                values = None
            if values is None:  # outside the try: what FastAPI's handler raises goes on as raised
                return await general(request)
            await guard(request)
            values[request_name] = request
            return await endpoint(**values)

        return handler


__all__ = ["GuardedJSONRoute"]
