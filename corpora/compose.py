"""Compose the default corpus's conversations from the hand-written parts in corpora/parts/.

    python corpora/compose.py                 # writes corpora/default/talk-00.jsonl ... talk-09.jsonl
    python corpora/compose.py --check FILE    # checks one parts file and prints its size

Seeded and reproducible: the same parts and --seed give byte-identical files. Two kinds of
conversation come out, shuffled together into ten shards (validation takes the last 10% of
the corpus in file order, so the last shard is a fair sample of both):

* everyday talk: each parts file holds threads (2-4 exchanges, 3-4 hand-written variants of
  every message) on one topic in one language; a conversation is one thread, or two on
  different topics, with one variant picked per message and slots ({dish}, {city}) filled
  with one value for the whole conversation, so each reply answers its own message.
* the memory curriculum (corpora/memory.py): the user tells facts, chats about other things
  for 0 to 8 exchanges, then asks for them back.

The four hand-written files beside the shards (app_help, greetings, lstm_concepts,
small_talk) are kept as they are.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = HERE / "parts"
OUT = HERE / "default"
SHARDS = 10
SLOT = re.compile(r"\{([a-z_0-9]+)(?:\|([^}]+))?\}")
SENTENCE = re.compile(r"[^.!?。…]+[.!?。…]*")
# No reply sentence may appear in more conversations than this (0.5% of the corpus's 10,000+):
# where a variant would pass it, another variant of the same message is taken.
SENTENCE_CAP = 45

# Korean particles that change with the last syllable: (after a final consonant, after a vowel).
PARTICLES = {"은": ("은", "는"), "이": ("이", "가"), "을": ("을", "를"), "과": ("과", "와"),
             "으로": ("으로", "로"), "이랑": ("이랑", "랑"), "이나": ("이나", "나"),
             "아": ("아", "야"), "이에요": ("이에요", "예요"), "이야": ("이야", "야"),
             "이라고": ("이라고", "라고"), "이라면": ("이라면", "라면"), "이라니": ("이라니", "라니"),
             "이군요": ("이군요", "군요"), "이요": ("이요", "요"), "이시군요": ("이시군요", "시군요")}
DIGIT_BATCHIM = {"0": True, "1": True, "3": True, "6": True, "7": True, "8": True}


def final_consonant(word: str) -> int | None:
    """The final consonant index (1-27) of the word's last syllable, 0 for none; None if the
    word does not end in Hangul or a digit (Latin letters: read as they sound in Korean)."""
    last = word.rstrip()[-1:]
    if not last:
        return 0
    code = ord(last) - 0xAC00
    if 0 <= code < 11172:
        return code % 28
    if last.isdigit():
        return 8 if last in "18" else (1 if DIGIT_BATCHIM.get(last) else 0)
    return 4 if last.lower() in "lmnr" else 0  # Odalys → 오달리스: no final consonant


def particle(word: str, kind: str) -> str:
    """`word` followed by the form of particle `kind` that fits its last sound."""
    with_final, without = PARTICLES[kind]
    final = final_consonant(word)
    if kind == "으로" and final == 8:  # ㄹ takes 로: 서울로
        return word + without
    return word + (with_final if final else without)


def sentences(text: str) -> set[str]:
    return {s.strip() for s in SENTENCE.findall(text) if len(s.strip()) > 3}


class Budget:
    """How many conversations each reply sentence is in so far."""

    def __init__(self):
        self.used: dict[str, int] = {}

    def pick(self, variants: list[str], values: dict[str, str], rng: random.Random) -> str:
        """A variant, filled, whose sentences are all under SENTENCE_CAP (the least used one
        if none is)."""
        filled = [fill(v, values) for v in variants]
        load = [max((self.used.get(s, 0) for s in sentences(f)), default=0) for f in filled]
        fresh = [f for f, n in zip(filled, load) if n < SENTENCE_CAP]
        return rng.choice(fresh) if fresh else filled[load.index(min(load))]

    def count(self, conversation: list[tuple[str, str]]) -> None:
        for s in {s for role, text in conversation if role == "assistant" for s in sentences(text)}:
            self.used[s] = self.used.get(s, 0) + 1


def fill(text: str, values: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        value = values[m.group(1)]
        return particle(value, m.group(2)) if m.group(2) else value
    return SLOT.sub(one, text)


@dataclass
class Topic:
    name: str
    lang: str
    slots: dict[str, list[str]]
    threads: list[list[dict]]

    def instance(self, thread: list[dict], rng: random.Random, budget: Budget,
                 exchanges: int | None = None) -> list[tuple[str, str]]:
        """One conversation from `thread`: a variant per message, one value per slot."""
        values = {name: rng.choice(pool) for name, pool in self.slots.items()}
        messages = []
        for ex in thread[:exchanges]:
            messages.append(("user", fill(rng.choice(ex["user"]), values)))
            messages.append(("assistant", budget.pick(ex["bot"], values, rng)))
        return messages


def read_topic(path: Path) -> Topic:
    """A parts file, checked: every problem is named with the file and where it is."""
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{where}: not readable JSON ({exc})")
    problems = []
    slots = data.get("slots", {})
    if not isinstance(slots, dict) or not all(isinstance(v, list) and v and all(isinstance(s, str) and s.strip() for s in v)
                                                for v in slots.values()):
        problems.append("slots must map names to non-empty lists of strings")
        slots = {}
    threads = data.get("threads")
    if not isinstance(threads, list) or not threads:
        raise SystemExit(f"{where}: no threads")
    seen: dict[str, str] = {}
    for t, thread in enumerate(threads):
        if not isinstance(thread, list) or not 1 <= len(thread) <= 6:
            problems.append(f"thread {t}: expected a list of 1 to 6 exchanges")
            continue
        for e, ex in enumerate(thread):
            for role in ("user", "bot"):
                variants = ex.get(role) if isinstance(ex, dict) else None
                if not isinstance(variants, list) or not variants or not all(isinstance(v, str) and v.strip() for v in variants):
                    problems.append(f"thread {t} exchange {e}: '{role}' needs a list of non-empty strings")
                    continue
                for v in variants:
                    for m in SLOT.finditer(v):
                        if m.group(1) not in slots:
                            problems.append(f"thread {t} exchange {e}: slot {{{m.group(1)}}} is not in slots")
                        if m.group(2) and m.group(2) not in PARTICLES:
                            problems.append(f"thread {t} exchange {e}: unknown particle |{m.group(2)}")
                    if "{" in SLOT.sub("", v) or "}" in SLOT.sub("", v):
                        problems.append(f"thread {t} exchange {e}: a stray brace in {v!r}")
                    if v in seen and role == "bot":
                        problems.append(f"thread {t} exchange {e}: {v!r} repeats {seen[v]}")
                    seen.setdefault(v, f"thread {t} exchange {e}")
    if problems:
        raise SystemExit(f"{where}:\n  " + "\n  ".join(problems[:30]))
    return Topic(path.stem, path.parent.name, slots, threads)


def read_topics(lang: str) -> list[Topic]:
    return [read_topic(p) for p in sorted((PARTS / lang).glob("*.json"))]


def characters(conversation: list[tuple[str, str]]) -> int:
    return sum(len(text) for _, text in conversation)


def everyday(topics: list[Topic], target_chars: int, rng: random.Random, budget: Budget) -> list[list[tuple[str, str]]]:
    """Conversations from the threads of `topics`, each thread used about equally often,
    until they hold `target_chars` characters. One in ten chains a second thread from
    another topic, as people change the subject."""
    threads = [(topic, thread) for topic in topics for thread in topic.threads]
    out, total, seen = [], 0, set()
    while total < target_chars:
        order = threads[:]
        rng.shuffle(order)
        for topic, thread in order:
            conversation = topic.instance(thread, rng, budget)
            if rng.random() < 0.1:
                other = rng.choice([t for t in topics if t.name != topic.name])
                conversation += other.instance(rng.choice(other.threads), rng, budget)
            key = json.dumps(conversation, ensure_ascii=False)
            if key in seen:
                continue
            seen.add(key)
            budget.count(conversation)
            out.append(conversation)
            total += characters(conversation)
            if total >= target_chars:
                break
    return out


def filler(topics: list[Topic], rng: random.Random, budget: Budget) -> tuple[str, str]:
    """One unrelated exchange: the opening of a random thread."""
    topic = rng.choice(topics)
    (user, bot) = topic.instance(rng.choice(topic.threads), rng, budget, exchanges=1)
    return user[1], bot[1]


def to_line(conversation: list[tuple[str, str]]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in conversation]}, ensure_ascii=False)


@dataclass
class Composed:
    kind: str  # "everyday" or "memory"
    lang: str  # "en" or "ko"
    messages: list[tuple[str, str]]


def build(seed: int = 1, everyday_chars: int = 1_000_000, memory_chars: int = 350_000,
          invented: tuple[int, int] | None = None, lead_ins: bool = False) -> list[Composed]:
    """Every composed conversation, in the order the shards take them. `invented` and
    `lead_ins`: see --invented-syllables and --lead-ins."""
    sys.path.insert(0, str(HERE))
    from memory import curriculum  # corpora/memory.py, beside this file

    rng = random.Random(seed)
    budget = Budget()
    for path in sorted(OUT.glob("*.jsonl")):  # the hand-written files count too
        if not path.name.startswith("talk-"):
            for line in path.read_text(encoding="utf-8").splitlines():
                budget.count([(m["role"], m["content"]) for m in json.loads(line)["messages"]])
    out: list[Composed] = []
    for lang in ("en", "ko"):
        topics = read_topics(lang)
        out += [Composed("everyday", lang, c) for c in everyday(topics, everyday_chars, rng, budget)]
        out += [Composed("memory", lang, c)
                for c in curriculum(lang, memory_chars, lambda: filler(topics, rng, budget), rng, budget, invented, lead_ins)]
    rng.shuffle(out)
    return out


def write_shards(conversations: list[Composed], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("talk-*.jsonl"):
        old.unlink()
    for i in range(SHARDS):
        shard = conversations[i::SHARDS]
        (out / f"talk-{i:02d}.jsonl").write_text("".join(to_line(c.messages) + "\n" for c in shard), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", nargs="+", metavar="FILE", help="check parts files and print their sizes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--everyday-chars", type=int, default=1_000_000, help="characters of everyday talk per language")
    p.add_argument("--memory-chars", type=int, default=350_000, help="characters of memory curriculum per language")
    p.add_argument("--invented-syllables", type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="names, pets, cities and code words are all made-up words of MIN to MAX "
                        "syllables (default: about half from hand-written lists, the made-up ones "
                        "of 2-3 syllables, a Korean pet's of 2)")
    p.add_argument("--lead-ins", action="store_true",
                   help="a memory reply never starts with the fact ('네, 포휸료에 사세요.', not '포휸료에 "
                        "사세요.'): a message's first word lacks the word-start mark its telling had, "
                        "so the copy head could not copy its first piece")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.invented_syllables and not 1 <= args.invented_syllables[0] <= args.invented_syllables[1]:
        p.error("--invented-syllables needs 1 <= MIN <= MAX")
    if args.check:
        for path in args.check:
            topic = read_topic(Path(path))
            variants = sum(len(ex[r]) for t in topic.threads for ex in t for r in ("user", "bot"))
            print(f"{path}: ok, {len(topic.threads)} threads, {variants} variants, "
                  f"{len(topic.slots)} slots")
        return 0
    conversations = build(args.seed, args.everyday_chars, args.memory_chars,
                          tuple(args.invented_syllables) if args.invented_syllables else None, args.lead_ins)
    write_shards(conversations, args.out)
    for lang in ("en", "ko"):
        for kind in ("everyday", "memory"):
            mine = [c for c in conversations if c.lang == lang and c.kind == kind]
            print(f"{lang} {kind}: {len(mine)} conversations, {sum(characters(c.messages) for c in mine):,} characters")
    print(f"wrote {len(conversations)} conversations to {args.out}/talk-00..{SHARDS - 1:02d}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
