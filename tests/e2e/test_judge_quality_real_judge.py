"""`cat-reward judge-quality` on the shipped pairwise and pointwise sets with the real CPU vLLM
judge (SmolLM2-135M as anchor and judge). A 135M model is a poor judge: this checks that the
harness runs, counts and writes its outputs, never its accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from cat_reward import local_judge

pytestmark = pytest.mark.e2e


def test_judge_quality_on_the_shipped_sets(judge_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env.update(CAT_ANCHOR_BASE_URL=judge_url, CAT_ANCHOR_MODEL=local_judge.SERVED_MODEL, CAT_DATA_DIR=str(tmp_path / "data"))
    out = tmp_path / "quality.json"
    done = subprocess.run(
        [sys.executable, "-m", "cat_reward.cli", "judge-quality", "--data", "builtin:pairwise", "--data", "builtin:pointwise",
         "--synthesis-max-tokens", "128", "--rubric-max-tokens", "320", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "60/60" in done.stderr  # the progress bar ran to the end
    report = json.loads(out.read_text())
    pairwise, pointwise = report["sections"]
    assert (pairwise["kind"], pointwise["kind"]) == ("pairwise", "pointwise")
    pw, pt = pairwise["summary"], pointwise["summary"]
    assert pw["items"] == 24 and pw["scored"] + pw["errors"] == 24 and pw["scored"] > 0
    assert sum(pw["error_reasons"].values()) == pw["errors"]
    for mode in ("fraction", "soft"):
        m = pw["modes"][mode]
        assert m["n"] + m["uncomputable"] == pw["scored"]
        assert 0 <= m["accuracy"] <= 1 and m["ci95"][0] <= m["accuracy"] <= m["ci95"][1]
        assert set(m["subsets"]) <= {"math", "facts", "safety", "instructions"}
    assert pt["items"] == 36 and pt["scored"] + pt["errors"] == 36
    assert pt["with_p_yes"] == pt["scored"]  # vLLM gives logprobs: every scored verdict has P(yes)
    assert 0 <= pt["auc"] <= 1 and 0 <= pt["ece"] <= 1 and 0 <= pt["accuracy"] <= 1
    assert sum(b["count"] for b in pt["reliability"]) == pt["with_p_yes"]
    assert pt["cost"]["judge_tokens_per_item"] > 0 and pw["cost"]["anchor_tokens_per_item"] > 0
    assert report["config"]["judge_model"] == local_judge.SERVED_MODEL
    assert "| fraction |" in done.stdout and "AUC of P(yes)" in done.stdout
    with Image.open(out.with_suffix(".png")) as image:
        assert image.format == "PNG" and image.size[0] > 600
