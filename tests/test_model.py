"""The fast single-step path computes exactly what the full-sequence forward computes."""

import pytest
import torch

from chatbot.lm.checkpoint import load_checkpoint
from chatbot.errors import ChatbotError
from chatbot.lm.model import LanguageModel, ModelConfig
from chatbot.lm.stepper import Stepper


def step_through(model, ids):
    stepper = Stepper(model)
    state, logits = model.initial_state(1), []
    for t in ids[0]:
        step_logits, state = stepper.step(int(t), state)
        logits.append(step_logits)
    return torch.stack(logits), state


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers,embed", [(1, 0), (3, 24)])
def test_fast_path_equals_full_forward(cell, layers, embed):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=60, cell=cell, num_layers=layers,
                                      hidden_size=40, embed_size=embed)).eval()
    with torch.no_grad():  # make biases and weights non-trivial
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    ids = torch.randint(0, 60, (1, 50))
    with torch.no_grad():
        full, full_state = model(ids)
    fast, fast_state = step_through(model, ids)
    torch.testing.assert_close(fast, full[0], atol=1e-5, rtol=0)
    assert fast_state.equals(full_state, atol=1e-5)


def test_fast_path_on_a_trained_checkpoint(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    ids = torch.tensor([ckpt.tokenizer.encode("hello, what is an lstm? 안녕하세요")])
    with torch.no_grad():
        full, _ = ckpt.model(ids)
    fast, _ = step_through(ckpt.model, ids)
    torch.testing.assert_close(fast, full[0], atol=1e-5, rtol=0)


def test_state_carried_across_calls_equals_one_call():
    torch.manual_seed(1)
    model = LanguageModel(ModelConfig(vocab_size=30, hidden_size=16)).eval()
    ids = torch.randint(0, 30, (2, 40))
    with torch.no_grad():
        whole, _ = model(ids)
        first, state = model(ids[:, :25])
        second, _ = model(ids[:, 25:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=0)


def test_weights_are_tied_only_when_sizes_allow():
    tied = LanguageModel(ModelConfig(vocab_size=30, hidden_size=16))
    assert tied.head.weight is tied.embed.weight
    untied = LanguageModel(ModelConfig(vocab_size=30, hidden_size=16, embed_size=8))
    assert untied.head.weight is not untied.embed.weight
    assert "head.weight" not in tied.weights_for_saving()
    assert "head.weight" in untied.weights_for_saving()


@pytest.mark.parametrize("bad", [dict(cell="transformer"), dict(hidden_size=0),
                                 dict(dropout=1.5), dict(num_layers=-1)])
def test_bad_model_settings_are_refused(bad):
    with pytest.raises(ChatbotError):
        ModelConfig(vocab_size=10, **bad)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_gate_blocks_are_torchs_weights_named_in_the_textbook_order(cell):
    model = LanguageModel(ModelConfig(vocab_size=30, cell=cell, num_layers=2, hidden_size=8, embed_size=6))
    torch_order = {"lstm": ["input", "forget", "candidate", "output"], "gru": ["reset", "update", "candidate"],
                   "rnn": ["hidden"]}[cell]
    for layer in range(2):
        blocks = model.gate_blocks(layer)
        assert list(blocks) == {"lstm": ["forget", "input", "candidate", "output"]}.get(cell, torch_order)
        for part, name in (("w_x", "weight_ih"), ("w_h", "weight_hh"), ("b_x", "bias_ih"), ("b_h", "bias_hh")):
            stacked = torch.cat([getattr(blocks[gate], part) for gate in torch_order])
            assert torch.equal(stacked, getattr(model.rnn, f"{name}_l{layer}"))
        if cell == "lstm":  # the forget-gate bias starts at 1 (set through the accessor)
            assert (blocks["forget"].b_x == 1).all() and not (blocks["input"].b_x == 1).all()
