"""How training text is laid out into parallel streams for truncated BPTT."""

import math
import os

import numpy as np
import pytest
import torch

from chatbot.train.data import Streams


def layout(streams, epoch):
    """All windows of one epoch joined back into one row per stream."""
    w = streams.windows
    xs, ys = zip(*[streams.window(epoch * w + i)[:2] for i in range(w)])
    return torch.cat(xs, 1), torch.cat(ys, 1)


def test_one_long_document_is_cut_into_fixed_contiguous_streams():
    ids = torch.arange(1000)
    s = Streams(ids, batch_size=4, seq_len=10)
    x, y = layout(s, 0)
    assert not s.shuffled
    assert torch.equal(y, x + 1)  # targets are the next token
    assert [int(row[0]) for row in x] == [0, 249, 498, 747]
    assert torch.equal(torch.diff(x, dim=1), torch.ones(4, x.shape[1] - 1, dtype=torch.long))
    assert torch.equal(layout(s, 3)[0], x)  # the same every epoch
    assert s.window(0)[2] and not s.window(1)[2]  # the state resets only at an epoch start


def test_many_short_documents_reshuffle_each_epoch_and_streams_start_at_a_document():
    starts = list(range(0, 3000, 30)) + list(range(3000, 6000, 17))  # 277 documents
    ids = torch.arange(6000)
    s = Streams(ids, batch_size=8, seq_len=16, doc_starts=starts, seed=5)
    assert s.shuffled
    first = layout(s, 0)[0]
    for epoch in range(3):
        x, y = layout(s, epoch)
        assert set(x[:, 0].tolist()) <= set(starts)  # every stream opens a document
        assert len(set(x.flatten().tolist())) == x.numel()  # no token is read twice in an epoch
        assert x.numel() >= 0.8 * len(ids)  # and few are skipped
        # inside a document the stream reads the text in order
        inside = [(a, b) for a, b in zip(x.flatten().tolist(), y.flatten().tolist()) if b not in starts]
        assert all(b == a + 1 for a, b in inside)
    assert not torch.equal(layout(s, 1)[0], first)
    again = Streams(ids, batch_size=8, seq_len=16, doc_starts=starts, seed=5)
    assert torch.equal(layout(again, 1)[0], layout(s, 1)[0])  # a function of (seed, epoch): exact resume


def test_documents_too_long_to_shuffle_fall_back_to_fixed_streams():
    ids = torch.arange(2000)
    s = Streams(ids, batch_size=4, seq_len=10, doc_starts=[0, 500, 1000, 1500])
    assert not s.shuffled


def test_validation_scores_every_token_once_and_starts_pieces_at_documents():
    from chatbot.train.data import Split, cut_points, evaluate
    from chatbot.lm.model import LanguageModel, ModelConfig
    from chatbot.text.tokenizers import CharTokenizer

    assert cut_points(100, 4, [10, 30, 52, 90]) == [0, 30, 52, 90]
    assert cut_points(100, 4, []) == [0, 25, 50, 75]
    tok = CharTokenizer(list("abcdefgh"))
    model = LanguageModel(ModelConfig(vocab_size=tok.vocab_size, hidden_size=16)).eval()
    val = torch.randint(4, tok.vocab_size, (700,))
    split = Split(val, val, tok.char_length(val[1:].tolist()), [0], list(range(0, 700, 37)))
    with torch.no_grad():  # the reference: one stream over the whole text, batch 1
        logits, _ = model(val[None, :-1])
        whole = torch.nn.functional.cross_entropy(logits[0], val[1:], reduction="sum").item()
    result = evaluate(model, split, seq_len=32, device=torch.device("cpu"))
    per_char = result["val_nats_per_char"]
    assert per_char * split.val_chars == pytest.approx(whole, rel=0.02)  # only piece starts differ
    assert result["val_bits_per_char"] == pytest.approx(per_char / math.log(2))


def mapped_kb(path) -> int:
    """Resident kB of this process's mappings of `path`, from /proc/self/smaps."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split(" ", 1)[0]:  # a mapping's header line
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's /proc")
def test_pages_of_a_memory_mapped_corpus_are_handed_back_as_training_reads_on(tmp_path):
    path = tmp_path / "ids.uint16"
    np.arange(8 * 2**20, dtype=np.uint16).tofile(path)  # 16 MB of ids
    ids = np.memmap(path, dtype=np.uint16, mode="r")
    streams = Streams(ids, batch_size=1, seq_len=64)
    assert int(ids.astype(np.int64).sum()) > 0 and mapped_kb(path) > 15_000  # every page read
    x, y, _ = streams.window(Streams.RELEASE_EVERY)  # a release step, then one window read
    assert mapped_kb(path) <= 4_096  # (the kernel may map a whole 2 MB folio around a read)
    assert x[0, :3].tolist() == [(Streams.RELEASE_EVERY * 64 + i) % 2**16 for i in range(3)]  # data intact
