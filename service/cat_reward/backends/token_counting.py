"""Token counting for length control (``engine.ports.TokenCounter``).

    tokenizer None   the judge's own tokenizer, through vLLM's ``/tokenize``
    tokenizer NAME   a Hugging Face tokenizer, loaded with the ``tokenizers`` library (the
                     ``tokenizers`` extra): a local ``tokenizer.json`` file, a folder holding one,
                     or a Hub name (downloaded once by the library, then cached by it)

Loaded tokenizers are kept (a few, by name); a name that fails to load is not remembered, so a
later request may succeed once the file or the network is there. Loading and encoding run in a
worker thread: the event loop is never blocked by a download or a long batch.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

from ..engine.ports import TokenizerUnavailable

MAX_LOADED = 8


class TokenCounting:
    def __init__(self, judge=None) -> None:
        self.judge = judge
        self._loaded: OrderedDict[str, object] = OrderedDict()
        self._lock = asyncio.Lock()

    async def count_tokens(self, texts: list[str], tokenizer: str | None) -> tuple[list[int], str]:
        if tokenizer is None:
            count = getattr(self.judge, "count_tokens", None)
            if count is None:
                raise TokenizerUnavailable(
                    "the judge cannot count tokens; name a tokenizer in options.length_penalty.tokenizer"
                )
            return await count(texts), f"judge /tokenize ({self.judge.model})"
        loaded = await self._tokenizer(tokenizer)
        encodings = await asyncio.to_thread(loaded.encode_batch, texts, add_special_tokens=False)
        return [len(e.ids) for e in encodings], tokenizer

    async def _tokenizer(self, name: str):
        async with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            loaded = await asyncio.to_thread(load_tokenizer, name)
            self._loaded[name] = loaded
            while len(self._loaded) > MAX_LOADED:
                self._loaded.popitem(last=False)
            return loaded


def load_tokenizer(name: str):
    """A ``tokenizers.Tokenizer`` from a file, a folder or a Hub name; ``TokenizerUnavailable``
    naming it otherwise."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise TokenizerUnavailable(
            f"tokenizer {name!r} cannot be loaded: the `tokenizers` library is not installed "
            "(pip install 'cat-reward[tokenizers]')"
        ) from None
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            file = path / "tokenizer.json"
            if not file.is_file():
                raise TokenizerUnavailable(f"tokenizer {name!r} cannot be loaded: the folder has no tokenizer.json")
            return Tokenizer.from_file(str(file))
        if path.is_file():
            return Tokenizer.from_file(str(path))
        if name.startswith(("/", ".", "~")):
            raise TokenizerUnavailable(f"tokenizer {name!r} cannot be loaded: no such file or folder")
        return Tokenizer.from_pretrained(name)
    except TokenizerUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the library raises many kinds; all mean "cannot load"
        raise TokenizerUnavailable(f"tokenizer {name!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
