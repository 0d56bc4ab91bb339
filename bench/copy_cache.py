"""What a continuous cache does to ordinary replies: bot-reply nats/token on validation
conversations with the model alone, with the peak-gated cache that bench/memory_recall.py
measures (--gated), and with a 4-weight gate fitted here on training conversations
(a pointer-sentinel-like switch on frozen weights: g = sigmoid(w . [attention peak, the
model's top probability, its entropy, 1])). Prints the fitted weights for memory_recall.py
--gate.

    python bench/copy_cache.py --model models/default
    python bench/copy_cache.py --model runs/x --smoke
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402
from chatbot.text.corpus import encode_piece, load_corpus  # noqa: E402
from context_use import validation_conversations  # noqa: E402


@torch.no_grad()
def positions(model, tokenizer, conversations, theta: float) -> torch.Tensor:
    """For every bot-reply token of the conversations (each read from a zero state, the
    cache over the conversation so far): [p_model(target), p_cache(target), attention peak,
    the model's top probability, its entropy]."""
    outputs: list[torch.Tensor] = []
    hook = model.rnn.register_forward_hook(lambda _m, _i, out: outputs.append(out[0]))
    rows = []
    for conversation in conversations:
        ids = encode_piece(tokenizer, conversation)
        outputs.clear()
        logits, _ = model(torch.tensor([ids[:-1]]), model.initial_state(1))
        h = F.normalize(outputs[-1][0].float(), dim=-1)
        p = torch.softmax(logits[0].float(), dim=-1)
        target = torch.tensor(ids[1:])
        earlier = torch.tril(torch.ones(len(h), len(h), dtype=torch.bool), diagonal=-1)
        attn = torch.softmax((theta * h @ h.T).masked_fill(~earlier, float("-inf")), dim=-1).nan_to_num(0.0)
        p_cache = (attn * (target[None, :] == target[:, None]).float()).sum(-1)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
        in_reply, mask = False, []
        for token in ids[:-1]:
            in_reply = True if token == tokenizer.bot_id else False if token == tokenizer.end_id else in_reply
            mask.append(in_reply)
        rows.append(torch.stack([p.gather(1, target[:, None])[:, 0], p_cache, attn.max(-1).values,
                                 p.max(-1).values, entropy], 1)[torch.tensor(mask)])
    hook.remove()
    return torch.cat(rows)


def nats(rows: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return -torch.log(((1 - gate) * rows[:, 0] + gate * rows[:, 1]).clamp_min(1e-12)).mean()


def fitted(rows: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(w[0] * rows[:, 2] + w[1] * rows[:, 3] + w[2] * rows[:, 4] + w[3])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/default")
    p.add_argument("--theta", type=float, default=20.0)
    p.add_argument("--train-conversations", type=int, default=400)
    p.add_argument("--val-conversations", type=int, default=150)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.train_conversations, args.val_conversations = 10, 5

    ckpt = load_checkpoint(args.model)
    corpus_path = ckpt.spec.corpus.path if ckpt.spec.corpus else None
    corpus = load_corpus(ROOT / corpus_path if not Path(corpus_path).is_absolute() else corpus_path)
    val = validation_conversations(corpus, ckpt.spec.training.val_fraction)
    conversations = [piece for _, piece in corpus.pieces() if isinstance(piece, list)]
    train = conversations[:len(conversations) - len(val)]
    random.Random(1).shuffle(train)
    random.Random(0).shuffle(val)
    torch.manual_seed(0)
    tr = positions(ckpt.model, ckpt.tokenizer, train[:args.train_conversations], args.theta)
    va = positions(ckpt.model, ckpt.tokenizer, val[:args.val_conversations], args.theta)
    w = torch.zeros(4, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        loss = nats(tr, fitted(tr, w))
        loss.backward()
        opt.step()
    w = w.detach()
    print(f"model: {args.model}; θ {args.theta:g}; gate fitted on {len(tr):,} reply tokens of "
          f"{args.train_conversations} training conversations; scored on {len(va):,} of "
          f"{args.val_conversations} validation conversations\n")
    print("| next-token distribution | validation nats/token (bot replies) |")
    print("|---|---|")
    print(f"| model alone | {nats(va, torch.zeros(len(va))):.3f} |")
    for lam in (0.5, 1.0):
        print(f"| + cache, peak-gated, λ {lam:g} | {nats(va, lam * va[:, 2]):.3f} |")
    print(f"| + cache, fitted gate | {nats(va, fitted(va, w)):.3f} |")
    print(f"\nfitted gate: --gate {' '.join(f'{x:.3f}' for x in w.tolist())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
