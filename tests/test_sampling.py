"""Sampling controls: each one validated, each one doing what it says."""

import pytest
import torch

from chatbot.errors import ChatbotError
from chatbot.chat.sampling import SamplingConfig, choose_token

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, 3.0])


def draws(cfg, n=300, previous=()):
    g = torch.Generator().manual_seed(0)
    return [choose_token(LOGITS, cfg, list(previous), g) for _ in range(n)]


@pytest.mark.parametrize("bad", [
    dict(temperature=-0.1), dict(temperature=float("nan")), dict(temperature=1e9),
    dict(top_p=0.0), dict(top_p=1.5), dict(top_p=-1), dict(top_k=-3), dict(top_k=2.5),
    dict(repetition_penalty=0.5), dict(max_new_tokens=0), dict(max_new_tokens=10**9),
    dict(stop="abc"), dict(stop=("",)), dict(seed=-1)])
def test_absurd_values_are_refused_with_the_setting_named(bad):
    name = next(iter(bad))
    with pytest.raises(ChatbotError, match=name):
        SamplingConfig(**bad)


def test_temperature_zero_is_greedy():
    assert set(draws(SamplingConfig(temperature=0))) == {5}


def test_top_k_one_and_tiny_top_p_are_greedy():
    assert set(draws(SamplingConfig(temperature=1.5, top_k=1))) == {5}
    assert set(draws(SamplingConfig(temperature=1.5, top_p=0.01))) == {5}


def test_top_k_limits_the_candidates():
    assert set(draws(SamplingConfig(temperature=5, top_k=3))) == {0, 1, 5}


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = LOGITS.softmax(-1)  # sorted: 5 (0.63), 0 (0.23), 1 (0.09) ...
    assert probs[5] < 0.8 < probs[5] + probs[0]
    assert set(draws(SamplingConfig(temperature=1.0, top_p=0.8))) == {0, 5}


def test_repetition_penalty_makes_used_tokens_rarer():
    plain = draws(SamplingConfig(temperature=1.0), previous=[5])
    penalised = draws(SamplingConfig(temperature=1.0, repetition_penalty=3.0), previous=[5])
    assert penalised.count(5) < plain.count(5) / 2


def test_same_seed_same_draws_and_higher_temperature_spreads():
    cfg = SamplingConfig(temperature=1.0)
    assert draws(cfg) == draws(cfg)
    assert len(set(draws(SamplingConfig(temperature=3.0)))) > len(set(draws(SamplingConfig(temperature=0.3))))


@pytest.mark.parametrize("temperature", [1e-7, 1e-38, 1e-40, 1e-300, 5e-324])
@pytest.mark.parametrize("filters", [{}, dict(top_k=3), dict(top_p=0.9), dict(min_p=0.05),
                                     dict(typical_p=0.5), dict(repetition_penalty=1.3)])
def test_any_allowed_temperature_samples_a_token_tiny_ones_the_greedy_one(temperature, filters):
    """A tiny temperature overflows logits / T in float32 (softmax then gave NaN and
    torch.multinomial raised): it must be the greedy limit instead."""
    assert set(draws(SamplingConfig(temperature=temperature, **filters), n=50)) == {5}


def test_a_tiny_temperature_draws_evenly_between_tied_best_tokens():
    logits = torch.tensor([1.0, 4.0, 4.0, -2.0])
    g = torch.Generator().manual_seed(0)
    got = [choose_token(logits, SamplingConfig(temperature=1e-40), [], g) for _ in range(200)]
    assert set(got) == {1, 2} and 60 < got.count(1) < 140


def test_ordinary_temperatures_draw_exactly_as_before():
    """Only an overflow takes the log-space path: seeded replies stay what they were."""
    from chatbot.chat.sampling import scale_by_temperature
    for t in (0.05, 0.5, 1.0, 10.0):
        assert torch.equal(scale_by_temperature(LOGITS, t), LOGITS / t)


def test_a_batch_of_rows_draws_exactly_what_each_row_draws_alone():
    """choose_tokens (the generation engine's) is choose_token row by row, each row drawing
    from its own generator, whatever the other rows are."""
    from chatbot.chat.sampling import choose_tokens
    cfgs = [SamplingConfig(temperature=t) for t in (0.05, 0.5, 0.8, 1.0, 3.0, 10.0, 1e-40)] + [
        SamplingConfig(temperature=0), SamplingConfig(top_k=5), SamplingConfig(top_k=5000),
        SamplingConfig(top_p=0.9), SamplingConfig(min_p=0.05), SamplingConfig(typical_p=0.8),
        SamplingConfig(repetition_penalty=1.5), SamplingConfig(repetition_penalty=1.5, temperature=0)]
    previous = [[3, 5, 5, 1] if n % 2 else [] for n in range(len(cfgs))]
    torch.manual_seed(0)
    for vocab in (6, 1506):
        batched = [torch.Generator().manual_seed(n) for n in range(len(cfgs))]
        alone = [torch.Generator().manual_seed(n) for n in range(len(cfgs))]
        for _ in range(50):
            logits = torch.randn(len(cfgs), vocab) * 4
            got = choose_tokens(logits, cfgs, previous, batched)
            assert got == [choose_token(logits[i], cfgs[i], previous[i], alone[i]) for i in range(len(cfgs))]
        for a, b in zip(batched, alone):  # and every generator drew just as much
            assert torch.equal(a.get_state(), b.get_state())
