"""docs/topology.py draws the topology picture of docs/deploying.md (generated, not hand-drawn)."""

from __future__ import annotations

import runpy
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def test_topology_picture_is_generated(tmp_path):
    draw = runpy.run_path(str(ROOT / "docs" / "topology.py"))["draw"]
    out = draw(tmp_path / "topology.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 1000 and image.height > 500
    assert "images/topology.png" in (ROOT / "docs" / "deploying.md").read_text()
    assert (ROOT / "docs" / "images" / "topology.png").exists()  # the committed copy
