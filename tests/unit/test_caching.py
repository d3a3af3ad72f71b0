"""The pipeline with a cache: retries cost no LLM call and return the same result."""

import pytest

from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.cache import MemoryCache, ResilientCache
from cat_reward.engine import CaTPipeline, Group, GroupOptions, load_prompt_set
from cat_reward.engine.ports import EquivalenceResult, Roles

from .scripts import CRITERIA, anchor_script, judge_script

pytestmark = pytest.mark.anyio
ROLLOUTS = ["2 + 3 = 5. \\boxed{5}", "I think it is \\boxed{6}", "It is \\boxed{5.0}"]


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference == candidate)


def setup(cache, decide=lambda r, c: c not in CRITERIA or CRITERIA.index(c) % 2 == 0):
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    judge = ScriptedLLM(judge_script(decide), role="judge", model="j")
    p = CaTPipeline(Roles(anchor=anchor, judge=judge), load_prompt_set(), ExactChecker(), cache=cache)
    return p, anchor, judge


def group(mode="rubric", rollouts=ROLLOUTS, **options):
    # These tests count verdicts and batches: the canary\'s extra verdict per rollout is off here
    # (test_hacking covers it, in the same batches).
    options = {"canary": False, **options}
    return Group(prompt="What is 2 + 3?", rollouts=list(rollouts), mode=mode, options=GroupOptions(**options))


@pytest.mark.parametrize("mode", ["rubric", "judge", "verifiable"])
async def test_retry_is_free_and_identical(mode):
    p, anchor, judge = setup(MemoryCache())
    first = await p.score(group(mode))
    calls = len(anchor.calls) + len(judge.calls)
    assert first.usage.llm_calls == calls > 0
    again = await p.score(group(mode))
    assert again.usage.llm_calls == 0
    assert len(anchor.calls) + len(judge.calls) == calls
    assert again.rewards == first.rewards
    assert again.reference.text == first.reference.text
    assert [c.text for c in again.rubric] == [c.text for c in first.rubric]
    assert again.fingerprint == first.fingerprint
    assert again.usage.cache_hits["reference"] == 1
    if mode != "verifiable":
        assert again.usage.cache_hits["verdict"] == sum(len(r.verdicts) for r in again.rollouts)
        assert all(v.cached for r in again.rollouts for v in r.verdicts)


async def test_new_rollout_reuses_verdicts_of_known_ones():
    p, anchor, judge = setup(MemoryCache())
    await p.score(group())
    # Another group with the same prompt: new fingerprint, new synthesis and rubric...
    changed = await p.score(group(rollouts=ROLLOUTS + ["a new rollout"]))
    assert changed.usage.stages["synthesis"].calls == 1
    # ...and since the scripted anchor writes the same rubric, only the new rollout is judged.
    assert changed.usage.stages["verdict"].calls == len(CRITERIA)
    assert changed.usage.cache_hits["verdict"] == len(ROLLOUTS) * len(CRITERIA)


async def test_failed_verdicts_are_not_cached():
    p, _, judge = setup(MemoryCache(), decide=lambda r, c: "unsure")
    first = await p.score(group(rollouts=ROLLOUTS[:1], verdict_attempts=1))
    assert first.rewards == [None]
    again = await p.score(group(rollouts=ROLLOUTS[:1], verdict_attempts=1))
    assert again.usage.stages["verdict"].calls == len(CRITERIA)  # asked again, not served "unsure"


async def test_cache_option_off_bypasses_it():
    p, _, _ = setup(MemoryCache())
    await p.score(group())
    again = await p.score(group(use_cache=False))
    assert again.usage.llm_calls == 2 + len(ROLLOUTS) * len(CRITERIA)
    assert again.usage.cache_hits == {}


async def test_reuse_rubric_across_steps_only_when_asked():
    p, anchor, _ = setup(MemoryCache())
    await p.score(group(reuse_rubric=True))
    step2 = await p.score(group(rollouts=["brand new", "rollouts here"], reuse_rubric=True))
    assert "rubric_reused" in step2.flags
    assert "synthesis" not in step2.usage.stages and "rubric" not in step2.usage.stages
    assert [c.text for c in step2.rubric] == CRITERIA
    off = await p.score(group(rollouts=["brand new", "rollouts here", "x"]))
    assert "rubric_reused" not in off.flags and off.usage.stages["synthesis"].calls == 1


async def test_a_corrupt_entry_is_a_miss_not_served():
    cache = MemoryCache()
    p, _, _ = setup(cache)
    first = await p.score(group())
    key = "reference:" + first.fingerprint
    await cache.set_many({key: {"reference": "garbage"}}, 60)
    again = await p.score(group())
    assert again.usage.stages["synthesis"].calls == 1  # recomputed, not served from the bad entry
    assert again.rewards == first.rewards


class Broken:
    def __init__(self):
        self.calls = 0

    async def get_many(self, keys):
        self.calls += 1
        raise ConnectionError("cache is down")

    async def set_many(self, items, ttl_s):
        self.calls += 1
        raise ConnectionError("cache is down")

    async def aclose(self):
        pass


async def test_broken_cache_degrades_to_no_cache_and_backs_off():
    inner = Broken()
    cache = ResilientCache(inner, cooldown_s=60)
    p, _, _ = setup(cache)
    outcome = await p.score(group())
    assert outcome.rewards == [0.6, 0.6, 0.6]
    assert cache.errors == 1 and not cache.available
    assert inner.calls == 1  # after the first failure it is left alone for the cool-down
    again = await p.score(group())
    assert again.rewards == outcome.rewards and inner.calls == 1


async def test_memory_cache_expiry_and_bound():
    cache = MemoryCache(max_entries=2)
    await cache.set_many({"a": {"v": 1}, "b": {"v": 2}, "c": {"v": 3}}, 60)
    assert await cache.get_many(["a", "b", "c"]) == [None, {"v": 2}, {"v": 3}]
    await cache.set_many({"d": {"v": 4}}, 0.000001)
    import asyncio

    await asyncio.sleep(0.01)
    assert await cache.get_many(["d"]) == [None]
