"""A route's JSON answer validated against its response model, as ``response_model=`` does, cheaper.

FastAPI validates a returned dict into model instances (``TypeAdapter(Model).validate_python``)
and serializes those: for a rubric group of 8 rollouts and 8 criteria that is some 100 model
instances built only to be dumped again, about half the CPU of the whole answer. Here the same
schema is compiled once with every model replaced by a typed dict of the same fields (same field
validators, defaults, config and serializers), so validation builds plain dicts, in field order,
and the serializer writes the same bytes.

Anything the dict form cannot vouch for falls back to FastAPI's own path (model instances): a
document the typed dicts refuse, a document that is not a plain dict, a model whose schema has
parts the conversion does not know (then the model path is the only path). So the answer is
the model's bytes or the model's ``ResponseValidationError`` (a 500), never anything else.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi.exceptions import ResponseValidationError
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import SchemaError, SchemaSerializer, SchemaValidator

# The keys of a model schema and of its fields schema that the typed-dict form reproduces; any
# other key (a post_init, computed fields, aliases, exclusions, a custom extra) is not converted.
_MODEL_KEYS = {"type", "cls", "schema", "custom_init", "root_model", "config", "ref", "metadata"}
_FIELDS_KEYS = {"type", "fields", "model_name", "extra_behavior", "computed_fields"}
_FIELD_KEYS = {"type", "schema", "metadata"}


class _Unsupported(Exception):
    pass


def _typed_dicts(schema: Any) -> Any:
    """``schema`` (a pydantic-core schema) with every model schema made a typed-dict schema."""
    if isinstance(schema, list):
        return [_typed_dicts(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") != "model":
        return {key: _typed_dicts(value) for key, value in schema.items()}
    inner = schema["schema"]
    if (
        set(schema) - _MODEL_KEYS
        or schema.get("custom_init")
        or schema.get("root_model")
        or inner.get("type") != "model-fields"
        or set(inner) - _FIELDS_KEYS
        or inner.get("computed_fields")
        or inner.get("extra_behavior") not in (None, "ignore")
        or (schema.get("config") or {}).get("extra_fields_behavior") not in (None, "ignore")
    ):
        raise _Unsupported(repr(schema.get("cls")))
    fields = {}
    for name, field in inner["fields"].items():
        if set(field) - _FIELD_KEYS:
            raise _Unsupported(f"{schema.get('cls')!r}.{name}")
        field_schema = field["schema"]
        fields[name] = {
            "type": "typed-dict-field",
            "schema": _typed_dicts(field_schema),
            # A model field is optional exactly when its schema carries a default.
            "required": field_schema.get("type") != "default",
        }
    converted: dict[str, Any] = {"type": "typed-dict", "fields": fields, "extra_behavior": "ignore"}
    for key in ("config", "ref"):
        if key in schema:
            converted[key] = schema[key]
    return converted


class ResponseCodec:
    """``dump_json(document)``: the bytes FastAPI sends for ``document`` returned from a route with
    ``response_model=model`` (or the ``ResponseValidationError`` it raises)."""

    def __init__(self, model: type[BaseModel], endpoint=None, path: str | None = None) -> None:
        self.model = model
        self._adapter = TypeAdapter(model)  # FastAPI's path: the fallback and the errors
        self._endpoint = endpoint
        self._path = path
        try:
            schema = _typed_dicts(self._adapter.core_schema)  # the model's, built (forward refs resolved)
            self._validator: SchemaValidator | None = SchemaValidator(schema)
            self._serializer: SchemaSerializer | None = SchemaSerializer(schema)
        except (_Unsupported, SchemaError):
            self._validator = self._serializer = None

    def dump_json(self, document: Any) -> bytes:
        if self._validator is not None and type(document) is dict:
            try:
                value = self._validator.validate_python(document)
            except ValidationError:
                pass  # the model path below says what is wrong, in FastAPI's words
            else:
                return self._serializer.to_json(value)
        return self.model_dump_json(document)

    def model_dump_json(self, document: Any) -> bytes:
        """FastAPI's own path (``serialize_response`` with a response field)."""
        try:
            value = self._adapter.validate_python(document, from_attributes=True)
        except ValidationError as exc:
            errors = [{**e, "loc": ("response", *e.get("loc", ()))} for e in exc.errors(include_url=False)]
        else:
            return self._adapter.dump_json(value, by_alias=True)
        raise ResponseValidationError(errors=errors, body=document, endpoint_ctx=self._endpoint_context())

    def response(self, document: Any) -> Response:
        """The JSON response FastAPI would make (status 200, content-type and length)."""
        return Response(content=self.dump_json(document), media_type="application/json")

    def _endpoint_context(self) -> dict:
        # As FastAPI describes the endpoint in the error (only on this rare path).
        ctx: dict = {}
        if self._endpoint is not None:
            try:
                ctx["file"] = inspect.getsourcefile(self._endpoint)
                ctx["line"] = inspect.getsourcelines(self._endpoint)[1]
            except (OSError, TypeError):
                pass
            ctx["function"] = self._endpoint.__name__
        if self._path is not None:
            ctx["path"] = self._path
        return ctx
