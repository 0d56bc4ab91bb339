"""Which units follow a text feature (chatbot/lm/units.py): the features computed by hand, the
correlations checked against numpy on a real trained model's traces, and a real unit found."""

import numpy as np
import pytest

from chatbot.chat.sampling import SamplingConfig
from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.lm.gates import half_life, trace
from chatbot.lm.units import (FEATURES, MIN_R, correlations, pick_units, pieces, text_features, token_labels,
                              track_units, usable)
from chatbot.text.tokenizers import BOT_ID, END_ID, USER_ID


def test_text_features_by_hand():
    texts = ["", "a", '"', "b", '"', "(", "c", ")", "\n", "한", " ", "x", "", "", "y"]
    ids = [USER_ID] + [10] * 11 + [END_ID, BOT_ID, 10]
    f = text_features(texts, ids)
    assert f["quote"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert f["bracket"].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert f["line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 0, 0, 1]
    assert f["word"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 0, 1, 0, 0, 1]
    assert f["bot"].tolist() == [0] * 13 + [1, 1]
    assert f["marker"].tolist() == [1] + [0] * 11 + [1, 1, 0]
    assert f["korean"].tolist() == [0] * 9 + [1, 1, 0, 0, 0, 0]
    assert set(f) == set(FEATURES)
    kept = usable(f)
    assert "quote" in kept and "line" in kept  # the line position starts again three times
    assert "line" not in usable(text_features(list("abcdef"), [10] * 6))  # one line: just time
    assert token_labels(texts, ids, "␣")[:2] == ["▸", "a"]
    assert token_labels(["\n", " ", ""], [9, 9, 9], "␣") == ["⏎", "␣", "·"]


def test_a_byte_piece_gets_its_character_when_the_character_is_complete():
    class Bytes:  # a tokenizer's bytes, as a SentencePiece byte fallback splits a Hangul syllable
        table = {5: "한".encode()[:2], 6: "한".encode()[2:], 7: b"a"}
        token_bytes = table.get
    assert pieces(Bytes, [7, 5, 6, 7]) == ["a", "", "한", "a"]


def test_half_life():
    assert half_life(0.5) == pytest.approx(1.0)
    assert half_life(0.99) == pytest.approx(68.97, abs=0.01)
    assert half_life(1.0) == float("inf") and half_life(0.0) == 0.0


@pytest.fixture(scope="module")
def conversation(tiny_checkpoint):
    """A real trained model, and the ids of a real three-turn chat with it (English and Korean)."""
    ckpt = load_checkpoint(tiny_checkpoint)
    chat = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(temperature=0.0, max_new_tokens=80))
    for message in ("what does the forget gate do?", "안녕하세요", "my name is Mina"):
        "".join(chat.send(message))
    ids = [i for turn in chat.turns for i in turn.prompt_ids + turn.reply.ids]
    return ckpt, ids


def test_correlations_are_numpys_on_real_traces_and_the_ranking_follows_them(conversation):
    ckpt, ids = conversation
    tr = trace(ckpt.model, ids)
    features = usable(text_features(pieces(ckpt.tokenizer, ids), ids))
    assert {"bot", "marker", "korean", "line", "word"} <= set(features)
    for layer in tr.layers:
        h = layer.h.numpy()
        r = correlations(h, features)
        for k, values in enumerate(features.values()):
            for unit in range(h.shape[1]):
                expected = np.corrcoef(values, h[:, unit])[0, 1] if h[:, unit].std() > 0 else 0.0
                assert r[k, unit] == pytest.approx(expected, abs=1e-6)
        picked = pick_units(r, list(features), 6)
        names = list(features)
        assert len({t.unit for t in picked}) == len(picked) == 6
        assert [t.r for t in picked] == [r[names.index(t.feature), t.unit] for t in picked]
        top = np.unravel_index(np.abs(r).argmax(), r.shape)
        assert (picked[0].feature, picked[0].unit) == (names[top[0]], top[1])
        followed = sorted((f for k, f in enumerate(names) if np.abs(r[k]).max() >= MIN_R),
                          key=lambda f: -np.abs(r[names.index(f)]).max())
        assert [t.feature for t in picked[:len(followed)]] == followed[:6]  # each followed feature first
        for n, t in enumerate(picked):  # each is its feature's best unit of those still free
            free = [u for u in range(h.shape[1]) if u not in {p.unit for p in picked[:n]}]
            assert abs(t.r) == pytest.approx(np.abs(r[names.index(t.feature), free]).max())
        more = pick_units(r, names, 2 * len(followed))  # then each again, before any a third time
        for f in followed:
            assert [t.feature for t in more].count(f) == min(2, int((np.abs(r[names.index(f)]) >= MIN_R).sum()))

def test_a_trained_model_has_a_unit_that_follows_korean(conversation):
    """On a chat that switches between English and Korean, some unit of the trained model's last
    layer is on (or off) while it writes Korean: its h differs clearly between the two."""
    ckpt, ids = conversation
    texts = pieces(ckpt.tokenizer, ids)
    h = trace(ckpt.model, ids).layers[-1].h.numpy()
    korean = [t for t in track_units(h, texts, ids, 8) if t.feature == "korean"]
    assert korean and abs(korean[0].r) >= 0.7, korean
    unit, sign = korean[0].unit, np.sign(korean[0].r)
    hangul = text_features(texts, ids)["korean"] == 1
    assert sign * (h[hangul, unit].mean() - h[~hangul, unit].mean()) > 0.5
