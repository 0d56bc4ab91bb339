"""The record behind the chat page's token view (sampling.TokenStep): made while sampling,
it changes no token, and it is exactly what choose_token computed and drew from."""

import math

import pytest
import torch

from chatbot.chat.engine import GenerationEngine
from chatbot.chat.sampling import TOP_CANDIDATES, SamplingConfig, TokenStep, choose_token, choose_tokens
from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from conftest import in_threads

ALL_FILTERS = dict(temperature=0.7, repetition_penalty=1.3, top_k=12, top_p=0.9, min_p=0.05, typical_p=0.95)
CONFIGS = [dict(temperature=0.8), ALL_FILTERS, dict(temperature=0, repetition_penalty=1.5),
           dict(temperature=1.0, top_p=0.8)]


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def chat(ckpt, recorded: bool, engine=None, **sampling) -> ChatSession:
    s = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(**{"seed": 3, "max_new_tokens": 60, **sampling}),
                    engine=engine)
    s.record_steps = recorded
    return s


def talk(s: ChatSession) -> list[list[int]]:
    for message in ("hello", "what is an lstm?"):
        "".join(s.send(message))
    return [t.reply.ids for t in s.turns]


@pytest.mark.parametrize("sampling", CONFIGS)
def test_recording_changes_no_token_alone_or_in_the_engine(ckpt, sampling):
    plain = talk(chat(ckpt, False, **sampling))
    recorded = chat(ckpt, True, **sampling)
    assert talk(recorded) == plain
    for turn in recorded.turns:
        steps = turn.reply.steps
        assert [s.token for s in steps] == turn.reply.ids  # one record per token, in order
        assert all(s.probability > 0 and s.token in s.candidates for s in steps)
    engine = GenerationEngine(ckpt.model)
    try:
        assert talk(chat(ckpt, True, engine, **sampling)) == plain
    finally:
        engine.close()


def test_recorded_rows_of_a_batched_step_keep_their_tokens(ckpt):
    """Six sessions in one batch, every other one recorded: each gets its solo reply."""
    alone = [talk(chat(ckpt, False, seed=n, **CONFIGS[n % 2])) for n in range(6)]
    engine = GenerationEngine(ckpt.model)
    try:
        def person(n):
            s = chat(ckpt, n % 2 == 0, engine, seed=n, **CONFIGS[n % 2])
            ids = talk(s)
            assert all((t.reply.steps is not None) == (n % 2 == 0) for t in s.turns)
            assert n % 2 or all([x.token for x in t.reply.steps] == t.reply.ids for t in s.turns)
            return ids
        assert in_threads(person, 6) == alone
        assert engine.widest > 1
    finally:
        engine.close()


def reference_stages(logits: torch.Tensor, previous: list[int], cfg: dict) -> dict[str, torch.Tensor]:
    """Each filter written out again from its definition, in float64 on probabilities."""
    out = {"model": torch.softmax(logits.double(), -1)}
    penalised = logits.double().clone()
    for t in set(previous):
        v = penalised[t]
        penalised[t] = v / cfg["repetition_penalty"] if v > 0 else v * cfg["repetition_penalty"]
    out["repetition penalty"] = torch.softmax(penalised, -1)
    p = torch.softmax(penalised / cfg["temperature"], -1)
    out["temperature"] = p
    p = torch.where(p >= torch.sort(p, descending=True).values[cfg["top_k"] - 1], p, 0.0)
    out["top-k"] = p = p / p.sum()
    ordered, order = torch.sort(p, descending=True)
    keep = order[(ordered.cumsum(0) - ordered) < cfg["top_p"]]
    q = torch.zeros_like(p)
    q[keep] = p[keep]
    out["top-p"] = p = q / q.sum()
    p = torch.where(p >= cfg["min_p"] * p.max(), p, 0.0)
    out["min-p"] = p = p / p.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    distance = (-p.log() - entropy).abs()
    ranked = distance.argsort()
    mass_before = p[ranked].cumsum(0) - p[ranked]
    q = torch.zeros_like(p)
    q[ranked[mass_before < cfg["typical_p"]]] = p[ranked[mass_before < cfg["typical_p"]]]
    out["typical-p"] = q / q.sum()
    return out


def test_the_record_is_the_distribution_the_token_was_drawn_from_on_a_fixed_seed(ckpt):
    """Step through a real reply with every filter on. top_k <= TOP_CANDIDATES without a
    penalty on the model's top tokens keeps the whole final distribution among the recorded
    candidates, so it can be rebuilt in full: drawing from it with the generator as it was
    before the step gives the recorded token. Every stage's probabilities equal the filters
    recomputed from their definitions."""
    cfg = dict(ALL_FILTERS, top_k=TOP_CANDIDATES, repetition_penalty=1.2)
    sampling = SamplingConfig(**cfg)
    s = chat(ckpt, False)
    logits = s.feed(s.tokenizer.encode("what is an lstm?"))
    stepper, state = s.stepper, s.state
    generator = torch.Generator().manual_seed(11)
    ids, steps = [], []
    removals, draws_checked = set(), 0
    for _ in range(40):
        before = generator.get_state()
        token = choose_token(logits, sampling, ids, generator, steps)
        step = steps[-1]
        assert step.token == token and step.stages == ("model", "repetition penalty", "temperature", "top-k",
                                                       "top-p", "min-p", "typical-p")
        index = torch.tensor(step.candidates)
        whole = torch.zeros(logits.numel())
        whole[index] = torch.tensor([row[-1] for row in step.probs])
        if math.isclose(float(whole.sum()), 1.0, abs_tol=1e-6):  # the whole support was recorded
            again = torch.Generator()
            again.set_state(before)
            assert int(torch.multinomial(whole, 1, generator=again)) == token
            draws_checked += 1
        reference = reference_stages(logits, ids, cfg)
        for j, name in enumerate(step.stages):
            recorded = torch.tensor([row[j] for row in step.probs], dtype=torch.float64)
            assert torch.allclose(recorded, reference[name][index], atol=1e-5), name
        model = reference["model"]
        assert math.isclose(step.surprise, -math.log(model[token]), rel_tol=1e-4, abs_tol=1e-4)
        assert math.isclose(step.entropy, float(-(model * model.log()).sum()), rel_tol=1e-4, abs_tol=1e-4)
        assert step.probability == step.probs[step.candidates.index(token)][-1] > 0
        removals |= {step.removed_by(i) for i in range(len(step.candidates))}
        ids.append(token)
        logits, state = stepper.step(token, state)
    assert draws_checked >= 30
    assert {"top-k", "top-p"} <= removals  # the filters did remove something


def test_removed_by_names_the_filter_that_dropped_a_candidate():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, 3.0])
    steps: list[TokenStep] = []
    choose_token(logits, SamplingConfig(temperature=1.0, top_k=3, min_p=0.3), [], torch.Generator().manual_seed(0),
                 steps)
    step = steps[0]
    assert step.stages == ("model", "top-k", "min-p")
    assert step.candidates[:6] == [5, 0, 1, 2, 3, 4]
    assert [step.removed_by(i) for i in range(6)] == [None, None, "min-p", "top-k", "top-k", "top-k"]


def test_a_batched_choice_records_what_choose_token_records_row_by_row():
    """choose_tokens draws plain rows in one batch; their records must be choose_token's."""
    torch.manual_seed(0)
    logits = torch.randn(8, 50) * 3
    cfgs = [SamplingConfig(temperature=t, **f) for t, f in
            [(0.8, {}), (1.0, {}), (0, {}), (0.7, dict(top_k=5)), (1.2, dict(repetition_penalty=1.4)),
             (0.9, dict(repetition_penalty=1.4)), (0, dict(repetition_penalty=2.0)), (1e-40, {})]]
    previous = [[], [3], [], [1], [], [4, 4, 7], [2], []]
    batched, alone = [[] for _ in cfgs], [[] for _ in cfgs]
    tokens = choose_tokens(logits, cfgs, previous, [torch.Generator().manual_seed(n) for n in range(8)], batched)
    for i, cfg in enumerate(cfgs):
        token = choose_token(logits[i], cfg, previous[i], torch.Generator().manual_seed(i), alone[i])
        (a,), (b,) = batched[i], alone[i]
        assert token == tokens[i] == a.token == b.token
        assert (a.stages, a.candidates) == (b.stages, b.candidates)
        assert torch.allclose(torch.tensor(a.probs), torch.tensor(b.probs), atol=1e-6)
        assert math.isclose(a.entropy, b.entropy, abs_tol=1e-5) and math.isclose(a.surprise, b.surprise, abs_tol=1e-5)
    assert choose_tokens(logits, cfgs, previous, [torch.Generator().manual_seed(n) for n in range(8)]) == tokens
