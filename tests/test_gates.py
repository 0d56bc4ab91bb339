"""The explicit cells reproduce torch's nn.LSTM / nn.GRU / nn.RNN, layer by layer, on
trained checkpoints of each cell type."""

import pytest
import torch

from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.lm.gates import memory_kept, trace
from chatbot.chat.sampling import SamplingConfig
from chatbot.lm.spec import TrainConfig
from chatbot.train.loop import train
from conftest import run_spec

CELLS = ["lstm", "gru", "rnn"]


@pytest.fixture(scope="module", params=CELLS)
def trained(request, chat_corpus, tmp_path_factory):
    """A tiny model of each cell type, really trained by train()."""
    out = tmp_path_factory.mktemp(request.param) / "m"
    train(run_spec(chat_corpus, TrainConfig(max_steps=60, seq_len=32, batch_size=8, eval_every=60, lr=1e-2,
                                            warmup_steps=5), cell=request.param, hidden_size=40, num_layers=3), out)
    return load_checkpoint(out)


def torch_layer_outputs(model, ids, state):
    """Each layer's outputs from torch's own single-layer module with that layer's weights."""
    cfg, rnn = model.config, model.rnn
    x = model.embed(torch.tensor([ids]))
    outputs = []
    for layer in range(cfg.num_layers):
        single = type(rnn)(x.shape[-1], cfg.hidden_size, num_layers=1, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(single, f"{name}_l0").data.copy_(getattr(rnn, f"{name}_l{layer}").data)
        x, _ = single(x, state.map(lambda t: t[layer:layer + 1]).to_torch())
        outputs.append(x[0])
    return outputs


@torch.no_grad()
def test_explicit_cells_match_torch_layer_by_layer(trained):
    model = trained.model.eval()
    ids = trained.tokenizer.encode("what does the forget gate do? 안녕하세요 " * 3)
    # start from a non-zero state: the state a previous message left
    _, state = model(torch.tensor([trained.tokenizer.encode("my name is Mina")]))
    tr = trace(model, ids, state)
    for layer, expected in zip(tr.layers, torch_layer_outputs(model, ids, state)):
        assert torch.allclose(layer.h, expected, atol=1e-5)
    full_logits, full_state = model(torch.tensor([ids]), state)
    assert torch.allclose(tr.logits, full_logits[0], atol=1e-5)
    for mine, theirs in zip(tr.final_state.tensors(), full_state.tensors()):
        assert torch.allclose(mine, theirs, atol=1e-5)
    if model.config.cell == "lstm":
        last = tr.layers[-1]
        assert torch.allclose(last.gates["cell"][-1], full_state.c[-1, 0], atol=1e-5)
        f, i, c = last.gates["forget"], last.gates["input"], last.gates["cell"]
        assert torch.allclose(c[1:], f[1:] * c[:-1] + i[1:] * last.gates["candidate"][1:], atol=1e-5)


def test_gates_are_exposed_per_cell_type(trained):
    tr = trace(trained.model, trained.tokenizer.encode("hello"))
    expected = {"lstm": ["forget", "input", "candidate", "output", "cell"],
                "gru": ["reset", "update", "candidate"], "rnn": []}[trained.model.config.cell]
    assert tr.gate_names == expected
    for layer in tr.layers:
        assert layer.h.shape == (5, 40)
        for name in ("forget", "input", "output", "reset", "update"):
            if name in layer.gates:
                assert 0 <= layer.gates[name].min() and layer.gates[name].max() <= 1
    kept = memory_kept(tr)
    assert (kept is None) == (trained.model.config.cell == "rnn")
    assert kept is None or 0 < kept < 1


def test_each_cell_type_trains_and_chats(trained):
    s = ChatSession(trained.model, trained.tokenizer, SamplingConfig(temperature=0.8, seed=1, max_new_tokens=40))
    for message in ("hello", "what is an lstm?"):
        reply = "".join(s.send(message))
        assert isinstance(reply, str) and s.turns[-1].reply.ids
    assert trained.metrics["val_nats_per_char"] < 4.0  # it learned something in 60 steps
