"""Speed of the vectorised proposal scoring against the per-proposal reference loop.

One video of one stream: T snippets, D-dim features, C classes, anchors {1,2,4,8,16,32}
(every anchor position is a proposal: ~6T proposals). The vectorised side scores all
proposals for all C classes; the reference (``acn.localize.reference.proposal_terms_one``)
is timed on a random subset of proposals, stratified by anchor, and extrapolated per proposal.

    python benchmarks/bench_scoring.py [--T 2000 --D 1024 --C 20 --subset 300 --threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from acn.localize import reference as ref
from acn.localize.proposals import build_proposals, score_video
from acn.model.coherence import proposal_terms


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=2000)
    ap.add_argument("--D", type=int, default=1024)
    ap.add_argument("--C", type=int, default=20)
    ap.add_argument("--anchors", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--subset", type=int, default=300, help="reference proposals timed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    g = torch.Generator().manual_seed(args.seed)
    T, D, C = args.T, args.D, args.C
    feats = torch.rand(T, D, generator=g)  # float32, non-negative like I3D features
    scp = torch.rand(C, T, generator=g) * 0.8 + 0.15  # all above 0.1: nothing filtered
    regs = {P: torch.randn(2, T, generator=g) for P in args.anchors}
    classes = torch.arange(C)
    f_d, s_d = feats.to(dev), scp.to(dev)
    regs_d = {P: r.to(dev) for P, r in regs.items()}

    props = build_proposals(T, regs_d)
    n = len(props)

    def core(method):
        def run():
            proposal_terms(f_d, s_d, props.outer_start, props.start, props.end,
                           props.outer_end, lc_method=method)
            sync()
        return run

    def pipeline():
        score_video(f_d, s_d, regs_d, classes.to(dev), scp_threshold=0.1)
        sync()

    def training_step():
        rg = {P: r.clone().requires_grad_(True) for P, r in regs_d.items()}
        out = score_video(f_d, s_d, rg, classes.to(dev), training=True)
        out.loss.backward()
        sync()

    core("gram")()  # warm-up
    t_gram = _best_of(core("gram"), args.repeats)
    t_direct = _best_of(core("direct"), args.repeats)
    t_pipe = _best_of(pipeline, args.repeats)
    t_train = _best_of(training_step, args.repeats)

    # Reference: random subset of proposals, stratified by anchor size.
    rng = np.random.default_rng(args.seed)
    f64, s64 = feats.double().numpy(), scp.double().numpy()
    bounds = torch.stack([props.outer_start, props.start, props.end, props.outer_end], 1)
    bounds = bounds.double().cpu().numpy()
    anchor = props.anchor.cpu().numpy()
    subset = np.concatenate([
        rng.choice(np.flatnonzero(anchor == P),
                   max(1, round(args.subset * (anchor == P).sum() / n)), replace=False)
        for P in args.anchors if (anchor == P).any()])
    def reference_subset():
        for j in subset:
            ref.proposal_terms_one(f64, s64, *bounds[j])

    t_ref_per = _best_of(reference_subset, args.repeats) / len(subset)
    t_ref_full = t_ref_per * n

    print(f"video: T={T} D={D} C={C} anchors={args.anchors} -> {n} proposals x {C} classes; "
          f"device={dev}, torch threads={torch.get_num_threads()}")
    print(f"reference loop: {t_ref_per * 1e3:.3f} ms/proposal, timed on {len(subset)} random "
          f"proposals (stratified by anchor; the full loop is too slow to run), "
          f"extrapolated to all {n}: {t_ref_full:.2f} s")
    for name, t in (("gram", t_gram), ("direct", t_direct)):
        print(f"vectorised proposal_terms, Lc method {name:6s} (all proposals, all classes): "
              f"{t * 1e3:.1f} ms ({t / n * 1e6:.2f} us/proposal)  speed-up {t_ref_full / t:.0f}x")
    print(f"score_video (decode + filter + score, test mode, auto): {t_pipe * 1e3:.1f} ms  "
          f"speed-up {t_ref_full / t_pipe:.0f}x")
    print(f"score_video training (+ one-per-position, backward):    {t_train * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
