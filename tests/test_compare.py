"""Comparing settings side by side: one message answered under several settings from the same
snapshot; the kept reply's conversation goes on exactly as a chat that got it directly."""

import pytest
import torch

from chatbot.chat.conversations import ConversationStore, restore_session
from chatbot.chat.engine import GenerationEngine
from chatbot.chat.sampling import PRESETS, SamplingConfig, preset
from chatbot.chat.session import MAX_COMPARED, ChatSession, interleave
from chatbot.errors import ChatbotError
from chatbot.lm.checkpoint import load_checkpoint

FIRST, SECOND = "hello", "what is my name?"


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def settings(seed):
    mine = SamplingConfig(max_new_tokens=30, seed=seed)
    return [preset("precise", mine), preset("creative", mine), preset("balanced", mine)]


def interleaved(streams) -> list[str]:
    """Read every stream a piece at a time in turn, as the page's columns do."""
    texts = [""] * len(streams)
    for i, piece in interleave(streams):
        texts[i] += piece
    return texts


@pytest.mark.parametrize("batched", [False, True])
def test_keeping_the_second_column_goes_on_as_a_direct_chat_with_its_settings(ckpt, batched):
    engine = GenerationEngine(ckpt.model) if batched else None
    try:
        compared = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=3), engine=engine)
        texts = interleaved(compared.compare(FIRST, settings(3)))
        assert compared.turns == [] and compared.comparing is not None
        turn = compared.keep(1)
        second = "".join(compared.send(SECOND))
    finally:
        if engine is not None:
            engine.close()
    direct = ChatSession(ckpt.model, ckpt.tokenizer, settings(3)[1])
    assert texts[1] == "".join(direct.send(FIRST)) and second == "".join(direct.send(SECOND))
    assert [t.reply.ids for t in compared.turns] == [t.reply.ids for t in direct.turns]
    assert compared.state.equals(direct.state, atol=1e-5, rtol=1e-5)
    assert compared.sampling == settings(3)[1] and turn.reply.text == texts[1]
    assert turn.stats["compared"] == {"settings": [s.settings() for s in settings(3)], "kept": 1}
    for i in (0, 2):  # every other column is its own settings' direct reply too
        alone = ChatSession(ckpt.model, ckpt.tokenizer, settings(3)[i])
        assert texts[i] == "".join(alone.send(FIRST))


def test_without_a_seed_the_kept_reply_leaves_its_exact_memory_and_generator(ckpt):
    chat = ChatSession(ckpt.model, ckpt.tokenizer)
    streams = chat.compare(FIRST, settings(None)[:2])
    for stream in streams:
        "".join(stream)
    kept = chat.comparing.candidates[1]
    chat.keep(1)
    assert torch.equal(chat.generator.get_state(), kept.generator.get_state())
    rebuilt = ChatSession(ckpt.model, ckpt.tokenizer)
    rebuilt.feed(chat.turns[0].prompt_ids + chat.turns[0].reply.ids)
    assert chat.state.equals(rebuilt.state, atol=1e-5, rtol=1e-5)


def test_the_saved_conversation_records_the_comparison_and_continues_exactly(ckpt, tmp_path):
    store = ConversationStore(tmp_path / "conversations.sqlite3").owned_by("me")
    chat = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=5))
    interleaved(chat.compare(FIRST, settings(5)[:2]))
    chat.keep(1)
    store.save("c", chat, "tiny", ckpt.fingerprint, 0)
    again = ChatSession(ckpt.model, ckpt.tokenizer, settings(5)[1])
    restore_session(again, store.load("c"), ckpt.fingerprint)
    assert again.turns[0].stats["compared"]["kept"] == 1
    assert store.load("c").sampling == settings(5)[1].settings()
    assert "".join(again.send(SECOND)) == "".join(chat.send(SECOND))


def test_a_comparison_is_kept_or_discarded_before_anything_else(ckpt):
    chat = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=1, max_new_tokens=5))
    "".join(chat.send(FIRST))
    before = chat.state.clone()
    with pytest.raises(ChatbotError, match="compare 2 to"):
        chat.compare(SECOND, settings(1)[:1])
    with pytest.raises(ChatbotError, match="compare 2 to"):
        chat.compare(SECOND, settings(1) * 2)
    assert MAX_COMPARED == 4 and chat.comparing is None
    streams = chat.compare(SECOND, settings(1))
    next(streams[0])  # one column started, the others never read
    for attempt in (lambda: chat.send("again"), chat.regenerate, chat.continue_reply,
                    lambda: chat.compare("again", settings(1))):
        with pytest.raises(ChatbotError, match="keep one of the compared replies"):
            attempt()
    with pytest.raises(ChatbotError, match="no compared reply 4"):
        chat.keep(3)
    assert chat.discard_comparison() == SECOND and chat.comparing is None and len(chat.turns) == 1
    assert chat.state.equals(before, atol=0, rtol=0)
    with pytest.raises(ChatbotError, match="no compared replies"):
        chat.keep(0)


def test_presets_change_only_how_tokens_are_chosen(ckpt):
    mine = SamplingConfig(temperature=0.1, top_k=3, max_new_tokens=77, seed=9, stop=("!",), beam_width=3)
    for name, values in PRESETS.items():
        cfg = preset(name, mine)
        assert (cfg.max_new_tokens, cfg.seed, cfg.stop, cfg.beam_search) == (77, 9, ("!",), False)
        assert all(getattr(cfg, key) == value for key, value in values.items())
    with pytest.raises(ChatbotError, match="no preset"):
        preset("wild", mine)
