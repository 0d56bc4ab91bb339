"""The shipped corpus: large, in both languages, on many everyday topics, with replies that
answer their own message, a bounded memory curriculum, and reproducible from its parts."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from collections import Counter

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "corpora"))
import compose  # noqa: E402

DEFAULT = ROOT / "corpora" / "default"
SENTENCE = re.compile(r"[^.!?。…]+[.!?。…]*")


def is_korean(text: str) -> bool:
    return any(0xAC00 <= ord(c) <= 0xD7A3 for c in text)


@pytest.fixture(scope="module")
def conversations() -> list[list[dict]]:
    out = []
    for path in sorted(DEFAULT.glob("*.jsonl")):
        out += [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines()]
    return out


@pytest.fixture(scope="module")
def composed() -> list[compose.Composed]:
    return compose.build()


def test_size_languages_and_turns(conversations):
    chars = Counter()
    for conv in conversations:
        text = "".join(m["content"] for m in conv)
        chars["ko" if is_korean(text) else "en"] += len(text)
    total = sum(chars.values())
    assert total >= 2_000_000 and len(conversations) >= 10_000
    assert chars["en"] / total >= 0.35 and chars["ko"] / total >= 0.35, chars
    assert sum(map(len, conversations)) / len(conversations) >= 4


def test_at_least_thirty_topics_in_each_language():
    for lang in ("en", "ko"):
        topics = compose.read_topics(lang)
        assert len(topics) >= 30, [t.name for t in topics]
        assert all(len(t.threads) >= 10 for t in topics), [(t.name, len(t.threads)) for t in topics if len(t.threads) < 10]


def test_no_reply_sentence_is_a_template_repeated_across_conversations(conversations):
    seen = Counter()
    for conv in conversations:
        sentences = {s.strip() for m in conv if m["role"] == "assistant" for s in SENTENCE.findall(m["content"])}
        seen.update(s for s in sentences if len(s) > 3)
    limit = 0.005 * len(conversations)
    common = [(s, n) for s, n in seen.most_common(10) if n > limit]
    assert not common, f"reply sentences in more than 0.5% of {len(conversations)} conversations: {common}"


def test_memory_curriculum_is_at_most_30_percent(composed, conversations):
    total = sum(len(m["content"]) for conv in conversations for m in conv)
    memory = sum(compose.characters(c.messages) for c in composed if c.kind == "memory")
    assert 0 < memory / total <= 0.30


def test_the_shards_are_what_compose_makes(composed, tmp_path):
    compose.write_shards(composed, tmp_path)
    for made in sorted(tmp_path.glob("talk-*.jsonl")):
        shipped = DEFAULT / made.name
        assert hashlib.sha256(made.read_bytes()).digest() == hashlib.sha256(shipped.read_bytes()).digest(), made.name


def test_the_recall_drill_is_what_compose_makes_and_its_facts_are_all_made_up(tmp_path):
    """corpora/recall-drill comes from the command in corpora/README.md; with
    --invented-syllables every name, pet, city and code word is a made-up word of 1-4
    syllables (no list, no favoured length), so a drilled model cannot learn how long a name is."""
    assert compose.main(["--seed", "2", "--everyday-chars", "400000", "--memory-chars", "600000",
                         "--invented-syllables", "1", "4", "--lead-ins", "--out", str(tmp_path)]) == 0
    for made in sorted(tmp_path.glob("talk-*.jsonl")):
        shipped = ROOT / "corpora" / "recall-drill" / made.name
        assert made.read_bytes() == shipped.read_bytes(), made.name
    import memory  # corpora/memory.py

    rng = random.Random(0)
    lengths = Counter(len(memory.value("pet", "ko", rng, (1, 4))) for _ in range(400))
    assert set(lengths) == {1, 2, 3, 4}  # Korean: one Hangul block per syllable
    assert not {memory.value("name", "en", rng, (1, 4)) for _ in range(400)} & set(memory.EN_NAMES)
    assert memory.value("food", "en", rng, (1, 4)) in memory.EN_FOODS  # other kinds keep their lists
    with pytest.raises(SystemExit):  # argparse's error: MIN above MAX
        compose.main(["--invented-syllables", "3", "1", "--out", str(tmp_path)])


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_with_lead_ins_no_memory_reply_starts_with_the_fact(lang, monkeypatch):
    """The copy head can copy a fact's first piece only when the reply spells it as the telling
    did, after a space; --lead-ins makes sure it does. Without them some replies start with it."""
    import memory  # corpora/memory.py

    made = iter(range(10**6))
    monkeypatch.setattr(memory, "value", lambda kind, lang, rng, invented: f"Qzv{next(made)}")
    starts = {}
    for lead_ins in (False, True):
        rng, budget = random.Random(3), compose.Budget()
        replies = [text for conv in memory.curriculum(lang, 60_000, lambda: ("hi", "hello"), rng, budget,
                                                      lead_ins=lead_ins)
                   for role, text in conv if role == "assistant"]
        starts[lead_ins] = sum(r.startswith("Qzv") for r in replies)
    assert starts[False] > 20 and starts[True] == 0


def test_korean_particles_follow_the_last_syllable():
    assert compose.fill("{x|을} 먹었어요", {"x": "비빔밥"}) == "비빔밥을 먹었어요"
    assert compose.fill("{x|을} 먹었어요", {"x": "김치찌개"}) == "김치찌개를 먹었어요"
    assert compose.fill("{x|으로} 가요", {"x": "서울"}) == "서울로 가요"
    assert compose.fill("{x|으로} 가요", {"x": "부산"}) == "부산으로 가요"
    assert compose.fill("{x|이에요}", {"x": "Odalys"}) == "Odalys예요"


def test_a_parts_file_with_an_undefined_slot_is_named(tmp_path):
    bad = tmp_path / "food.json"
    bad.write_text(json.dumps({"slots": {}, "threads": [[{"user": ["I ate {dish}."], "bot": ["Was {dish} good?"]}]]}))
    with pytest.raises(SystemExit, match=r"(?s)food\.json:.*slot \{dish\} is not in slots"):
        compose.read_topic(bad)
