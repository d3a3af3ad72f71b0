"""What the pipeline caches, and under which keys.

- ``reference:<group fingerprint>`` -> the group's reference (and rubric, in rubric mode). The
  fingerprint covers the prompt, the rollouts, the mode, the caller's reference, every option
  that changes the result, both models and the prompt version: a retried request finds it, a
  changed one cannot.
- ``verdict:<hash>`` -> one judge verdict, keyed by (judge model, prompt version, stage,
  criterion or reference, rollout, judge temperature, seed). Only usable verdicts are stored.
- ``canary:<group fingerprint>:<index>`` -> a rollout's canary criterion (its nonce) and verdict.
- ``prompt-rubric:<hash>`` -> a prompt's reference and rubric, reused across training steps
  when the caller opts in (``reuse_rubric``); keyed without the rollouts.

Entries are plain JSON; one that does not decode is treated as a miss, never served.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from json.encoder import encode_basestring_ascii

from .types import Criterion, Group, GroupOptions, Reference, Verdict, frozen_constructor

# Options that change what a group's reference/rubric/rewards are (performance knobs are left out).
_RESULT_OPTIONS = (
    "aggregator",
    "include_question",
    "min_criteria",
    "max_criteria",
    "synthesis",
    "rubric",
    "judge_temperature",
    "seed",
    "answer_extractors",
    "rubric_attempts",
    "verdict_attempts",
    "reuse_rubric",
    "rubric_source",
    "regenerate_flat_rubric",
    "scrl",
)
_RUBRIC_OPTIONS = ("include_question", "min_criteria", "max_criteria", "synthesis", "rubric", "seed", "rubric_attempts")


_KEY_JSON = json.JSONEncoder(sort_keys=True, default=str)  # json.dumps(payload, sort_keys=True, default=str), built once


def _digest(payload: object) -> str:
    return hashlib.sha256(_KEY_JSON.encode(payload).encode()).hexdigest()


_SCALARS = frozenset((str, int, float, bool, type(None)))


@dataclass(frozen=True)
class _Box:
    value: object


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _plain(value):
    """``asdict``'s conversion of one value, without its deep copies where they change nothing:
    scalars as they are (a deep copy of one is the same object), exact tuples and lists item by
    item, dataclass instances field by field in field order; anything else (dicts, subclasses,
    other objects) through ``asdict`` itself."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple or kind is list:
        return kind([_plain(v) for v in value])
    if hasattr(kind, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in _field_names(kind)}
    return asdict(_Box(value))["value"]


def _option(options: GroupOptions, name: str):
    """``asdict(options)[name]``, converting that one field only (a group's key names a few of
    its ~30 options: a whole ``asdict`` per key was most of a fingerprint's cost)."""
    return _plain(getattr(options, name))


def _options(group: Group, names: tuple[str, ...]) -> dict:
    options = group.options
    return {name: _option(options, name) for name in names}


def _fused(group: Group) -> dict:
    # Only when on, so the keys of every two-step group stay what they were.
    return {"fused": True} if getattr(group.options, "fused", False) else {}


_DEFAULT_OPTIONS = asdict(GroupOptions())  # the defaults as a dict, built once
# Options added later: in a key only when they differ from their default, so the keys of every
# group that does not use them stay what they were.
_LATER_RESULT_OPTIONS = ("rubric_prompt", "aggregation", "weights", "essential_factor", "length_penalty", "ensemble")


def _later(group: Group, names: tuple[str, ...]) -> dict:
    options = group.options
    values = {name: _option(options, name) for name in names}
    return {name: value for name, value in values.items() if value != _DEFAULT_OPTIONS[name]}


def _anchor_reads_flagged(group: Group) -> dict:
    # Policy "flag" lets the anchor read flagged rollouts (``hacking.anchor_inputs``), so its
    # reference differs; the other policies leave them out alike and keep the keys they had.
    return {"injection_policy": "flag"} if group.options.injection_policy == "flag" else {}


def _criterion(c: Criterion) -> dict:
    data = _criterion_entry(c)
    if data.get("importance") is None:
        data.pop("importance", None)  # as before importances existed
    return data


# The bytes a JSON string may hold as they are (json.dumps with ensure_ascii escapes the rest:
# '"', '\\', control characters, DEL and everything beyond ASCII).
_JSON_AS_IS = bytes(c for c in range(0x20, 0x7F) if c not in (0x22, 0x5C))


_ROLLOUTS_SLOT = '"rollouts": []'


def _plain_ascii(items) -> list[bytes] | None:
    """The rollouts' bytes when each one is plain ASCII text that JSON holds as it is (then its
    JSON string is itself in quotes: the escaping encoder reads every character, this checks its
    bytes in one C pass); None when one is not (or the rollouts are not a list of strings)."""
    if type(items) is not list or not items:
        return None
    encoded = []
    for text in items:
        if type(text) is not str or not text.isascii():
            return None
        data = text.encode()
        if data.translate(None, _JSON_AS_IS):
            return None
        encoded.append(data)
    return encoded


def group_fingerprint(group: Group, anchor_model: str, judge_model: str, prompt_version: str) -> str:
    payload = {
        **_fused(group),
        **_later(group, _LATER_RESULT_OPTIONS),
        **_anchor_reads_flagged(group),
        "prompt": group.prompt,
        "rollouts": group.rollouts,
        "mode": group.mode,
        "reference": group.reference,
        "rubric": [_criterion(c) for c in group.rubric] if group.rubric else None,
        "token_logprobs": group.token_logprobs,
        "options": _options(group, _RESULT_OPTIONS),
        "anchor_model": anchor_model,
        "judge_model": judge_model,
        "prompt_version": prompt_version,
    }
    encoded = _plain_ascii(group.rollouts)
    if encoded is not None:
        # The same digest as _digest(payload), without the rollouts (most of the text) through
        # the escaping encoder: the payload is encoded with an empty list in their place, and
        # their JSON ('["' + texts joined by '", "' + '"]') hashed there. The slot is found by
        # its text: no string's JSON can hold it (a quote inside one is escaped), and a nested
        # key of that name and value would make it appear twice: then the encoder, as before.
        text = _KEY_JSON.encode({**payload, "rollouts": []})
        at = text.find(_ROLLOUTS_SLOT)
        if at >= 0 and text.find(_ROLLOUTS_SLOT, at + 1) < 0:
            cut = at + len(_ROLLOUTS_SLOT) - 2  # just before "[]"
            digest = hashlib.sha256(text[:cut].encode())
            digest.update(b'["' + b'", "'.join(encoded) + b'"]')
            digest.update(text[cut + 2 :].encode())
            return digest.hexdigest()
    return _digest(payload)


def reference_key(fingerprint: str) -> str:
    return f"reference:{fingerprint}"


def prompt_rubric_key(group: Group, anchor_model: str, prompt_version: str) -> str:
    return "prompt-rubric:" + _digest(
        {
            **_fused(group),
            **_later(group, ("rubric_prompt",)),
            "prompt": group.prompt,
            "mode": group.mode,
            "options": _options(group, _RUBRIC_OPTIONS),
            "anchor_model": anchor_model,
            "prompt_version": prompt_version,
        }
    )


@lru_cache(maxsize=4096)
def _text_digest(text: str) -> str:
    # A rollout is asked about every criterion: its (long) text is hashed once, not n times.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def verdict_key(
    judge_model: str, prompt_version: str, stage: str, subject: str, rollout: str, temperature: float, seed: int | None
) -> str:
    return "verdict:" + _digest([judge_model, prompt_version, stage, subject, _text_digest(rollout), temperature, seed])


def verdict_keys(
    judge_model: str, prompt_version: str, stage: str, temperature: float, seed: int | None
) -> Callable[[str, str], str]:
    """``verdict_key`` with what a group's verdicts share bound: ``keys(subject, rollout)`` is the
    same string, without a JSON encoding of the whole payload per verdict. A JSON list is its
    items' encodings joined by ", " (compact separators are not used here), so the shared items
    are encoded once, the subject per call, and the rollout's digest is hex (no escaping)."""
    head = _KEY_JSON.encode([judge_model, prompt_version, stage])[:-1] + ", "  # '["m", "v", "s", '
    tail = '", ' + _KEY_JSON.encode([temperature, seed])[1:]  # '", 0.0, null]'
    encode = _KEY_JSON.encode
    sha256 = hashlib.sha256
    # A group asks n subjects (criteria) of G rollouts: each one's part is encoded once.
    starts: dict[str, bytes] = {}
    ends: dict[str, bytes] = {}

    def key(subject: str, rollout: str) -> str:
        start = starts.get(subject) if type(subject) is str else None
        if start is None:
            text = head + (encode_basestring_ascii(subject) if type(subject) is str else encode(subject)) + ', "'
            start = text.encode()
            if type(subject) is str:
                starts[subject] = start
        end = ends.get(rollout)
        if end is None:
            end = ends[rollout] = (_text_digest(rollout) + tail).encode()
        return "verdict:" + sha256(start + end).hexdigest()

    return key


def canary_key(fingerprint: str, index: int) -> str:
    """A rollout's canary verdict (with its nonce) in a group: a retried group gets it back."""
    return f"canary:{fingerprint}:{index}"


def encode_reference(reference: Reference, rubric: list[Criterion], rubric_info: dict | None) -> dict:
    return {
        "reference": {
            "text": reference.text,
            "aggregator": reference.aggregator,
            "answer": reference.answer,
            "details": reference.details,
        },
        "rubric": [_criterion_entry(c) for c in rubric],
        "rubric_info": rubric_info,
    }


def _criterion_entry(c: Criterion) -> dict:
    """``asdict(c)``: its fields in order, scalars as they are (asdict's deep copy of a scalar is
    the same object; of a tuple of strings, an equal tuple). A criterion of another shape (a
    subclass, a field of another type) goes through asdict itself."""
    tags = c.tags
    if (
        type(c) is not Criterion
        or type(tags) is not tuple
        or not _SCALARS.issuperset(map(type, (c.id, c.text, c.weight, c.source, c.importance, *tags)))
    ):
        return asdict(c)
    return {"id": c.id, "text": c.text, "weight": c.weight, "source": c.source, "tags": tags, "importance": c.importance}


_criterion_of = frozen_constructor(Criterion)  # a cached group decodes its n criteria


def decode_reference(entry: dict) -> tuple[Reference, list[Criterion], dict | None] | None:
    try:
        ref = entry["reference"]
        reference = Reference(
            text=str(ref["text"]), aggregator=ref["aggregator"], answer=ref["answer"], details=dict(ref["details"])
        )
        rubric = [
            _criterion_of(
                id=str(c["id"]),
                text=str(c["text"]),
                weight=float(c["weight"]),
                source=c.get("source", "anchor"),
                tags=tuple(c.get("tags", ())),
                importance=c.get("importance"),
            )
            for c in entry["rubric"]
        ]
        return reference, rubric, entry.get("rubric_info")
    except (KeyError, TypeError, ValueError):
        return None


def encode_verdict(verdict: Verdict) -> dict:
    return {"met": verdict.met, "p_yes": verdict.p_yes, "raw": verdict.raw, "attempts": verdict.attempts}


_verdict = frozen_constructor(Verdict)  # a cached group decodes G x n of them


def decode_verdict(entry: dict, criterion_id: str) -> Verdict | None:
    try:
        met = entry["met"]
        if not isinstance(met, bool):
            return None
        p = entry.get("p_yes")
        return _verdict(
            criterion_id=criterion_id,
            met=met,
            p_yes=None if p is None else float(p),
            raw=entry.get("raw"),
            attempts=int(entry.get("attempts", 1)),
            cached=True,
        )
    except (KeyError, TypeError, ValueError):
        return None
