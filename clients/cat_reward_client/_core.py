"""The I/O-free core shared by the sync and the async client.

It builds requests (``RequestSpec``: method, path, query, body bytes, headers), reads
answers (status, headers, body bytes -> a result or a typed exception) and decides on
retries (``Call``: "retry after N seconds" or "done"). The clients only move bytes and sleep:

    call = core.start(spec)
    while True:
        try:
            response = send(spec)
        except httpx.TransportError as exc:
            step = call.on_transport_error(exc)     # a Retry, or raises TransportError
        else:
            step = call.on_response(status, headers, content)
            if isinstance(step, Done):
                return step.value                   # or it raised a CatRewardError
        sleep(step.delay)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ._config import NEVER_RETRIED_STATUSES, RetryPolicy, parse_retry_after
from ._exceptions import (
    CatRewardError,
    InvalidRequestError,
    NotFoundError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    TransportError,
    UnavailableError,
    UpstreamError,
)
from ._models import (
    BatchResult,
    Health,
    Readiness,
    RewardGroup,
    RewardResult,
    RubricPage,
    SampleGroup,
    SamplesResult,
)
from ._version import __version__

log = logging.getLogger("cat_reward_client")

T = TypeVar("T")

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_CHARS = 200  # the server's limit on the header
_GROUP_KEYS = ("prompt", "rollouts", "mode", "reference", "options", "metadata", "rubric", "token_logprobs")
_SAMPLE_GROUP_KEYS = ("size", "id", "step", "min_size", "deadline_s")
_MAX_ERROR_TEXT = 500


# --- requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestSpec(Generic[T]):
    """One logical call: what to send, and how to read a successful answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: bytes | None = None
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    # Statuses whose body is the answer itself (GET /readyz answers 503 with a Readiness body).
    answer_statuses: frozenset[int] = frozenset({200})

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


def encode_body(payload: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8; NaN/Infinity refused (the server rejects them)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def idempotency_key(body: bytes) -> str:
    """The default idempotency key: the SHA-256 of the exact body bytes, hex-encoded."""
    return hashlib.sha256(body).hexdigest()


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValueError(f"idempotency_key must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY_CHARS} characters")
    if not all(33 <= ord(ch) <= 126 for ch in key):
        raise ValueError("idempotency_key must be printable ASCII without spaces")
    return key


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


def _prompt_json(prompt: Any) -> Any:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (bytes, bytearray)) or not isinstance(prompt, Iterable):
        raise TypeError("prompt must be a string or a sequence of {'role', 'content'} messages")
    messages = []
    for message in prompt:
        if not isinstance(message, Mapping):
            raise TypeError("each prompt message must be a mapping with 'role' and 'content'")
        messages.append(dict(message))
    return messages


def group_payload(
    prompt: Any,
    rollouts: Any,
    mode: str | None = None,
    reference: str | None = None,
    options: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    rubric: Iterable[Mapping[str, Any]] | None = None,
    token_logprobs: Iterable[Iterable[float]] | None = None,
) -> dict[str, Any]:
    """The JSON of one group (POST /rewards body, or one item of ``groups``). Fields left ``None`` are omitted.

    ``rubric`` is the caller's rubric (items with ``criterion``, optional ``points`` and ``tags``);
    ``token_logprobs`` one list of token log-probabilities per rollout."""
    if isinstance(rollouts, (str, bytes)) or not isinstance(rollouts, Iterable):
        raise TypeError("rollouts must be a sequence of strings (one per rollout), not a single string")
    rollouts = list(rollouts)
    for i, rollout in enumerate(rollouts):
        if not isinstance(rollout, str):
            raise TypeError(f"rollouts[{i}] must be a string, got {type(rollout).__name__}")
    body: dict[str, Any] = {"prompt": _prompt_json(prompt), "rollouts": rollouts}
    if mode is not None:
        body["mode"] = mode
    if reference is not None:
        body["reference"] = reference
    if options is not None:
        if not isinstance(options, Mapping):
            raise TypeError("options must be a mapping (see RewardOptions)")
        cleaned = _drop_none(options)
        if cleaned:
            body["options"] = cleaned
    if rubric is not None:
        if isinstance(rubric, (str, bytes, Mapping)) or not isinstance(rubric, Iterable):
            raise TypeError("rubric must be a sequence of {'criterion', 'points'?, 'tags'?} mappings")
        items = []
        for i, item in enumerate(rubric):
            if not isinstance(item, Mapping):
                raise TypeError(f"rubric[{i}] must be a mapping with 'criterion'")
            items.append(_drop_none(item))
        body["rubric"] = items
    if token_logprobs is not None:
        if isinstance(token_logprobs, (str, bytes, Mapping)) or not isinstance(token_logprobs, Iterable):
            raise TypeError("token_logprobs must be a sequence (one per rollout) of sequences of floats")
        body["token_logprobs"] = [[float(lp) for lp in per_rollout] for per_rollout in token_logprobs]
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError("metadata must be a mapping (run_id, step, group_id, tags)")
        cleaned = _drop_none(metadata)
        if cleaned:
            body["metadata"] = cleaned
    return body


def _group_from(item: Any) -> dict[str, Any]:
    if isinstance(item, RewardGroup):
        return group_payload(
            item.prompt, item.rollouts, item.mode, item.reference, item.options, item.metadata, item.rubric, item.token_logprobs
        )
    if isinstance(item, Mapping):
        unknown = sorted(set(item) - set(_GROUP_KEYS))
        if unknown:
            raise TypeError(f"unknown group field(s) {unknown}; expected some of {list(_GROUP_KEYS)}")
        if "prompt" not in item or "rollouts" not in item:
            raise TypeError("each group needs 'prompt' and 'rollouts'")
        return group_payload(**item)
    raise TypeError("each group must be a RewardGroup or a mapping with 'prompt' and 'rollouts'")


def _samples_json(samples: Any) -> list[dict[str, Any]]:
    """Samples as sent: each a rollout string, or a mapping ``{"rollout", "index"?}``."""
    if isinstance(samples, (str, bytes, Mapping)) or not isinstance(samples, Iterable):
        raise TypeError("samples must be a sequence (one item per sample): strings or {'rollout', 'index'} mappings")
    out: list[dict[str, Any]] = []
    for i, sample in enumerate(samples):
        if isinstance(sample, str):
            out.append({"rollout": sample})
            continue
        if not isinstance(sample, Mapping):
            raise TypeError(f"samples[{i}] must be a string or a mapping, got {type(sample).__name__}")
        unknown = sorted(set(sample) - {"rollout", "index"})
        if unknown:
            raise TypeError(f"samples[{i}]: unknown field(s) {unknown}; expected 'rollout' and optionally 'index'")
        rollout, index = sample.get("rollout"), sample.get("index")
        if not isinstance(rollout, str):
            raise TypeError(f"samples[{i}].rollout must be a string")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise TypeError(f"samples[{i}].index must be a non-negative integer")
        out.append({"rollout": rollout} if index is None else {"rollout": rollout, "index": index})
    if not out:
        raise ValueError("samples must hold at least one sample")
    return out


def _sample_group_json(group: Any) -> dict[str, Any]:
    if isinstance(group, SampleGroup):
        group = dataclasses.asdict(group)
    elif isinstance(group, Mapping):
        unknown = sorted(set(group) - set(_SAMPLE_GROUP_KEYS))
        if unknown:
            raise TypeError(f"unknown group field(s) {unknown}; expected some of {list(_SAMPLE_GROUP_KEYS)}")
    else:
        raise TypeError("group must be a SampleGroup or a mapping with at least 'size'")
    size = group.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError("group.size must be a positive integer (G, the samples the group will have)")
    return _drop_none(dict(group))


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _header(headers: Any, name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) or hasattr(headers, "items") else headers
    name = name.lower()
    for key, value in items:
        if key.lower() == name:
            return value
    return None


class ClientCore:
    """Everything the two clients share: request building, parsing, and the retry policy."""

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = dataclasses.replace(policy, max_retries=max_retries)
        self.retry = policy
        self.rand = rand or random.random

    @staticmethod
    def default_headers(api_key: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"cat-reward-client/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if extra:
            headers.update(extra)
        return headers

    # --- one builder per endpoint ------------------------------------------------------

    @staticmethod
    def _post(path: str, payload: Any, parse: Callable[[Any], T], key: str | None) -> RequestSpec[T]:
        body = encode_body(payload)
        key = _check_key(key) if key is not None else idempotency_key(body)
        headers = (("Content-Type", "application/json"), (IDEMPOTENCY_HEADER, key))
        return RequestSpec("POST", path, parse, body=body, headers=headers)

    def rewards(
        self,
        prompt: Any,
        rollouts: Any,
        mode: str | None = None,
        reference: str | None = None,
        options: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        rubric: Iterable[Mapping[str, Any]] | None = None,
        token_logprobs: Iterable[Iterable[float]] | None = None,
    ) -> RequestSpec[RewardResult]:
        payload = group_payload(prompt, rollouts, mode, reference, options, metadata, rubric, token_logprobs)
        return self._post("/rewards", payload, RewardResult.from_json, idempotency_key)

    def rewards_batch(self, groups: Iterable[Any], idempotency_key: str | None = None) -> RequestSpec[BatchResult]:
        if isinstance(groups, (str, bytes, Mapping)) or not isinstance(groups, Iterable):
            raise TypeError("groups must be a sequence of RewardGroup or mappings")
        payload = {"groups": [_group_from(g) for g in groups]}
        return self._post("/rewards/batch", payload, BatchResult.from_json, idempotency_key)

    def rewards_samples(
        self,
        prompt: Any,
        samples: Any,
        group: Any,
        mode: str | None = None,
        reference: str | None = None,
        options: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RequestSpec[SamplesResult]:
        payload = group_payload(prompt, [], mode, reference, options, metadata)
        del payload["rollouts"]
        payload["samples"] = _samples_json(samples)
        payload["group"] = _sample_group_json(group)
        if idempotency_key is None and any("index" not in s for s in payload["samples"]):
            # Two samples of one group may be identical texts sent without an index: they are
            # distinct samples, so the default key cannot be the body's hash (the server would
            # take the second for a retry of the first). One random key per call instead: every
            # HTTP retry of this call still sends it.
            idempotency_key = "s-" + uuid.uuid4().hex
        return self._post("/rewards/samples", payload, SamplesResult.from_json, idempotency_key)

    @staticmethod
    def healthz() -> RequestSpec[Health]:
        return RequestSpec("GET", "/healthz", Health.from_json)

    @staticmethod
    def readyz() -> RequestSpec[Readiness]:
        return RequestSpec("GET", "/readyz", Readiness.from_json, answer_statuses=frozenset({200, 503}))

    @staticmethod
    def get_rubric(rubric_id: str) -> RequestSpec[dict[str, Any]]:
        if not isinstance(rubric_id, str) or not rubric_id:
            raise ValueError("rubric_id must be a non-empty string")
        return RequestSpec("GET", "/rubrics/" + quote(rubric_id, safe=""), _json_object)

    @staticmethod
    def list_rubrics(filters: Mapping[str, Any]) -> RequestSpec[RubricPage]:
        params: list[tuple[str, str]] = []
        for name, value in filters.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                params.extend((name, _query_value(v)) for v in value)
            else:
                params.append((name, _query_value(value)))
        return RequestSpec("GET", "/rubrics", RubricPage.from_json, params=tuple(params))

    def start(self, spec: RequestSpec[T]) -> Call[T]:
        return Call(spec, self.retry, self.rand)


def _json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return dict(data)


# --- answers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    delay: float
    reason: str


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T


def _exception_class(status: int) -> type[CatRewardError]:
    if status == 404:
        return NotFoundError
    if status in (429, 503):
        return UnavailableError
    if 400 <= status < 500:
        return InvalidRequestError
    if status == 502:
        return UpstreamError
    return ServerError


def _decode(content: bytes) -> Any:
    return json.loads(content.decode("utf-8")) if content else None


def _envelope(body: Any) -> Mapping[str, Any] | None:
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return body["error"]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def error_from_response(status: int, headers: Any, content: bytes, *, attempts: int = 1) -> CatRewardError:
    """The typed exception for a non-success answer, read from the server's error envelope."""
    try:
        body = _decode(content)
    except (UnicodeDecodeError, ValueError):
        body = None
    envelope = _envelope(body)
    retry_after = parse_retry_after(_header(headers, "retry-after"))
    if envelope is not None:
        if retry_after is None:
            retry_after = _number(envelope.get("retry_after"))
        details = envelope.get("details")
        param = envelope.get("param")
        return _exception_class(status)(
            str(envelope.get("message") or f"HTTP {status}"),
            status=status,
            type=str(envelope["type"]) if envelope.get("type") else None,
            param=str(param) if param is not None else None,
            retry_after=retry_after,
            details=list(details) if isinstance(details, list) else None,
            raw=body,
            attempts=attempts,
        )
    text = content.decode("utf-8", errors="replace").strip()[:_MAX_ERROR_TEXT]
    return _exception_class(status)(
        f"HTTP {status}" + (f": {text}" if text else ""),
        status=status,
        retry_after=retry_after,
        raw=body,
        attempts=attempts,
    )


def parse_answer(spec: RequestSpec[T], status: int, content: bytes, *, attempts: int = 1) -> T:
    """Decode a successful answer into the spec's result type, or raise ResponseDecodeError."""
    try:
        data = _decode(content)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ResponseDecodeError(
            f"{spec.method} {spec.path}: the answer is not JSON", status=status, attempts=attempts
        ) from exc
    try:
        return spec.parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ResponseDecodeError(
            f"{spec.method} {spec.path}: unexpected answer shape ({type(exc).__name__}: {exc})",
            status=status,
            raw=data,
            attempts=attempts,
        ) from exc


_RETRYABLE_TRANSPORT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


@dataclass
class Call(Generic[T]):
    """The retry state of one logical call. Every attempt of it sends the same spec (same idempotency key)."""

    spec: RequestSpec[T]
    policy: RetryPolicy
    rand: Callable[[], float]
    attempts: int = field(default=0)

    @property
    def retries_left(self) -> int:
        return self.policy.max_retries - (self.attempts - 1)

    def _retry(self, delay: float, reason: str) -> Retry:
        log.warning(
            "cat-reward %s %s: %s; retry %d/%d in %.2fs",
            self.spec.method,
            self.spec.path,
            reason,
            self.attempts,
            self.policy.max_retries,
            delay,
        )
        return Retry(delay, reason)

    def on_response(self, status: int, headers: Any, content: bytes) -> Retry | Done[T]:
        self.attempts += 1
        if status in self.spec.answer_statuses:
            if status < 400 or _envelope(_safe_decode(content)) is None:
                return Done(parse_answer(self.spec, status, content, attempts=self.attempts))
        error = error_from_response(status, headers, content, attempts=self.attempts)
        if (
            status in self.policy.retry_statuses
            and status not in NEVER_RETRIED_STATUSES
            and self.retries_left > 0
        ):
            if error.retry_after is not None:
                delay = self.policy.retry_after_delay(error.retry_after, self.rand())
            else:
                delay = self.policy.backoff(self.attempts, self.rand())
            return self._retry(delay, f"HTTP {status} {error.type}")
        raise error

    def on_transport_error(self, exc: httpx.TransportError) -> Retry:
        self.attempts += 1
        if isinstance(exc, httpx.ReadTimeout):
            retryable = self.policy.retry_read_timeouts
        else:
            retryable = isinstance(exc, _RETRYABLE_TRANSPORT)
        if retryable and self.retries_left > 0:
            return self._retry(self.policy.backoff(self.attempts, self.rand()), type(exc).__name__)
        cls = RequestTimeout if isinstance(exc, httpx.TimeoutException) else TransportError
        detail = str(exc) or type(exc).__name__
        raise cls(
            f"{self.spec.method} {self.spec.path}: {type(exc).__name__}: {detail}"
            + (f" (after {self.attempts} attempts)" if self.attempts > 1 else ""),
            attempts=self.attempts,
        ) from exc


def _safe_decode(content: bytes) -> Any:
    try:
        return _decode(content)
    except (UnicodeDecodeError, ValueError):
        return None
