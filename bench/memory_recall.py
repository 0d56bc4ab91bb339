"""Does the bot remember what it was told? Tell it a fact, chat k unrelated turns, ask for it
back, with greedy decoding, in English and Korean; report how often the reply holds the fact.

The facts are names, pets' names, code words and cities made up when the bench runs (the
same invented-word generator as the corpus's memory curriculum, with another seed), and the
bench checks that none of them occurs in the model's corpus or anywhere in corpora/, so a hit is a copy through
the recurrent state, never a recitation.

    python bench/memory_recall.py --model models/default
    python bench/memory_recall.py --model models/default --trials 50 --distances 0 1 3 6
    python bench/memory_recall.py --model runs/x --smoke        # a few trials, for the tests
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "corpora"))

import torch  # noqa: E402

from chatbot.chat.sampling import SamplingConfig  # noqa: E402
from chatbot.chat.session import ChatSession  # noqa: E402
from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402
from chatbot.lm.model import LanguageModel  # noqa: E402
from chatbot.text.corpus import load_corpus, turn_ids  # noqa: E402
from compose import fill  # noqa: E402  (corpora/compose.py: slots and Korean particles)
from memory import invented_word  # noqa: E402  (corpora/memory.py)

# How each kind of fact is told and asked for (phrasings the corpus also uses), by language.
FACTS = {
    "en": {
        "name": ("My name is {v}.", "What is my name?"),
        "pet": ("I have a dog called {v}.", "What's my pet's name?"),
        "code": ("The code word is {v}.", "What's the code word?"),
        "city": ("I live in {v}.", "Where do I live?"),
    },
    "ko": {
        "name": ("제 이름은 {v|이에요}.", "제 이름이 뭐예요?"),
        "pet": ("저희 집 강아지 이름은 {v|이에요}.", "제 반려동물 이름이 뭐였죠?"),
        "code": ("암호는 {v|이에요}.", "암호가 뭐였죠?"),
        "city": ("저는 {v}에 살아요.", "제가 어디 산다고 했죠?"),
    },
}
# Unrelated turns between the telling and the asking.
SMALL_TALK = {
    "en": ["What should I cook tonight?", "It's raining again here.", "I'm so tired after work today.",
           "Any tips for sleeping better?", "I started learning the guitar.", "My team lost the match yesterday.",
           "What's a good book for a long train ride?", "I have an exam on Friday."],
    "ko": ["오늘 저녁 뭐 먹을까요?", "여기 또 비가 와요.", "오늘 일이 너무 많아서 피곤해요.",
           "잠을 잘 자는 방법 있어요?", "요즘 기타를 배우기 시작했어요.", "어제 응원하는 팀이 졌어요.",
           "기차에서 읽을 만한 책 추천해 줄래요?", "금요일에 시험이 있어요."],
}


def fresh_values(lang: str, kind: str, n: int, corpus_text: str, rng: random.Random) -> list[str]:
    """n made-up values that occur nowhere in the corpus (checked, case-insensitively)."""
    out: list[str] = []
    while len(out) < n:
        v = invented_word(lang, rng, (2, 3))
        v = v.lower() if kind == "code" else v
        if v.lower() not in corpus_text and v not in out:
            out.append(v)
    return out


class CacheChat:
    """Greedy chat with a continuous cache (Grave et al. 2017) over the last `window` tokens:
    the next-token distribution is mixed with one that copies the token that followed each
    earlier position, weighted by how alike that position's top-layer output is to the
    current one: p = (1 - lam) p_model + lam softmax(theta cos(h_t, h_i)) scattered onto
    x_{i+1}; gated, lam is scaled by the attention's peak. The memory is the recurrent state plus that bounded window, so a turn's cost
    stays constant. An experiment measured here, not (yet) an option of the app."""

    def __init__(self, model, tokenizer, theta: float, lam: float, window: int, max_new_tokens: int,
                 gated: bool = False, gate: list[float] | None = None):
        self.model, self.tok, self.gated, self.gate = model, tokenizer, gated, gate
        self.theta, self.lam, self.window, self.max_new_tokens = theta, lam, window, max_new_tokens
        self.state = model.initial_state(1)
        self.keys = torch.zeros(0, model.config.hidden_size)
        self.values = torch.zeros(0, dtype=torch.long)
        self.pending: torch.Tensor | None = None  # the last output, whose next token is not known yet
        self._outputs: list[torch.Tensor] = []
        self._hook = model.rnn.register_forward_hook(lambda _m, _inp, out: self._outputs.append(out[0]))

    def close(self) -> None:
        self._hook.remove()

    @torch.inference_mode()
    def _feed(self, ids: list[int]) -> torch.Tensor:
        self._outputs.clear()
        logits, self.state = self.model(torch.tensor([ids]), self.state)
        out = torch.nn.functional.normalize(self._outputs[-1][0].float(), dim=-1)
        if self.pending is not None:
            self.keys = torch.cat([self.keys, self.pending[None]])
            self.values = torch.cat([self.values, torch.tensor(ids[:1])])
        self.keys = torch.cat([self.keys, out[:-1]])[-self.window:]
        self.values = torch.cat([self.values, torch.tensor(ids[1:], dtype=torch.long)])[-self.window:]
        self.pending = out[-1]
        return logits[0, -1]

    def _next(self, logits: torch.Tensor) -> int:
        """Grave's mixture, gated by how peaked the attention is: a window where one earlier
        position matches the current output well gets weight up to lam; a window with no
        clear match (flat attention) leaves the model's own distribution nearly as it is."""
        p = torch.softmax(logits.float(), dim=-1)
        if len(self.keys):
            attn = torch.softmax(self.theta * (self.keys @ self.pending), dim=0)
            if self.gate is not None:  # a fitted gate: sigmoid(w . [peak, max p, entropy, 1])
                entropy = -(p * p.clamp_min(1e-12).log()).sum()
                w = self.gate
                lam = float(torch.sigmoid(w[0] * attn.max() + w[1] * p.max() + w[2] * entropy + w[3]))
            else:
                lam = self.lam * float(attn.max()) if self.gated else self.lam
            p = (1 - lam) * p + lam * torch.zeros_like(p).index_add_(0, self.values, attn)
        return int(p.argmax())

    def send(self, message: str) -> str:
        logits = self._feed(turn_ids(self.tok, "user", message) + [self.tok.bot_id])
        ids: list[int] = []
        for _ in range(self.max_new_tokens):
            token = self._next(logits)
            logits = self._feed([token])
            if token == self.tok.end_id:
                break
            ids.append(token)
        return self.tok.decode(ids)


def without_copy(ckpt):
    """The checkpoint's LSTM alone: a model without a copy head, given the same weights."""
    model = LanguageModel(replace(ckpt.model.config, copy_window=0))
    model.load_state_dict(ckpt.model.state_dict(), strict=False)  # all but the copy head's
    return replace(ckpt, model=model.eval())


def trial(ckpt, lang: str, kind: str, value: str, k: int, max_new_tokens: int,
          cache: tuple | None = None) -> tuple[bool, str]:
    if cache:
        chat = CacheChat(ckpt.model, ckpt.tokenizer, *cache[:3], max_new_tokens=max_new_tokens, gated=cache[3],
                         gate=cache[4])
        for message in [fill(FACTS[lang][kind][0], {"v": value}), *SMALL_TALK[lang][:k]]:
            chat.send(message)
        reply = chat.send(FACTS[lang][kind][1])
        chat.close()
        return value.lower() in reply.lower(), reply
    session = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(temperature=0, max_new_tokens=max_new_tokens))
    tell, ask = FACTS[lang][kind]
    "".join(session.send(fill(tell, {"v": value})))
    for message in SMALL_TALK[lang][:k]:
        "".join(session.send(message))
    reply = "".join(session.send(ask))
    return value.lower() in reply.lower(), reply


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/default")
    p.add_argument("--corpus", default=None, help="a corpus to check the facts against (default: the model's); corpora/ is always checked too")
    p.add_argument("--trials", type=int, default=50, help="facts per language and distance")
    p.add_argument("--distances", type=int, nargs="+", default=[0, 1, 3, 6])
    p.add_argument("--kinds", nargs="+", default=list(FACTS["en"]), choices=list(FACTS["en"]))
    p.add_argument("--max-new-tokens", type=int, default=60)
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument("--show", type=int, default=2, help="example replies to print per cell")
    p.add_argument("--cache", type=float, nargs=3, metavar=("THETA", "LAMBDA", "WINDOW"),
                   help="also measure with a continuous cache over the last WINDOW tokens, e.g. 20 0.3 1024")
    p.add_argument("--cache-only", action="store_true", help="with --cache: skip the state-alone table")
    p.add_argument("--gated", action="store_true", help="scale the cache's weight by its attention's peak")
    p.add_argument("--gate", type=float, nargs=4, metavar="W", help="a fitted gate's weights (peak, max p, entropy, bias)")
    p.add_argument("--without-copy", action="store_true",
                   help="a model with a copy head: also measure its LSTM alone (the same weights, the head removed)")
    p.add_argument("--smoke", action="store_true", help="2 trials at k = 0 and 1: checks the bench runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.trials, args.distances, args.show = 2, [0, 1], 1

    ckpt = load_checkpoint(args.model)
    corpus_path = args.corpus or (ckpt.spec.corpus.path if ckpt.spec.corpus else None)
    # The model's corpus and every corpus in the repo (a model fine-tuned on one corpus may
    # have seen the others in earlier stages).
    paths = dict.fromkeys(ROOT / p for p in (corpus_path, "corpora") if p)
    corpus_text = "\n".join(" ".join(t for _, t in piece) if isinstance(piece, list) else piece
                            for path in paths for _, piece in load_corpus(path).pieces()).lower()
    rng = random.Random(args.seed)
    values = {lang: {kind: fresh_values(lang, kind, args.trials, corpus_text, rng) for kind in args.kinds}
              for lang in ("en", "ko")}
    model = ckpt.spec.model
    print(f"model: {args.model} ({model.cell} {model.num_layers}x{model.hidden_size}, "
          f"{ckpt.spec.tokenizer.kind}); corpus: {corpus_path} (and corpora/); "
          f"{args.trials} made-up facts per cell ({', '.join(args.kinds)}), none in the corpus; greedy")
    window = model.copy_window
    variants = [(f"recurrent state + copy head ({window} tokens)" if window else "recurrent state alone",
                 ckpt, None)]
    if window and args.without_copy:
        variants.append(("recurrent state alone (the same LSTM, its copy head removed)", without_copy(ckpt), None))
    if args.cache:
        theta, lam, window = args.cache
        variants.append((f"state + {'gated ' if args.gated else ''}continuous cache (θ {theta:g}, λ {lam:g}, "
                         f"{int(window)} tokens)", ckpt, (theta, lam, int(window), args.gated, args.gate)))
        variants = variants[1:] if args.cache_only else variants
    for label, model_ckpt, cache in variants:
        started = time.perf_counter()
        table: dict[tuple[str, int], float] = {}
        for lang in ("en", "ko"):
            for k in args.distances:
                hits, shown = 0, 0
                for i in range(args.trials):
                    kind = args.kinds[i % len(args.kinds)]
                    value = values[lang][kind][i]
                    hit, reply = trial(model_ckpt, lang, kind, value, k, args.max_new_tokens, cache)
                    hits += hit
                    if shown < args.show:
                        print(f"  [{lang} k={k} {kind}={value}] {'HIT ' if hit else 'miss'} {reply!r}")
                        shown += 1
                table[(lang, k)] = hits / args.trials
        print(f"\n{label}:\n")
        print("| language | " + " | ".join(f"k = {k}" for k in args.distances) + " |")
        print("|---|" + "---|" * len(args.distances))
        for lang, name in (("en", "English"), ("ko", "Korean")):
            print(f"| {name} | " + " | ".join(f"{100 * table[(lang, k)]:.0f}%" for k in args.distances) + " |")
        print(f"\n({time.perf_counter() - started:.0f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
