"""A prompt of any length costs about what a short one does: it is fed in chunks with the
recurrent state carried between them, which gives the same result as one forward."""

import torch

from chatbot.chat.session import FEED_CHUNK, ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from conftest import ROOT
from bench.measure import run_measured


def test_a_long_text_is_fed_in_chunks_with_the_state_carried():
    ckpt = load_checkpoint(ROOT / "models" / "default")
    session = ChatSession(ckpt.model, ckpt.tokenizer)
    # 2.5 chunks of tokens, whatever the tokenizer (a subword piece covers several characters)
    ids = ckpt.tokenizer.encode("The forget gate decides what the cell keeps. " * 400)[:int(2.5 * FEED_CHUNK)]
    assert len(ids) > 2 * FEED_CHUNK
    logits = session.feed(ids)
    with torch.inference_mode():
        whole, state = ckpt.model(torch.tensor([ids]))
    assert torch.allclose(logits, whole[0, -1], atol=1e-4, rtol=1e-4)
    assert session.state.equals(state, atol=1e-4, rtol=1e-4)


def test_generate_with_a_100000_character_prompt_stays_small():
    """It took 1.4 GB: the whole prompt's activations and logits in one forward."""
    prompt = ("The cell state carries memory from step to step. " * 2100)[:100_000]
    done = run_measured(["-m", "chatbot", "generate", "--model", "models/default", "--prompt", prompt,
                         "--max-new-tokens", "20", "--seed", "1"], timeout=1800)
    assert done.returncode == 0 and done.output.strip(), done.errors
    assert done.peak_rss_mb < 700, f"peak RSS {done.peak_rss_mb:.0f} MB"
