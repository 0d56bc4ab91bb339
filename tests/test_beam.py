"""Beam search, relevance reranking, min-p and typical sampling."""

import math
from collections import Counter

import pytest
import torch

from chatbot.chat.beam import beam_reply, score_reply
from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.errors import ChatbotError
from chatbot.chat.sampling import Reply, SamplingConfig, choose_token, sample_reply, typical_filter
from chatbot.lm.spec import TrainConfig
from chatbot.train.loop import train
from conftest import ROOT, run_spec

PROMPTS = ["hello", "what is an lstm?", "my name is Mina", "오늘 날씨 어때요?", "what does the forget gate do?",
           "tell me more"]


@pytest.fixture(scope="module")
def default():
    return load_checkpoint(ROOT / "models" / "default")


@pytest.fixture(scope="module", params=["char-lstm", "bpe-gru", "unigram-rnn", "bpe-lstm+copy"])
def model(request, tiny_checkpoint, chat_corpus, tmp_path_factory):
    if request.param == "char-lstm":
        return load_checkpoint(tiny_checkpoint)
    kind, cell = request.param.split("-")
    cell, copy = cell.split("+") if "+" in cell else (cell, "")
    out = tmp_path_factory.mktemp(request.param) / "m"
    train(run_spec(chat_corpus, TrainConfig(max_steps=150, seq_len=16, batch_size=8, eval_every=150, lr=1e-2,
                                            warmup_steps=5), kind, 400, cell=cell, hidden_size=48,
                   copy_window=32 if copy else 0), out)
    return load_checkpoint(out)


def prepared(ckpt, prompt, **settings):
    """A session with `prompt` fed, ready for its reply: (session, state, logits)."""
    s = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(max_new_tokens=60, **settings))
    s.send(prompt)  # feeds the message; the reply generator is not started
    return s, s.turns[-1].state_before_reply, s.turns[-1].logits_before_reply


def run_beam(ckpt, prompt, **settings):
    s, state, logits = prepared(ckpt, prompt, **settings)
    state = state.clone()
    reply = Reply(ids=[])
    fresh = s._fresh_start() if settings.get("relevance") else (None, None)
    pieces = list(beam_reply(ckpt.model, ckpt.tokenizer, state, logits, s.sampling, reply, *fresh))
    return s, reply.state, reply, pieces


def test_beam_width_one_is_greedy_decoding(model):
    for prompt in PROMPTS:
        _, _, beam, _ = run_beam(model, prompt, beam_width=1)
        s, state, logits = prepared(model, prompt, temperature=0.0)
        greedy = Reply(ids=[])
        "".join(sample_reply(s.stepper, s.tokenizer, state.clone(), logits, s.sampling, s.generator, greedy))
        assert beam.ids == greedy.ids, prompt


@pytest.mark.parametrize("relevance", [0.0, 0.5])
def test_a_wider_beam_never_scores_lower(model, relevance):
    for prompt in PROMPTS:
        scores = []
        for width in (1, 2, 3, 5):
            s, state, logits = prepared(model, prompt, beam_width=width, relevance=relevance)
            _, _, reply, _ = run_beam(model, prompt, beam_width=width, relevance=relevance)
            fresh_logits, fresh_state = s._fresh_start()
            scores.append(score_reply(model.model, state, logits, reply.ids, relevance, fresh_state, fresh_logits))
        assert all(b >= a - 1e-5 for a, b in zip(scores, scores[1:])), (prompt, scores)


def test_the_carried_state_is_the_state_after_the_reply(model):
    for prompt in PROMPTS[:3]:
        s, before, logits = prepared(model, prompt, beam_width=3)
        _, after, reply, pieces = run_beam(model, prompt, beam_width=3)
        with torch.inference_mode():
            _, fed = model.model(torch.tensor([reply.ids]), before)
        assert after.equals(fed, atol=1e-5, rtol=1e-5)  # a copy head's window too
        assert "".join(pieces) == reply.text == model.tokenizer.decode(reply.ids)


def test_streamed_beam_text_only_grows_and_ends_in_the_reply(default):
    s = ChatSession(default.model, default.tokenizer, SamplingConfig(beam_width=4, max_new_tokens=200))
    shown = []
    for piece in s.send("what does the forget gate do?"):
        shown.append((shown[-1] if shown else "") + piece)
    final = s.turns[-1].reply.text
    assert len(shown) > 1 and shown[-1] == final
    assert all(final.startswith(text) for text in shown)  # never taken back


def test_stopping_a_beam_keeps_the_agreed_text_and_its_state(default):
    s = ChatSession(default.model, default.tokenizer, SamplingConfig(beam_width=4, max_new_tokens=200))
    pieces = s.send("what does the forget gate do?")
    shown = next(pieces) + next(pieces)
    pieces.close()
    turn = s.turns[-1]
    assert turn.reply.text == shown and not turn.reply.ended
    with torch.inference_mode():
        _, fed = default.model(torch.tensor([turn.reply.ids]), turn.state_before_reply)
    assert torch.allclose(s.state.c, fed.c, atol=1e-5, rtol=1e-5)
    assert "".join(s.send("ok"))  # the chat goes on from there


def test_relevance_makes_the_most_common_reply_rarer_on_the_default_model(default):
    """The README's relevance row, measured: same prompts, beam 4, R = 0 and R = 0.75."""
    import sys
    sys.path.insert(0, str(ROOT / "bench"))
    from relevance import PROMPTS as BENCH_PROMPTS, replies
    shares = {}
    for r in (0.0, 0.75):
        got = replies(default, r, 4, 120, BENCH_PROMPTS)
        shares[r] = Counter(got).most_common(1)[0][1] / len(got)
    assert shares[0.75] < shares[0.0], shares


def test_min_p_and_typical_p_filter_and_are_validated():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -5.0])
    g = torch.Generator().manual_seed(0)
    picks = {choose_token(logits, SamplingConfig(temperature=1.0, min_p=0.3), [], g) for _ in range(200)}
    assert picks == {0, 1}  # p >= 0.3 x p_max keeps tokens 0 and 1 only
    kept = typical_filter(logits, 0.5)
    assert torch.isfinite(kept).tolist() == [True, True, False, False, False]
    probs = logits.softmax(-1)
    entropy = -(probs * probs.log()).sum()
    assert abs(-math.log(probs[1]) - entropy) < abs(-math.log(probs[0]) - entropy)  # 1 is most typical
    for bad in ({"min_p": 1.0}, {"min_p": -0.1}, {"typical_p": 0.0}, {"typical_p": 1.5},
                {"beam_width": 0}, {"beam_width": 99}, {"relevance": -1.0}):
        with pytest.raises(ChatbotError, match=list(bad)[0]):
            SamplingConfig(**bad)


def never_ending(ckpt):
    """The model with its end-of-turn token made impossible: every search runs to its limit."""
    import copy
    model = copy.deepcopy(ckpt.model)
    with torch.no_grad():
        model.head.bias[ckpt.tokenizer.end_id] = -1e4
    return model


def test_the_work_of_a_beam_search_is_bounded_per_reply(tiny_checkpoint):
    from chatbot.chat.beam import MAX_BEAM_WORK, beam_steps
    ckpt = load_checkpoint(tiny_checkpoint)
    cfg = SamplingConfig(beam_width=16, relevance=0.5, max_new_tokens=20_000)
    chat = ChatSession(never_ending(ckpt), ckpt.tokenizer, cfg)
    calls, rows = [], []
    chat.on_beam_step = lambda done, most: calls.append((done, most))
    pieces = chat.send("hello")
    chat.model.register_forward_hook(lambda module, args, out: rows.append(args[0].numel()))
    "".join(pieces)
    most = beam_steps(cfg, True)
    assert most == MAX_BEAM_WORK // (16 * 17) == 147
    assert calls == [(n, most) for n in range(1, most + 1)]  # progress after every token
    assert sum(rows) <= MAX_BEAM_WORK + 1000  # (+ following the chosen reply's tokens)
    reply = chat.turns[-1].reply
    assert len(reply.ids) == most and not reply.ended  # unfinished: Continue searches on
    "".join(chat.continue_reply())
    assert len(chat.turns[-1].reply.ids) == 2 * most
    assert beam_steps(cfg.with_(beam_width=4, relevance=0.0, max_new_tokens=300), False) == 300


def test_a_beam_search_stops_at_once_when_its_progress_callback_interrupts(tiny_checkpoint):
    class Interrupt(Exception):
        pass

    ckpt = load_checkpoint(tiny_checkpoint)
    chat = ChatSession(never_ending(ckpt), ckpt.tokenizer,
                       SamplingConfig(beam_width=8, relevance=0.5, max_new_tokens=20_000))
    calls = []

    def click(done, most):
        calls.append(done)
        if done == 5:
            raise Interrupt  # what a Stop or a click raises inside Streamlit's next draw

    chat.on_beam_step = click
    with pytest.raises(Interrupt):
        "".join(chat.send("hello"))
    assert calls == [1, 2, 3, 4, 5]
    turn = chat.turns[-1]
    follow = ChatSession(ckpt.model, ckpt.tokenizer)
    follow.state = turn.state_before_reply.clone()
    if turn.reply.ids:
        follow.feed(turn.reply.ids)
    assert chat.state.equals(follow.state, atol=1e-5, rtol=1e-5)  # the state matches the text kept
