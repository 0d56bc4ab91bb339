"""The Chat page's token view (app_pages/token_view.py), driven by AppTest on the real model:
what it shows is the record of the reply's actual sampling."""

import math

import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from app_pages.token_view import labels
from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from conftest import ROOT


def chart_rows(chart):
    """The rows of data an Altair chart on the page was sent with."""
    return convert_arrow_bytes_to_pandas_df(chart.proto.datasets[0].data.data)


def test_the_token_view_shows_the_reply_s_own_sampling(app_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    for key, value in dict(temperature=0.9, repetition_penalty=1.2, min_p=0.05).items():
        at.slider(key=key).set_value(value)
    at.number_input(key="top_k").set_value(8)
    at.checkbox(key="use_seed").check()
    at.run()
    at.number_input(key="seed").set_value(5)
    at.run()
    at.chat_input[0].set_value("what is an lstm?").run()
    assert not at.exception, at.exception
    app_chat = at.session_state.chat
    reply = app_chat.turns[0].reply
    key = f"tokens-{at.session_state.conv_id}-0"
    toggle = at.toggle(key=key)
    assert toggle.label == "Token view" and not toggle.value and not toggle.disabled
    assert not at.get("vega_lite_chart")  # off until asked for
    toggle.set_value(True).run()
    assert not at.exception, at.exception

    # The same seed and settings in the library, recorded, sample the same reply with the
    # same record (the record of every draw is checked against the draw in test_token_steps.py).
    ckpt = load_checkpoint(app_env / "tiny")
    library = ChatSession(ckpt.model, ckpt.tokenizer, app_chat.sampling)
    library.record_steps = True
    assert app_chat.sampling.seed == 5 and app_chat.sampling.top_k == 8
    "".join(library.send("what is an lstm?"))
    steps = library.turns[0].reply.steps
    assert library.turns[0].reply.ids == reply.ids == [s.token for s in steps]
    assert [(s.stages, s.candidates) for s in reply.steps] == [(s.stages, s.candidates) for s in steps]
    assert all(math.isclose(a, b, abs_tol=1e-6) for x, y in zip(reply.steps, steps)
               for ra, rb in zip(x.probs, y.probs) for a, b in zip(ra, rb))

    bubble = at.chat_message[1]
    tokens, along = bubble.get("vega_lite_chart")
    shown = chart_rows(tokens)
    assert list(shown["token"]) == labels(ckpt.tokenizer, reply.ids)
    assert list(shown["probability"]) == pytest.approx([s.probability for s in steps], abs=1e-6)
    assert '"pick"' in tokens.proto.spec and tokens.proto.selection_mode == ["pick"]  # a click picks a token
    assert len(chart_rows(along)) >= len(steps)  # entropy and surprise at every step
    mean = sum(s.surprise for s in steps) / len(steps)
    assert any(f"Mean surprise {mean:.2f} nats/token" in c.value for c in bubble.caption)

    # The table: the chosen token's candidates, one column per stage, the filter that removed each.
    removed = next(n for n, s in enumerate(steps) if any(s.removed_by(i) for i in range(len(s.candidates))))
    for n in (0, removed):
        at.number_input(key=f"{key}-step").set_value(n + 1).run()
        assert not at.exception, at.exception
        table = at.chat_message[1].dataframe[0].value
        step = steps[n]
        assert list(table.columns) == ["token", "sampled", "model", "repetition penalty", "temperature", "top-k",
                                       "min-p · sampled from", "removed by"]
        assert table.iloc[:, 2:-1].values.ravel().tolist() == pytest.approx(sum(step.probs, []), abs=1e-6)
        assert list(table["sampled"]).index("✓") == step.candidates.index(reply.ids[n])
        assert list(table["removed by"]) == [step.removed_by(i) or "" for i in range(len(step.candidates))]
    assert {"top-k", "min-p"} & set(table["removed by"])

    # Regenerated shorter, the reply's view follows it (the chosen token number is kept in range).
    at.number_input(key="max_new_tokens").set_value(2)
    at.run()
    next(b for b in at.sidebar.button if b.label == "Regenerate").click().run()
    assert not at.exception, at.exception
    steps = at.session_state.chat.turns[0].reply.steps
    chosen = at.number_input(key=f"{key}-step").value
    assert len(steps) == 2 and chosen in (1, 2)
    table = at.chat_message[1].dataframe[0].value
    step = steps[chosen - 1]
    assert list(table["sampled"]).index("✓") == step.candidates.index(step.token)


def test_a_beam_search_reply_has_no_token_view_and_says_why(app_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    at.number_input(key="beam_width").set_value(2)
    at.number_input(key="max_new_tokens").set_value(20)
    at.run()
    at.chat_input[0].set_value("hello").run()
    assert not at.exception, at.exception
    toggle = at.toggle(key=f"tokens-{at.session_state.conv_id}-0")
    assert toggle.disabled and "beam search" in toggle.help
    assert at.session_state.chat.turns[0].reply.steps is None
