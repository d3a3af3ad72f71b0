"""The dashboard's view helpers without HTTP: reward statistics, the plot's layout, and pages of
records that lack parts (older releases, failures), rendered by the real templates."""

from __future__ import annotations

import math

import pytest

from cat_reward.api.ui.rendering import env
from cat_reward.api.ui.views import (
    fmt_num,
    fmt_time,
    prompt_messages,
    prompt_preview,
    record_view,
    reward_stats,
    rewards_plot,
    summary_row,
)


def test_reward_stats():
    s = reward_stats([0.0, 0.5, None, 1.0, 0.25])
    assert (s.n, s.missing, s.minimum, s.maximum) == (5, 1, 0.0, 1.0)
    assert s.mean == pytest.approx(0.4375) and s.median == pytest.approx(0.375)
    assert (s.q1, s.q3) == (pytest.approx(0.1875), pytest.approx(0.625))
    one = reward_stats([0.7])
    assert one.q1 == one.median == one.q3 == 0.7
    empty = reward_stats([None, None])
    assert empty.values == [] and empty.mean is None and empty.missing == 2
    assert reward_stats("not a list").n == 0
    assert reward_stats([True, float("nan"), 1]).values == [1.0]  # booleans and NaN are not rewards


def test_formatting():
    assert fmt_num(0.123456) == "0.12" and fmt_num(None) == "–" and fmt_num(-0.0001) == "0.00"
    assert fmt_num(float("inf")) == "–" and fmt_num("0.5") == "–" and fmt_num(2, 1) == "2.0"
    assert fmt_time("2025-03-01T12:00:00.123456+00:00") == "2025-03-01 12:00:00 UTC"
    assert fmt_time("2025-03-01T14:00:00+02:00", zone=False) == "2025-03-01 12:00:00"
    assert fmt_time("garbage") == "garbage" and fmt_time(None) == ""
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is\n  2 + 3?"}]
    assert prompt_messages(chat) == chat and prompt_messages("hi") == [{"role": "user", "content": "hi"}]
    assert prompt_preview(chat) == "What is 2 + 3?"
    assert prompt_preview("x" * 200, width=10) == "x" * 9 + "…"


def test_plot_layout():
    rows = [
        {"step": 10, "rewards": [0.0, 1.0]},
        {"step": 10, "rewards": [0.5]},
        {"step": 0, "rewards": [0.2, 0.4]},
        {"step": 5, "rewards": [None, None]},  # all null: listed, not drawn
        {"step": 20, "rewards": [-1.0, 1.0]},  # SCRL's range
    ]
    plot = rewards_plot(rows)
    assert [b.step for b in plot.boxes] == [0, 10, 20] and plot.empty_steps == [5]
    assert [b.groups for b in plot.boxes] == [1, 2, 1]
    xs = [b.x for b in plot.boxes]
    assert plot.left < xs[0] < xs[1] < xs[2] < plot.right
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1])  # x is linear in the step
    for b in plot.boxes:  # SVG y grows downwards
        assert plot.top <= b.y_max <= b.y_q3 <= b.y_median <= b.y_q1 <= b.y_min <= plot.bottom
    labels = [label for _, label in plot.y_ticks]
    assert labels[0] == "-1" and labels[-1] == "1" and "0" in labels  # the axis covers [-1, 1]
    assert [label for _, label in plot.x_ticks] == [str(s) for s in range(0, 21, 2)]  # 1/2/5 x 10^k spacing
    assert len(plot.mean_path.split()) == 3

    single = rewards_plot([{"step": 3, "rewards": [0.5]}])
    assert len(single.boxes) == 1 and single.boxes[0].x == pytest.approx((single.left + single.right) / 2)
    assert single.x_ticks == [(single.boxes[0].x, "3")]
    assert rewards_plot([]).boxes == []

    many = rewards_plot([{"step": s, "rewards": [s % 2]} for s in range(0, 100_000, 97)])
    assert len(many.boxes) == math.ceil(100_000 / 97) and all(b.half >= 1 for b in many.boxes)
    assert len(many.x_ticks) <= 12


def test_a_record_with_missing_parts_still_renders():
    """A record from an older release, or one whose scoring failed half-way, has gaps."""
    record = {
        "id": "rb_old", "created_at": "2025-01-01T00:00:00+00:00", "prompt_hash": "h", "mode": "rubric",
        "run_id": None, "step": None, "group_id": None, "anchor_model": "a", "judge_model": "j",
        "prompt_version": "cat-v0", "request": {"prompt": [{"role": "user", "content": "Q?"}], "rollouts": ["a", "b"]},
        "result": {
            "rewards": [1.0, None],
            "rubric": [{"id": "c1", "text": "Mentions x."}, "junk"],
            "details": [
                {"index": 0, "verdicts": [{"criterion_id": "c1", "met": True}]},  # no P(yes): no logprobs
                {"index": 1, "verdicts": [{"criterion_id": "c1", "met": None, "error": "timeout"}]},
            ],
        },
    }  # fmt: skip
    view = record_view(record)
    [matrix] = view["matrices"]
    assert [c.state for c in matrix.rows[0].cells] == ["met", "failed"]
    assert matrix.rows[0].cells[1].title == "failed; error: timeout"
    html = env.get_template("rubric.html").render(request_path="/ui/rubrics/rb_old", viewer=None, **view)
    assert "Mentions x." in html and "cell failed" in html and "No reference text." in html

    bare = {**record, "result": {}, "request": {}}
    html = env.get_template("rubric.html").render(request_path="/", viewer=None, **record_view(bare))
    assert "rb_old" in html and 'class="matrix"' not in html

    row = summary_row(bare)
    assert row["stats"].n == 0 and row["n_criteria"] == 0 and row["prompt"] == ""
