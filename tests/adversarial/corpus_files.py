"""How the build_*.py scripts write their JSON Lines corpora (ids numbered per kind)."""

import json


def _line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def write_attacks(path: str, attacks: dict[str, list[str]], id_prefix: str = "") -> None:
    """One line per attack: ``{"id": "<prefix><kind>-NN", "kind", "text"}``."""
    with open(path, "w", encoding="utf-8") as f:
        for kind, texts in attacks.items():
            for i, text in enumerate(texts):
                f.write(_line({"id": f"{id_prefix}{kind}-{i + 1:02d}", "kind": kind, "text": text}))


def write_benign(path: str, texts: list[str], id_prefix: str) -> None:
    """One line per benign answer: ``{"id": "<prefix>benign-NN", "text"}``."""
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(_line({"id": f"{id_prefix}benign-{i + 1:02d}", "text": text}))
