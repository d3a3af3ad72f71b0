"""Weighted rubrics, aggregation modes, length control and verdict ensembles, with scripted
anchors and judges (the pipeline and the HTTP layer)."""

import json

import httpx
import pytest

from cat_reward.api import create_app
from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.backends.scripted_scoring import ScriptedScoringLLM
from cat_reward.backends.token_counting import TokenCounting, load_tokenizer
from cat_reward.engine import CaTPipeline, Group, GroupOptions, load_prompt_set
from cat_reward.engine.aggregation import Uncomputable, aggregate
from cat_reward.engine.ports import EquivalenceResult, Roles, TokenizerUnavailable
from cat_reward.engine.types import Criterion, EnsembleMember, ImportanceWeights, LengthPenalty, Verdict
from cat_reward.engine.weighted_rubrics import parse_weighted_criteria
from cat_reward.settings import Settings

from .scripts import CRITERIA, anchor_script, criterion_of, judge_script, response_of

pytestmark = pytest.mark.anyio

WEIGHTED = [
    {"criterion": "The response states that the sum is 5.", "importance": "essential"},
    {"criterion": "The response shows the addition 2 + 3.", "importance": "important"},
    {"criterion": "The response ends with a boxed final answer.", "importance": "optional"},
    {"criterion": "The response does not contradict itself.", "importance": "essential"},
    {"criterion": "The response explains each step briefly.", "importance": "important"},
    {"criterion": "The response claims that the sum is 6.", "importance": "pitfall"},
]
ROLLOUTS = ["2 + 3 = 5. \\boxed{5}", "It is 6, since 2 + 3 = 6."]


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


def weighted_anchor(request):
    if request.stage == "synthesis":
        return "2 + 3 = 5, so the answer is \\boxed{5}."
    return json.dumps({"criteria": WEIGHTED})


def decide(response: str, criterion: str) -> bool:
    """The right rollout meets every positive criterion; the wrong one meets only 'contradict'
    and the pitfall."""
    right = response == ROLLOUTS[0]
    if "sum is 6" in criterion:
        return not right
    return right or "contradict" in criterion


def crit(cid, weight=1.0, importance=None):
    return Criterion(id=cid, text=cid, weight=weight, importance=importance)


def verdict(cid, met, p=None):
    return Verdict(cid, met=met, p_yes=p)


# --- aggregation arithmetic -----------------------------------------------------------------


def test_aggregation_modes_arithmetic():
    rubric = [crit("e", importance="essential"), crit("i", importance="important"), crit("o", importance="optional"),
              crit("p", -1.0, importance="pitfall")]
    verdicts = [verdict("e", True, 0.9), verdict("i", False, 0.2), verdict("o", True, 0.6), verdict("p", True, 0.7)]
    fraction = aggregate(rubric, verdicts, GroupOptions())
    assert fraction == pytest.approx((1 + 1 - 1) / 3)  # ±1 weights: fraction met minus pitfalls
    weighted = aggregate(rubric, verdicts, GroupOptions(aggregation="weighted"))
    assert weighted == pytest.approx((1.0 + 0.3 - 0.6) / (1.0 + 0.6 + 0.3))
    custom = aggregate(rubric, verdicts, GroupOptions(aggregation="weighted", weights=ImportanceWeights(1, 1, 1, 0)))
    assert custom == pytest.approx(2 / 3)
    # an essential met but a pitfall met too: not 1
    assert aggregate(rubric, verdicts, GroupOptions(aggregation="all_essential")) == pytest.approx(weighted * 0.5)
    clean = [verdict("e", True), verdict("i", False), verdict("o", False), verdict("p", False)]
    assert aggregate(rubric, clean, GroupOptions(aggregation="all_essential")) == 1.0
    soft = aggregate(rubric, verdicts, GroupOptions(aggregation="soft"))
    assert soft == pytest.approx((0.9 + 0.2 + 0.6 - 0.7) / 3)
    # clipped to [0, 1]
    bad = [verdict("e", False), verdict("i", False), verdict("o", False), verdict("p", True)]
    assert aggregate(rubric, bad, GroupOptions(aggregation="weighted")) == 0.0


def test_aggregation_never_silently_zero():
    rubric = [crit("a"), crit("b")]
    with pytest.raises(Uncomputable, match="verdict_failed: b"):
        aggregate(rubric, [verdict("a", True, 0.9), verdict("b", None)], GroupOptions())
    with pytest.raises(Uncomputable, match="p_yes_unavailable"):
        aggregate(rubric, [verdict("a", True, 0.9), verdict("b", True)], GroupOptions(aggregation="soft"))
    only_optional = [crit("o", importance="optional")]
    with pytest.raises(Uncomputable, match="no_positive_weight"):
        aggregate(only_optional, [verdict("o", True)], GroupOptions(aggregation="weighted", weights=ImportanceWeights(optional=0)))


def test_plain_rubric_all_essential_is_all_met_or_half_the_fraction():
    rubric = [crit("a"), crit("b")]
    assert aggregate(rubric, [verdict("a", True), verdict("b", True)], GroupOptions(aggregation="all_essential")) == 1.0
    assert aggregate(rubric, [verdict("a", True), verdict("b", False)], GroupOptions(aggregation="all_essential")) == 0.25


def test_weighted_criteria_parsing_fallbacks():
    assert parse_weighted_criteria(json.dumps({"criteria": WEIGHTED}))[5] == ("The response claims that the sum is 6.", "pitfall")
    text = "- [Essential] States the answer 5.\n2. Pitfall: Claims the answer is 6.\n- optional - Mentions units."
    assert parse_weighted_criteria(text) == [
        ("States the answer 5.", "essential"), ("Claims the answer is 6.", "pitfall"), ("Mentions units.", "optional")
    ]
    assert parse_weighted_criteria('{"criteria": [{"criterion": "Says five.", "importance": "vital"}]}') == [("Says five.", None)]


# --- the pipeline ---------------------------------------------------------------------------


def pipeline(r):
    return CaTPipeline(roles=r, prompts=load_prompt_set(), checker=ExactChecker())


async def test_weighted_rubric_prompt_and_weighted_rewards():
    anchor = ScriptedLLM(weighted_anchor, role="anchor", model="anchor-model")
    judge = ScriptedLLM(judge_script(decide), role="judge", model="judge-model")
    group = Group(prompt="2+3?", rollouts=list(ROLLOUTS), mode="rubric",
                  options=GroupOptions(rubric_prompt="weighted", aggregation="weighted"))
    outcome = await pipeline(Roles(anchor=anchor, judge=judge)).score(group)
    rubric_call = anchor.calls[1]
    assert "importance" in rubric_call.messages[-1]["content"]
    assert rubric_call.json_schema["properties"]["criteria"]["items"]["properties"]["importance"]["enum"]
    assert [c.importance for c in outcome.rubric] == [w["importance"] for w in WEIGHTED]
    assert outcome.rubric[-1].weight == -1.0 and outcome.rubric[-1].pitfall
    # right: every positive criterion, no pitfall -> 1; wrong: only an essential one, and the pitfall
    assert outcome.rewards[0] == 1.0
    assert outcome.rewards[1] == pytest.approx(max(0.0, (1.0 - 0.6) / (1 + 0.6 + 0.3 + 1 + 0.6)))
    scoring = outcome.scoring
    assert scoring["aggregation"] == "weighted" and scoring["weights"]["pitfall"] == 0.6
    assert scoring["criterion_weights"]["c6"] == -0.6 and scoring["criterion_weights"]["c1"] == 1.0
    assert scoring["prompts"]["rubric"] == "rubric_weighted.user" and scoring["prompts"]["verdict"] == ["verdict.user"]
    # The paper's rule on the same rubric: fraction met minus met pitfalls (±1)
    plain = await pipeline(Roles(anchor=anchor, judge=judge)).score(
        Group(prompt="2+3?", rollouts=list(ROLLOUTS), mode="rubric", options=GroupOptions(rubric_prompt="weighted"))
    )
    assert plain.rewards == pytest.approx([1.0, 0.0])  # wrong: (1 - 1) / 5


async def test_supplied_rubric_with_importance_and_soft():
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    judge = ScriptedLLM(judge_script(lambda r, c: "5" in c, p=0.8), role="judge", model="j")
    rubric = (
        Criterion("s1", "The response states that the sum is 5.", 5.0, "caller", importance="essential"),
        Criterion("s2", "The response shows the addition.", 2.0, "caller", importance="optional"),
    )
    options = GroupOptions(aggregator="none", rubric_source="supplied", aggregation="soft")
    outcome = await pipeline(Roles(anchor=anchor, judge=judge)).score(
        Group(prompt="q", rollouts=["x"], mode="rubric", rubric=rubric, options=options)
    )
    assert outcome.rewards[0] == pytest.approx((5 * 0.8 + 2 * 0.2) / 7)  # points, P(yes) for met
    assert anchor.calls == []


async def test_length_penalty_after_the_score():
    class Counter:
        def __init__(self):
            self.asked = []

        async def count_tokens(self, texts, tokenizer):
            self.asked.append((list(texts), tokenizer))
            return [len(t.split()) for t in texts], "words"

    counter = Counter()
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    judge = ScriptedLLM(judge_script(lambda r, c: True), role="judge", model="j")
    rollouts = ["short one", "a much longer rollout with many words in it"]
    options = GroupOptions(length_penalty=LengthPenalty(max_tokens=5, penalty=1.0, tokenizer="x"))
    outcome = await pipeline(Roles(anchor=anchor, judge=judge, tokens=counter)).score(
        Group(prompt="q", rollouts=rollouts, mode="rubric", options=options)
    )
    assert counter.asked == [(rollouts, "x")]
    assert outcome.rewards == [1.0, 0.0]
    assert outcome.rollouts[1].length == {
        "tokens": 9, "max_tokens": 5, "over": True, "penalty": 1.0, "reward_before_penalty": 1.0, "tokenizer": "words"
    }
    assert outcome.rollouts[0].length["penalty"] == 0.0 and "length_penalty" in outcome.rollouts[1].flags
    assert outcome.scoring["length_penalty"]["penalised"] == 1


async def test_length_penalty_tokenizer_that_cannot_load_costs_no_llm_call():
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    judge = ScriptedLLM(judge_script(lambda r, c: True), role="judge", model="j")
    options = GroupOptions(length_penalty=LengthPenalty(max_tokens=5, tokenizer="/no/such/tokenizer.json"))
    from cat_reward.engine import InvalidGroup

    with pytest.raises(InvalidGroup) as info:
        await pipeline(Roles(anchor=anchor, judge=judge, tokens=TokenCounting(judge))).score(
            Group(prompt="q", rollouts=["x"], mode="rubric", options=options)
        )
    assert "/no/such/tokenizer.json" in info.value.message and info.value.param == "options.length_penalty.tokenizer"
    assert anchor.calls == [] and judge.calls == []


def local_tokenizer(tmp_path) -> str:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel({"[UNK]": 0, "two": 1, "plus": 2, "three": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return str(tmp_path)


async def test_local_hf_tokenizer_counts(tmp_path):
    folder = local_tokenizer(tmp_path)
    counts, name = await TokenCounting().count_tokens(["two plus three", "two , three !"], folder)
    assert counts == [3, 4] and name == folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerUnavailable, match="no tokenizer.json"):
        load_tokenizer(str(tmp_path / "empty"))
    with pytest.raises(TokenizerUnavailable, match="'./nowhere.json' cannot be loaded"):
        load_tokenizer("./nowhere.json")


def two_judges(decide_a, decide_b):
    """Two scripted judges that score in batches; decide_x(response, criterion) -> (token, p_yes)."""

    def scorer(decide):
        def score(messages):
            user = messages[-1]["content"]
            response = user.split("<response>\n", 1)[1].split("\n</response>", 1)[0]
            criterion = user.rsplit("\n\n", 1)[1].split(": ", 1)[1].split("\n", 1)[0]
            return decide(response, criterion)

        return score

    a = ScriptedScoringLLM(lambda r: "yes", scorer(decide_a), model="judge-a")
    b = ScriptedScoringLLM(lambda r: "yes", scorer(decide_b), model="judge-b")
    return a, b


async def test_ensemble_of_two_judges_and_paraphrases_batched_in_parallel():
    a, b = two_judges(lambda r, c: ("Yes", 0.8), lambda r, c: ("No", 0.3) if "boxed" in c else ("Yes", 0.9))
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    members = (EnsembleMember("judge", "verdict"), EnsembleMember("b", "verdict_p1"), EnsembleMember("judge", "verdict_p2"))
    rollouts = ["one", "two", "three"]
    outcome = await pipeline(Roles(anchor=anchor, judge=a, judges={"b": b})).score(
        # canary off: this counts the ensemble's batches (the canary's own batch is tested in test_hacking)
        Group(prompt="q", rollouts=rollouts, mode="rubric", options=GroupOptions(ensemble=members, aggregation="soft", canary=False))
    )
    # one batched request per member: the main judge carries two members (two prompts), b one
    assert [len(batch) for batch in b.batches] == [len(rollouts) * len(CRITERIA)]
    assert sorted(len(batch) for batch in a.batches) == [15, 15]
    assert all("Rubric item:" in p for p in b.batches[0])  # b was asked with verdict_p1
    kinds = sorted("Statement:" in batch[0] for batch in a.batches)  # the main judge: verdict and verdict_p2
    assert kinds == [False, True] and all("Criterion:" in p for batch in a.batches if "Statement:" not in batch[0] for p in batch)
    boxed = next(c.id for c in outcome.rubric if "boxed" in c.text)
    v = next(v for v in outcome.rollouts[0].verdicts if v.criterion_id == boxed)
    assert v.p_yes == pytest.approx((0.8 + 0.3 + 0.8) / 3) and v.met is True
    assert v.spread == pytest.approx(0.5)
    assert [m.member for m in v.members] == ["judge/verdict", "b/verdict_p1", "judge/verdict_p2"]
    assert [m.met for m in v.members] == [True, False, True]
    ens = outcome.scoring["ensemble"]
    assert [m["model"] for m in ens["members"]] == ["judge-a", "judge-b", "judge-a"]
    assert ens["disagreement"][boxed] == {"mean_spread": 0.5, "split_rate": 1.0, "judged": 3}
    other = next(c.id for c in outcome.rubric if "boxed" not in c.text)
    assert ens["disagreement"][other]["split_rate"] == 0.0
    assert outcome.scoring["prompts"]["verdict"] == ["verdict.user", "verdict_p1.user", "verdict_p2.user"]


async def test_ensemble_member_without_verdict_makes_the_verdict_unusable():
    a, b = two_judges(lambda r, c: ("Yes", 0.8), lambda r, c: ("maybe", None))
    b.script = lambda request: "perhaps"  # the chat re-asks stay unparseable too
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    members = (EnsembleMember("judge"), EnsembleMember("b"))
    outcome = await pipeline(Roles(anchor=anchor, judge=a, judges={"b": b})).score(
        Group(prompt="q", rollouts=["one"], mode="rubric", options=GroupOptions(ensemble=members))
    )
    assert outcome.rewards == [None]
    assert outcome.rollouts[0].verdicts[0].error.startswith("ensemble_incomplete: no verdict from b/verdict")


# --- the HTTP layer -------------------------------------------------------------------------


@pytest.fixture
async def make_client():
    opened = []

    async def make(judges=None, **settings):
        anchor = ScriptedLLM(weighted_anchor, role="anchor", model="anchor-model")
        judge = ScriptedLLM(judge_script(decide), role="judge", model="judge-model")
        r = Roles(anchor=anchor, judge=judge, judges=judges or {})
        app = create_app(Settings(**settings), roles=r, checker=ExactChecker(), with_history=False)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        opened.append((client, lifespan))
        return client

    yield make
    for client, lifespan in opened:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


BODY = {"prompt": "What is 2 + 3?", "rollouts": ROLLOUTS, "mode": "rubric"}


@pytest.mark.parametrize(
    "options, param",
    [
        ({"weights": {"pitfall": -1}}, "options.weights.pitfall"),
        ({"weights": {"essential": -0.5}}, "options.weights.essential"),
        ({"aggregation": "median"}, "options.aggregation"),
        ({"rubric_prompt": "fancy"}, "options.rubric_prompt"),
        ({"length_penalty": {"max_tokens": 10, "tokenizer": "/nowhere/tok.json"}}, "options.length_penalty.tokenizer"),
        ({"length_penalty": {"max_tokens": -1}}, "options.length_penalty.max_tokens"),
        ({"length_penalty": {"penalty": 1}}, "options.length_penalty.max_tokens"),
        ({"ensemble": [{"judge": "nobody"}]}, "options.ensemble.0.judge"),
        ({"ensemble": [{"prompt": "verdict_p9"}]}, "options.ensemble.0.prompt"),
        ({"ensemble": []}, "options.ensemble"),
        ({"essential_factor": 2}, "options.essential_factor"),
    ],
)
async def test_bad_scoring_options_are_422_naming_the_field(make_client, options, param):
    client = await make_client()
    response = await client.post("/rewards", json={**BODY, "options": options})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    if "tokenizer" in param:
        assert "/nowhere/tok.json" in error["message"]


async def test_aggregation_on_other_modes_is_422(make_client):
    client = await make_client()
    response = await client.post("/rewards", json={**BODY, "mode": "judge", "options": {"aggregation": "soft"}})
    assert response.status_code == 422 and response.json()["error"]["param"] == "options.aggregation"


async def test_api_weighted_all_essential_with_audit(make_client, tmp_path):
    client = await make_client()
    body = {
        **BODY,
        "options": {
            "rubric_prompt": "weighted",
            "aggregation": "all_essential",
            "essential_factor": 0.25,
            "weights": {"optional": 0.1},
            "length_penalty": {"max_tokens": 4, "penalty": 0.5, "tokenizer": local_tokenizer(tmp_path)},
        },
    }
    response = await client.post("/rewards", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    weighted_wrong = max(0.0, (1.0 - 0.6) / (1 + 0.6 + 0.1 + 1 + 0.6))
    # rollout 0 has 7 tokens here (unknown words count one each): over 4, so -0.5
    assert data["rewards"] == pytest.approx([1.0 - 0.5, weighted_wrong * 0.25 - 0.5])
    assert data["details"][0]["length"]["reward_before_penalty"] == 1.0
    assert [c["importance"] for c in data["rubric"]] == [w["importance"] for w in WEIGHTED]
    scoring = data["scoring"]
    assert scoring["aggregation"] == "all_essential" and scoring["essential_factor"] == 0.25
    assert scoring["weights"] == {"essential": 1.0, "important": 0.6, "optional": 0.1, "pitfall": 0.6}
    assert scoring["length_penalty"]["max_tokens"] == 4 and scoring["length_penalty"]["penalised"] == 2
    assert scoring["prompts"]["rubric"] == "rubric_weighted.user"
    # A different aggregation is a different result: another record, not the cached one
    again = await client.post("/rewards", json={**body, "options": {**body["options"], "aggregation": "weighted"}})
    assert again.json()["record_id"] != data["record_id"]


async def test_default_request_keeps_the_papers_rule_and_record(make_client):
    client = await make_client()
    data = (await client.post("/rewards", json=BODY)).json()
    # The anchor replies with objects: the standard prompt keeps their text, no importance.
    assert all("importance" not in c or c["importance"] is None for c in data["rubric"])
    assert data["scoring"]["aggregation"] == "fraction" and data["scoring"]["ensemble"] is None
    assert all(v["members"] is None and v["spread"] is None for d in data["details"] for v in d["verdicts"])
    assert data["scoring"]["prompts"] == {"set": data["provenance"]["prompt_version"], "rubric": "rubric.user", "verdict": ["verdict.user"]}


async def test_settings_default_ensemble_and_aggregation(make_client):
    from cat_reward.backends.scripted import yes_no_logprobs
    from cat_reward.engine.ports import ChatResult

    def says_no(request):
        assert "Statement:" in request.messages[-1]["content"]  # verdict_p2
        return ChatResult(text="no", model="judge-b", top_logprobs=yes_no_logprobs(0.1))

    b = ScriptedLLM(says_no, role="judge", model="judge-b")
    client = await make_client(
        judges={"b": b},
        aggregation="soft",
        verdict_ensemble="judge/verdict,b/verdict_p2",
        extra_judges={"b": {"base_url": "http://127.0.0.1:1/v1"}},
    )
    data = (await client.post("/rewards", json=BODY)).json()
    assert data["scoring"]["aggregation"] == "soft"
    assert [m["name"] for m in data["scoring"]["ensemble"]["members"]] == ["judge/verdict", "b/verdict_p2"]
    v = data["details"][0]["verdicts"][0]
    assert v["p_yes"] == pytest.approx((0.9 + 0.1) / 2) and v["spread"] == pytest.approx(0.8)


async def test_rubric_defaults_from_settings_do_not_refuse_other_modes(make_client):
    b = ScriptedLLM(judge_script(lambda r, c: True), role="judge", model="judge-b")
    client = await make_client(
        judges={"b": b}, aggregation="soft", rubric_prompt="weighted", verdict_ensemble="judge/verdict,b/verdict",
        extra_judges={"b": {"base_url": "http://127.0.0.1:1/v1"}},
    )
    judged = await client.post("/rewards", json={**BODY, "mode": "judge"})
    assert judged.status_code == 200, judged.text
    scoring = judged.json()["scoring"]
    assert scoring["aggregation"] is None and scoring["ensemble"] is None
    assert scoring["prompts"]["verdict"] == ["equivalence.user"]
    supplied = await client.post("/rewards", json={**BODY, "rubric": [{"criterion": "The response says 5."}]})
    assert supplied.status_code == 200, supplied.text
    assert supplied.json()["scoring"]["prompts"]["rubric"] is None  # no anchor rubric: the weighted prompt is not used
    refused = await client.post(
        "/rewards", json={**BODY, "rubric": [{"criterion": "The response says 5."}], "options": {"rubric_prompt": "weighted"}}
    )
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "options.rubric_prompt"


def test_settings_reject_bad_weights_and_ensembles():
    with pytest.raises(ValueError, match="pitfall"):
        Settings(importance_weights={"pitfall": -1})
    with pytest.raises(ValueError, match="CAT_EXTRA_JUDGES"):
        Settings(verdict_ensemble="other/verdict")
    with pytest.raises(ValueError, match="JUDGE/PROMPT"):
        Settings(verdict_ensemble="judge")


def test_new_options_travel_between_replicas_as_json():
    from cat_reward.engine.types import group_from_json, group_to_json

    options = GroupOptions(
        rubric_prompt="weighted", aggregation="all_essential", weights=ImportanceWeights(1, 0.5, 0.2, 0.9),
        essential_factor=0.3, length_penalty=LengthPenalty(750, 1.0, "tok"),
        ensemble=(EnsembleMember("judge", "verdict_p1"), EnsembleMember("b")),
    )
    rubric = (Criterion("s1", "x", -2.0, "caller", ("t",), "pitfall"),)
    group = Group(prompt="q", rollouts=["a"], mode="rubric", rubric=rubric, options=options)
    assert group_from_json(json.loads(json.dumps(group_to_json(group)))) == group
    # ... and without the JSON step (the in-memory sample store keeps asdict's tuples): found by tests/fuzz,
    # a samples request with an ensemble crashed when its group was scored.
    assert group_from_json(group_to_json(group)) == group


async def test_judge_tokenize_counts_and_its_failures():
    from cat_reward.backends.openai_compat import OpenAICompatClient

    from .fake_vllm import FakeVLLM

    async def counter(fake, kind="auto"):
        http = httpx.AsyncClient(transport=fake.transport())
        judge = OpenAICompatClient(role="judge", model="m", base_urls=["http://j/v1"], http=http, kind=kind)
        return TokenCounting(judge), http

    fake = FakeVLLM()
    tokens, http = await counter(fake)
    counts, name = await tokens.count_tokens(["abc", "hello"], None)
    assert counts == [3, 5] and name == "judge /tokenize (m)"  # the fake tokenizes by character
    assert all(b["add_special_tokens"] is False for b in fake.bodies("/tokenize"))
    await http.aclose()
    # a vLLM whose /tokenize refuses: not a 5xx, a 422 naming the tokenizer option
    tokens, http = await counter(FakeVLLM(tokenize_ok=False))
    with pytest.raises(TokenizerUnavailable, match="/tokenize did not count tokens"):
        await tokens.count_tokens(["abc"], None)
    await http.aclose()
    # a backend without /tokenize at all
    tokens, http = await counter(FakeVLLM(version=False))
    with pytest.raises(TokenizerUnavailable, match="has no /tokenize"):
        await tokens.count_tokens(["abc"], None)
    await http.aclose()
