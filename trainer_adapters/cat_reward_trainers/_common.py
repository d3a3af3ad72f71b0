"""What the adapters share: the service address, one async client per event loop, text helpers."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from cat_reward_client import AsyncCatRewardClient

DEFAULT_URL_ENV = "CAT_REWARD_URL"
DEFAULT_URL = "http://127.0.0.1:8000"


def service_url(base_url: str | None) -> str:
    """The service address: the argument, else $CAT_REWARD_URL, else http://127.0.0.1:8000."""
    return base_url or os.environ.get(DEFAULT_URL_ENV) or DEFAULT_URL


class LoopClients:
    """One ``AsyncCatRewardClient`` per running event loop, created on first use in that loop.

    Trainers call async reward code on event loops of their own, in other threads (TRL) or in
    Ray actors (verl), so a client must not be built at import time or shared across loops:
    an httpx connection pool belongs to the loop that opened it.
    """

    def __init__(self, base_url: str | None, client_kwargs: Mapping[str, Any] | None = None) -> None:
        self.base_url = base_url
        self.client_kwargs = dict(client_kwargs or {})
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncCatRewardClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self) -> AsyncCatRewardClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = AsyncCatRewardClient(service_url(self.base_url), **self.client_kwargs)
                self._clients[loop] = client
            return client

    async def aclose(self) -> None:
        """Close the client of the running loop (others close with their loops)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


def content_text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a multimodal part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            part.get("text", "") if isinstance(part, Mapping) else str(part) for part in content
        )
    return "" if content is None else str(content)


def completion_text(completion: Any) -> str:
    """A completion as text: plain (a string) or conversational (a list of messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        return "".join(content_text(m.get("content")) if isinstance(m, Mapping) else str(m) for m in completion)
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}")


def prompt_json(prompt: Any) -> str | list[dict[str, str]]:
    """A prompt as the service takes it: text, or chat messages with text content."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Mapping):
        prompt = [prompt]
    if isinstance(prompt, Sequence):
        return [{"role": str(m.get("role", "user")), "content": content_text(m.get("content"))} for m in prompt]
    raise TypeError(f"cannot read a prompt of type {type(prompt).__name__}")
