"""The generation engine: many sessions' tokens in one batched step, each reply exactly the
one its session makes alone (same state, settings and generator), however many others are
in the batch; a Stop takes a reply out at once; beam search runs beside it."""


import pytest
import torch

from conftest import in_threads

from chatbot.chat.engine import PREFILL_CHUNK, GenerationEngine
from chatbot.chat.sampling import Reply, SamplingConfig
from chatbot.chat.session import ChatSession
from chatbot.errors import ChatbotError
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.lm.model import LanguageModel, ModelConfig
from chatbot.lm.state import RecurrentState
from chatbot.lm.stepper import Stepper

SESSIONS = 20


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def stepper(ckpt):
    return Stepper(ckpt.model)


def settings(n: int) -> SamplingConfig:
    """Twenty different ways to reply: greedy, seeded sampling with each filter, stop
    strings, short limits, and beam search (which runs beside the engine)."""
    kinds = [dict(temperature=0), dict(temperature=0.9), dict(top_k=5), dict(top_p=0.8),
             dict(min_p=0.1), dict(typical_p=0.7), dict(repetition_penalty=1.3),
             dict(stop=("!", ".")), dict(max_new_tokens=7), dict(beam_width=2)]
    return SamplingConfig(**{"seed": n, "max_new_tokens": 40, "temperature": 0.5 + 0.05 * n,
                             **kinds[n % len(kinds)]})


def conversation(n: int) -> list[str]:
    return [f"hello {n}", "what is an lstm?" if n % 2 else "안녕하세요", f"my name is Mina{n}",
            "what is my name? " * (1 + n % 3) * 5]  # the last one longer than a prefill chunk


def talk(chat: ChatSession, messages: list[str]) -> list[tuple[str, list[int], bool]]:
    out = []
    for message in messages:
        text = "".join(chat.send(message))
        out.append((text, list(chat.turns[-1].reply.ids), chat.turns[-1].reply.ended))
    continued = "".join(chat.continue_reply()) if not chat.turns[-1].reply.ended else ""
    return out + [(continued, list(chat.turns[-1].reply.ids), chat.turns[-1].reply.ended)]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_row_of_a_batched_step_gets_the_solo_step_s_numbers(cell):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=60, cell=cell, num_layers=3, hidden_size=48, embed_size=24, tie_weights=False)
    model = LanguageModel(cfg).eval()
    stepper = Stepper(model)
    for batch in (2, 7, 20):
        state = RecurrentState.from_tensors(cell, tuple(torch.randn(3, batch, 48)
                                                        for _ in model.initial_state(1).tensors()))
        tokens = torch.randint(0, cfg.vocab_size, (batch,))
        logits, after = stepper.step_rows(tokens, state)
        assert logits.shape == (batch, cfg.vocab_size)
        with torch.no_grad():
            full, full_after = model(tokens[:, None], state)  # the model's own forward agrees too
        assert torch.allclose(logits, full[:, 0], atol=1e-5, rtol=0)
        assert after.equals(full_after, atol=1e-5, rtol=1e-5)
        for i in range(batch):
            alone_logits, alone = stepper.step(int(tokens[i]), state.rows(slice(i, i + 1)))
            assert torch.allclose(logits[i], alone_logits, atol=1e-5, rtol=0)
            assert after.rows(slice(i, i + 1)).equals(alone, atol=1e-5, rtol=1e-5)


def test_a_message_fed_in_chunks_by_the_engine_leaves_the_solo_feed_s_state(ckpt, stepper):
    engine = GenerationEngine(ckpt.model, stepper)
    ids = ckpt.tokenizer.encode("what is an lstm? " * 20)
    assert len(ids) > 4 * PREFILL_CHUNK
    alone = ChatSession(ckpt.model, ckpt.tokenizer, stepper=stepper)
    alone_logits = alone.feed(ids)
    logits, state = engine.feed(ckpt.model.initial_state(1), ids)
    assert torch.allclose(logits, alone_logits, atol=1e-5, rtol=0)
    assert state.equals(alone.state, atol=1e-5, rtol=1e-5)


def test_twenty_sessions_in_one_engine_reply_exactly_as_each_does_alone(ckpt, stepper):
    alone = [talk(ChatSession(ckpt.model, ckpt.tokenizer, settings(n), stepper), conversation(n))
             for n in range(SESSIONS)]
    assert len({tuple(t for t, _, _ in r) for r in alone}) >= SESSIONS - 2  # cross-talk would show

    engine = GenerationEngine(ckpt.model, stepper)
    together = in_threads(lambda n: talk(ChatSession(ckpt.model, ckpt.tokenizer, settings(n), engine=engine),
                                         conversation(n)), SESSIONS)
    assert together == alone  # text, token ids and ending of every reply, continued ones too
    assert engine.widest > 1  # replies really were stepped together


def test_stop_takes_a_reply_out_at_the_next_step_and_keeps_what_was_read(ckpt, stepper):
    engine = GenerationEngine(ckpt.model, stepper)
    cfg = SamplingConfig(seed=3, temperature=1.0, max_new_tokens=500)
    other = ChatSession(ckpt.model, ckpt.tokenizer, cfg.with_(seed=4), engine=engine)
    others = other.send("what is an lstm?")
    next(others)  # another reply generating meanwhile

    chat = ChatSession(ckpt.model, ckpt.tokenizer, cfg, engine=engine)
    pieces = chat.send("hello")
    read = [next(pieces) for _ in range(3)]
    pieces.close()  # Stop
    reply = chat.turns[-1].reply
    assert reply.text == "".join(read) and len(reply.ids) == 3
    assert engine.generating() <= 1  # only the other reply is left in the batch
    # The memory holds exactly the three tokens read: the same as feeding them alone.
    expected = ChatSession(ckpt.model, ckpt.tokenizer, stepper=stepper)
    expected.state = chat.turns[-1].state_before_reply.clone()
    expected_logits = expected.feed(reply.ids)
    assert chat.state.equals(expected.state, atol=1e-5, rtol=1e-5)
    assert torch.allclose(reply.next_logits, expected_logits, atol=1e-5, rtol=0)
    # The same reply alone, stopped after the same three pieces, continues the same way.
    solo = ChatSession(ckpt.model, ckpt.tokenizer, cfg, stepper)
    solo_pieces = solo.send("hello")
    assert [next(solo_pieces) for _ in range(3)] == read
    solo_pieces.close()
    assert "".join(chat.continue_reply()) == "".join(solo.continue_reply())

    "".join(others)  # the other reply went on to its end
    assert len(other.turns[-1].reply.ids) > 0 and engine.generating() == 0


def test_a_reply_never_started_costs_the_engine_nothing(ckpt, stepper):
    engine = GenerationEngine(ckpt.model, stepper)
    chat = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=1), engine=engine)
    chat.send("hello").close()
    assert engine.generating() == 0 and engine.steps == 0
    assert "".join(chat.regenerate())  # and the session goes on normally


def test_an_engine_serves_only_its_own_model(ckpt, tiny_checkpoint):
    other = load_checkpoint(tiny_checkpoint)
    with pytest.raises(ChatbotError, match="another model"):
        ChatSession(other.model, other.tokenizer, engine=GenerationEngine(ckpt.model))


def test_a_reply_equals_sample_reply_token_for_token(ckpt, stepper):
    """The engine's stream is sample_reply's: the same pieces, and the Reply filled the same."""
    from chatbot.chat.sampling import sample_reply

    engine = GenerationEngine(ckpt.model, stepper)
    chat = ChatSession(ckpt.model, ckpt.tokenizer, stepper=stepper)
    logits = chat.feed([ckpt.tokenizer.bot_id])
    for cfg in (SamplingConfig(temperature=0), SamplingConfig(stop=("a",), max_new_tokens=30),
                SamplingConfig(max_new_tokens=3)):
        mine, theirs = Reply(ids=[]), Reply(ids=[])
        g1, g2 = torch.Generator(), torch.Generator()
        g1.manual_seed(5)
        g2.manual_seed(5)
        a = list(engine.sample_reply(ckpt.tokenizer, chat.state, logits, cfg, g1, mine))
        b = list(sample_reply(stepper, ckpt.tokenizer, chat.state, logits, cfg, g2, theirs))
        assert a == b
        assert (mine.ids, mine.text, mine.ended) == (theirs.ids, theirs.text, theirs.ended)
        assert mine.state.equals(theirs.state) and torch.equal(mine.next_logits, theirs.next_logits)


def endless(tiny_checkpoint):
    """The tiny model, made never to end its turn (its head's bias for <|end|> very low)."""
    model = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        model.model.head.bias[model.tokenizer.end_id] = -1e4
    return model


def test_closing_an_engine_ends_its_replies_and_refuses_new_ones(tiny_checkpoint):
    ckpt = endless(tiny_checkpoint)
    engine = GenerationEngine(ckpt.model)
    chat = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=2, max_new_tokens=20_000), engine=engine)
    pieces = chat.send("hello")
    next(pieces)
    engine.close()
    with pytest.raises(ChatbotError, match="closed"):
        for _ in range(20_000):  # the tokens already made, then the error
            next(pieces)
    assert engine.generating() == 0
    with pytest.raises(ChatbotError, match="closed"):
        chat.send("hello again")


def test_a_program_that_exits_while_its_engine_is_waiting_exits_cleanly(tiny_checkpoint):
    """The engine's thread waits a while for more work; the interpreter's exit must not abort
    (a thread left inside torch at exit ends the process with 'terminate called')."""
    import subprocess
    import sys

    from conftest import ROOT

    script = ("from chatbot.lm.checkpoint import load_checkpoint\n"
              "from chatbot.chat.engine import GenerationEngine\n"
              "from chatbot.chat.session import ChatSession\n"
              f"ckpt = load_checkpoint({str(tiny_checkpoint)!r})\n"
              "chat = ChatSession(ckpt.model, ckpt.tokenizer, engine=GenerationEngine(ckpt.model))\n"
              "print(len(''.join(chat.send('hello'))) >= 0)\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert (r.returncode, r.stdout.strip()) == (0, "True"), r.stderr
