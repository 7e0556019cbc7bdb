"""Print the learnable-parameter breakdown of a Learn2Diss config, next to the paper's Table 1.

The paper's count ("# Learnable params") is read here as everything trained in the joint stage
except the CLUB network q_phi: the M transformer layers of g with the mask embedding and W_g, and
the ECAPA-TDNN h with W_h and the A^l of eq. 9. The frozen feature extractor f is listed apart.

Examples::

    learn2diss params --config l2d_w12
    learn2diss params --config demo_l2d
"""

from __future__ import annotations

import argparse

# Table 1 of the paper, in millions, keyed by (parent kind, N).
PAPER_TABLE1 = {("hubert", 6): 61, ("hubert", 0): 103, ("wavlm", 6): 61, ("wavlm", 0): 103}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="run config: a packaged name (l2d_w12, l2d_h6, ...) or a YAML path")


def breakdown(model) -> list[tuple[str, int, bool]]:
    """(part, parameters, learnable) rows for a :class:`Learn2Diss` model."""

    def count(params) -> int:
        return sum(p.numel() for p in params)

    n, f, g, h = model.num_frozen_layers, model.f, model.g, model.h
    final_norm = count(g.final_norm.parameters())
    rows = [
        ("f: conv encoder + feature projection + positional conv",
         count(p for m in model.front_end_modules() for p in m.parameters()), False),
        (f"f: transformer layers 1-{n}", count(f.layers.parameters()), False),
        (f"g: transformer layers {n + 1}-{n + len(g.layers)} (+ mask embedding"
         + (", final layer norm" if final_norm else "") + ")",
         count(model.frame_parameters()) - count(g.head.parameters()), True),
        ("g: W_g (K targets)", count(g.head.parameters()), True),
        ("h: ECAPA-TDNN", count(h.ecapa.parameters()), True),
        ("h: W_h (Q targets)", count(h.head.parameters()), True),
        ("h: A^l projections (eq. 9)", count(h.layer_projections.parameters()), True),
    ]
    return [row for row in rows if row[1] or row[2]]


def run(args: argparse.Namespace) -> int:
    from learn2diss.pretrain.config import load_config
    from learn2diss.upstream.model import Learn2Diss

    config = load_config(args.config)
    model = Learn2Diss(config.model)
    rows = breakdown(model)
    learnable = sum(n for _, n, trainable in rows if trainable)
    frozen = sum(n for _, n, trainable in rows if not trainable)
    width = max(len(name) for name, _, _ in rows)
    print(f"{args.config}: {config.model.parent.kind}, N = {model.num_frozen_layers} frozen, "
          f"M = {config.model.num_trainable_layers} trainable transformer layers")
    print(f"| {'part':<{width}} | params (M) | learnable |")
    print(f"|{'-' * (width + 2)}|-----------:|:---------:|")
    for name, n, trainable in rows:
        print(f"| {name:<{width}} | {n / 1e6:10.2f} | {'yes' if trainable else 'frozen':^9} |")
    print(f"| {'total learnable':<{width}} | {learnable / 1e6:10.2f} |           |")
    print(f"| {'total frozen':<{width}} | {frozen / 1e6:10.2f} |           |")
    paper = PAPER_TABLE1.get((config.model.parent.kind, model.num_frozen_layers))
    if paper is not None and config.model.parent.num_layers == 12:
        print(f"paper (Table 1): {paper} M learnable; this config: {learnable / 1e6:.1f} M "
              f"({100 * (learnable / 1e6 - paper) / paper:+.1f} %)")
    return 0
