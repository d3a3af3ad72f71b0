"""The detector's string lookups done at once (``injection._Strings``): a text's set of the
prefilters' strings is exactly the strings that occur in it, a formula read as clauses is the
formula, and the detector flags what every pattern run in full flags on texts made of those strings."""

import random
import sys

import pytest

from cat_reward.engine import injection
from cat_reward.engine.injection import detect_injection

from .test_injection import _every_text, _long_texts, _odd_texts

# Blanks and joints that cut the prefilters' strings in odd places: every kind of white space, none,
# punctuation the words view turns into a space, underscores, invisibles
_JOINTS = [" ", " ", " ", "", "\n", "  ", "\t", "\r\n", "\n\n", " \n", "\xa0", "\u2003", "\x1c", "\x85", ". ", ", ",
           ": ", "-", "_", "'", "\u200b", "*", "\""]


def _fuzzed(seed: int, count: int) -> list[str]:
    """Texts made of the detector's own strings (those its prefilters look up, whole and cut into
    their pieces) and words of the corpus, joined by ``_JOINTS``, some in upper or title case."""
    rng = random.Random(seed)
    scans = injection._LATIN_SCANS + injection._OTHER_SCANS  # (not the registry: other tests add to it)
    strings = sorted({s for scan in scans for clauses in scan.clauses for clause in clauses for s in clause}
                     | {h for scan in scans for h in scan.hints or ()})
    pieces = sorted({p for s in strings for p in s.split()})
    words = sorted({w for t in _every_text() for w in t.split()})
    out = []
    for _ in range(count):
        parts = [rng.choice((strings, pieces, words)[rng.randrange(3)]) for _ in range(rng.randint(1, 40))]
        text = "".join(p + rng.choice(_JOINTS) for p in parts)
        roll = rng.random()
        out.append(text.upper() if roll < 0.1 else text.title() if roll < 0.2 else text)
    return out


def _texts() -> list[str]:
    return _every_text() + _long_texts() + _odd_texts() + _fuzzed(31, 1500)


def _exact(text: str) -> set[str]:
    """The registered strings and pieces that occur in ``text``, each looked for on its own."""
    return {s for s in injection._STRINGS.known | injection._STRINGS.keys if s in text}


def test_split_cuts_at_the_characters_isspace_holds():
    """A string without white space occurs in a text exactly when it occurs in one of its words
    (``str.split()``): that holds as the characters split cuts at are those ``str.isspace`` holds."""
    cut = {c for c in map(chr, range(sys.maxunicode + 1)) if len(("a" + c + "b").split()) == 2}
    assert cut == {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()}


def test_a_texts_strings_are_those_that_occur_in_it():
    """``_Strings.present`` (words' strings found once and remembered, strings with blanks gated by
    their rarest piece) is the set of strings found one by one, on each view the detector reads;
    and so is the words view's, from the folded view's set (``in_words_view``), which without the
    view (None) holds at least those."""
    strings = injection._STRINGS
    seen = 0
    for text in _texts():
        views = injection.Normalized(text)
        for view in {views.original, views.plain, views.folded}:
            assert strings.present(view) == _exact(view), view[:200]
        folded = injection._Lookups(views.folded)
        words = injection._Lookups(views.words, folded)
        exact = _exact(views.words) & (strings.known | strings.keys)
        assert words.present == exact, views.words[:200]
        assert strings.in_words_view(folded.present, None) >= exact
        seen += bool(words.present - folded.present)  # a string the words view holds and the folded view has not
    assert seen >= 10


def test_each_words_strings_without_the_automaton(monkeypatch):
    """Without ``pyahocorasick`` each new word's substrings are looked up: the same strings."""
    with_automaton = injection._STRINGS
    monkeypatch.setattr(injection, "ahocorasick", None)
    without = injection._Strings()
    without.add(with_automaton.known)
    without.present("")  # built
    assert without.automaton is None and with_automaton.automaton is not None
    words = {w for t in _texts()[::5] for w in t.split()}
    assert len(words) > 2000
    for word in words:
        assert without.in_word(word) == with_automaton.in_word(word), word


def test_the_remembered_words_are_bounded(monkeypatch):
    """The word cache forgets everything when full, and long words are not kept; the sets stay exact."""
    monkeypatch.setattr(injection, "_WORD_CACHE_SIZE", 50)
    strings = injection._Strings()
    strings.add(injection._STRINGS.known)
    for text in _texts()[:400]:
        assert strings.present(text) == _exact(text), text[:200]
        assert len(strings.words) <= 50
        assert all(len(w) <= injection._WORD_CACHE_CHARS for w in strings.words)


def _holds(formula, present: set[str]) -> bool:
    """A formula read as it is written (the reference for ``_clauses``)."""
    if formula is None:
        return True
    op, parts = formula
    if op == "any":
        return any(s in present for s in parts)
    results = [_holds(f, present) for f in parts]
    return all(results) if op == "and" else any(results)


def _formulas():
    for scan in injection._LATIN_SCANS + injection._OTHER_SCANS:
        for part in scan.parts:
            yield injection._read(part, scan.pattern.flags)[0]


def test_the_clauses_are_the_formula():
    """Each alternative's formula and its clauses (all hold) agree on every text of random strings
    of the formula, and on the texts' sets; no detector formula is past the clause limit."""
    rng = random.Random(32)
    formulas = list(_formulas())
    assert len(formulas) > 60
    corpus = [_exact(text) for text in _every_text()[::3]]
    checked = 0
    for formula in formulas:
        clauses = injection._clauses(formula)
        assert len(clauses) <= injection._MAX_CLAUSES
        mentioned = sorted({s for c in clauses for s in c})
        for _ in range(300):
            present = set(rng.sample(mentioned, rng.randint(0, len(mentioned)))) if mentioned else set()
            assert _holds(formula, present) == all(not c.isdisjoint(present) for c in clauses), formula
            checked += _holds(formula, present)
        for present in corpus:
            assert _holds(formula, present) == all(not c.isdisjoint(present) for c in clauses), formula
    assert checked > 1000


def test_past_the_clause_limit_the_clauses_still_hold_where_the_formula_does():
    """A formula with more clauses than the limit is read as fewer, weaker ones: never false where it holds."""
    rng = random.Random(33)
    formula = ("or", tuple(("and", (("any", (f"a{i}",)), ("any", (f"b{i}", f"c{i}")))) for i in range(8)))
    assert len(injection._clauses(formula, limit=1 << 12)) == 2 ** 8
    clauses = injection._clauses(formula, limit=16)
    assert 0 < len(clauses) <= 16
    strings = [f"{x}{i}" for x in "abc" for i in range(8)]
    held = 0
    for _ in range(2000):
        present = set(rng.sample(strings, rng.randint(0, 6)))
        if _holds(formula, present):
            held += 1
            assert all(not c.isdisjoint(present) for c in clauses)
    assert held > 100


@pytest.mark.parametrize("seed", [41, 42])
def test_the_detector_flags_what_every_pattern_in_full_flags_on_its_own_strings(seed):
    """On texts made of the prefilters' strings and pieces (cut by odd blanks and punctuation), the
    detector with its prefilters flags exactly what ``use_hints=False`` flags."""
    texts = _fuzzed(seed, 800)
    flagged = 0
    for text in texts:
        found = detect_injection(text)
        assert found == detect_injection(text, use_hints=False), text[:300]
        flagged += bool(found)
    assert 100 <= flagged <= len(texts) - 100  # both sides are exercised


def test_role_lines_are_the_role_line_patterns_matches():
    """``_role_lines`` (tried at line starts only) gives ``_ROLE_LINE.finditer``'s matches, on
    texts of one and of many lines, with blank lines and turns right after one another."""
    texts = _texts() + ["user:\n\nhuman: x", "user:\n", "\n\nassistant: yes\n", "a\nq: 1\na: 2\n\n\nsystem:\n- ignore"]
    lines = 0
    for text in texts:
        for view in {text, injection.Normalized(text).folded}:
            expected = [(m.span(), m.groups()) for m in injection._ROLE_LINE.finditer(view)]
            assert [(m.span(), m.groups()) for m in injection._role_lines(view)] == expected, view[:200]
            lines += len(expected) >= 2
    assert lines >= 50


def test_the_padding_prefilter_passes_every_text_the_padding_pattern_matches():
    """``_may_have_padding``'s coarse pass (8 characters from every 56th) and finer pass let
    through every text with a match: units of 1-8 characters repeated 63-65 times (64 is the
    fewest a match has) starting at every offset from 0 to 120, inside words or alone."""
    rng = random.Random(34)
    matched = 0
    for period in range(1, 9):
        for offset in range(121):
            for repeats in (63, 64, 65):
                unit = "".join(rng.choice("ab. -=x\n") for _ in range(period))
                head = "".join(rng.choice("qwerty uiop") for _ in range(offset))
                text = head + unit * repeats + rng.choice(["", "z", " tail words after it"])
                if injection._PADDING.search(text) is not None:
                    matched += 1
                    assert injection._may_have_padding(text), (period, offset, repeats)
    assert matched >= 1500
