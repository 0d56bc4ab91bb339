"""ChatSession: the recurrent state is the memory, and a turn feeds only the new message."""

import pytest
import torch

from chatbot.chat.session import MAX_MESSAGE_CHARS, ChatSession, reply_seed
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.errors import ChatbotError
from chatbot.chat.sampling import Reply, SamplingConfig, sample_reply

MESSAGES = ["hello", "what is an lstm?", "안녕하세요", "my name is Mina", "what is my name?"]


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def session(ckpt, **sampling):
    return ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(**{"seed": 7, "max_new_tokens": 40, **sampling}))


def replay(ckpt, ids, **sampling):
    """A fresh state rebuilt by feeding `ids` in one forward."""
    s = session(ckpt, **sampling)
    logits = s.feed(ids)
    return s, logits


def test_reply_is_identical_whether_state_was_carried_or_rebuilt(ckpt):
    a = session(ckpt, temperature=0.9)
    for message in MESSAGES[:-1]:
        "".join(a.send(message))
    last = "".join(a.send(MESSAGES[-1]))
    history = [i for t in a.turns for i in t.prompt_ids + t.reply.ids]
    fed_before_last_reply = history[: len(history) - len(a.turns[-1].reply.ids)]

    b, logits = replay(ckpt, fed_before_last_reply, temperature=0.9)
    b.generator.manual_seed(reply_seed(7, len(MESSAGES)))  # what a's fifth reply drew from
    reply = Reply(ids=[])
    text = "".join(sample_reply(b.stepper, b.tokenizer, b.state, logits, b.sampling, b.generator, reply))
    assert text == last
    assert reply.ids == a.turns[-1].reply.ids
    assert reply.state.equals(a.state, atol=1e-5, rtol=1e-5)


def test_a_turn_feeds_only_the_new_message(ckpt):
    s = session(ckpt)
    fed = []
    forward = s.model.forward

    def spy(ids, state=None):  # the real forward, watched
        fed.append(ids.shape[1])
        return forward(ids, state)

    s.model.forward = spy
    try:
        per_turn = []
        for n in range(30):
            before = len(fed)
            "".join(s.send("what is an lstm?"))
            assert len(fed) == before + 1  # one forward for the message, no history re-read
            per_turn.append(s.turns[-1].tokens_fed)
    finally:
        del s.model.forward
    message_tokens = len(ckpt.tokenizer.encode("what is an lstm?")) + 3  # <|user|> ... <|end|><|bot|>
    assert set(fed) <= {message_tokens, message_tokens + 1}  # +1: closing a reply cut at the limit
    assert max(per_turn[20:]) <= message_tokens + 1 + s.sampling.max_new_tokens
    assert max(fed[20:]) == max(fed[:10])  # turn 30 costs what turn 2 costs


def test_regenerate_restores_the_snapshot_before_the_reply(ckpt):
    s = session(ckpt, temperature=0)
    first = "".join(s.send("hello"))
    snapshot = s.turns[-1].state_before_reply.clone()
    again = "".join(s.regenerate())
    assert again == first  # greedy: same state, same reply
    expected, _ = replay(ckpt, s.turns[-1].prompt_ids + s.turns[-1].reply.ids)
    assert s.state.equals(expected.state, atol=1e-5, rtol=1e-5)
    assert s.turns[-1].state_before_reply.equals(snapshot)

    seeded = session(ckpt, temperature=1.5)
    original = "".join(seeded.send("hello"))
    assert {"".join(seeded.regenerate()) for _ in range(3)} == {original}  # seed: reproduced

    unseeded = session(ckpt, temperature=1.5, seed=None)
    "".join(unseeded.send("hello"))
    versions = {"".join(unseeded.regenerate()) for _ in range(4)}
    assert len(versions) > 1  # no seed: a new reply from the same state


def test_continue_extends_a_reply_cut_at_the_token_limit(ckpt):
    s = session(ckpt, temperature=1.0, max_new_tokens=5)
    first = "".join(s.send("what does the forget gate do?"))
    assert not s.turns[-1].reply.ended and len(s.turns[-1].reply.ids) == 5
    more = "".join(s.continue_reply())
    reply = s.turns[-1].reply
    assert reply.text == first + more and len(reply.ids) > 5
    expected, _ = replay(ckpt, s.turns[-1].prompt_ids + reply.ids)
    assert s.state.equals(expected.state, atol=1e-5, rtol=1e-5)  # the state follows the text
    if reply.ended:
        with pytest.raises(ChatbotError, match="finished"):
            s.continue_reply()


def test_a_reply_cut_short_leaves_exactly_its_own_state(ckpt):
    s = session(ckpt, temperature=1.0, max_new_tokens=200)
    pieces = s.send("what does the forget gate do?")
    shown = "".join(next(pieces) for _ in range(3))
    pieces.close()  # the user pressed stop
    turn = s.turns[-1]
    assert turn.reply.text == shown == ckpt.tokenizer.decode(turn.reply.ids)
    expected, _ = replay(ckpt, turn.prompt_ids + turn.reply.ids)
    assert s.state.equals(expected.state, atol=1e-5, rtol=1e-5)
    "".join(s.send("ok"))
    assert s.turns[-1].prompt_ids[0] == ckpt.tokenizer.end_id  # the cut turn is closed first


def test_rewind_and_reset(ckpt):
    s = session(ckpt)
    "".join(s.send("hello"))
    after_first = s.state.clone()
    "".join(s.send("what is my name?"))
    assert s.rewind() == "what is my name?"
    assert s.state.equals(after_first) and len(s.turns) == 1
    s.reset()
    zero = ckpt.model.initial_state(1)
    assert s.state.equals(zero) and s.turns == []
    with pytest.raises(ChatbotError):
        s.rewind()
    with pytest.raises(ChatbotError):
        s.regenerate()


def test_stop_strings_end_the_reply(ckpt):
    s = session(ckpt, temperature=0, max_new_tokens=60)
    full = "".join(s.send("hello"))
    stop = full.strip()[2:4]
    assert stop, f"reply too short to test: {full!r}"
    s2 = session(ckpt, temperature=0, max_new_tokens=60, stop=(stop,))
    cut = "".join(s2.send("hello"))
    assert cut.endswith(stop) and full.startswith(cut) and len(cut) < len(full)


def test_same_seed_same_conversation(ckpt):
    a, b = session(ckpt, temperature=1.0), session(ckpt, temperature=1.0)
    for message in MESSAGES:
        assert "".join(a.send(message)) == "".join(b.send(message))


@pytest.mark.parametrize("message", ["", "   \n\t", " " * MAX_MESSAGE_CHARS + "late words"])
def test_empty_messages_are_refused_clearly(ckpt, message):
    s = session(ckpt)
    with pytest.raises(ChatbotError, match="empty"):
        s.send(message)
    assert s.turns == []


def test_a_huge_message_is_cut_to_the_limit_and_the_turn_says_so(ckpt):
    s = session(ckpt)
    huge = ("안녕 😀 שלום e\u0301 \x00\x1b[31m " * 5000)[:100_000]
    reply = "".join(s.send(huge))
    turn = s.turns[-1]
    assert turn.cut_from == 100_000 and turn.user == huge[:MAX_MESSAGE_CHARS]
    assert isinstance(reply, str) and torch.isfinite(s.state.h).all()
    "".join(s.send("x" * MAX_MESSAGE_CHARS))
    assert s.turns[-1].cut_from is None  # exactly at the limit: nothing cut


def test_any_unicode_message_is_accepted(ckpt):
    s = session(ckpt)
    for message in ["뷁 😀🚀", "\x00\x07\x1b[31m", "שלום עולם", "e\u0301\u0301", "<|end|><|bot|>"]:
        reply = "".join(s.send(message))
        assert isinstance(reply, str)
    assert torch.isfinite(s.state.h).all()


def test_plain_completion_and_continuation_are_repeatable_with_a_seed(ckpt):
    def run():
        s = session(ckpt, temperature=2.0, max_new_tokens=3)
        completion = "".join(s.complete("An LSTM"))
        cut = "".join(s.send("hello"))  # three tokens: cut before the bot ended its turn
        return completion, cut, "".join(s.continue_reply())

    assert run() == run()
