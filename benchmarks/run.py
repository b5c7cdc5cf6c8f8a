"""acn performance benchmarks: five figures, each against a baseline measured in the same run.

    python benchmarks/run.py [--device cpu|cuda] [--quick] [--threads 2] [--only 1,2,3,4,5]
                             [--repeats N] [--trained-base] [--profile] [--json OUT]

1. Localize overhead: full ``ACN.localize`` (base models + regression nets + scoring +
   filtering + NMS + fusion, both streams) on the 212 THUMOS14-scale test videos, divided by the
   regression nets' forward pass alone over the same padded batches.          target <= 1.25
2. Scoring speed-up: the per-proposal reference loop (``acn.localize.reference``) over all
   proposals of one video (T = 2000, D = 1024, C = 20, anchors 1..32) divided by one
   vectorised ``score_video`` call.                                           target >= 100x
3. Training overhead: 3 epochs of regression-net training (both streams) divided by plain
   forward + backward + SGD step of the same nets with loss = mean of the outputs over the
   same batches.                                                              target <= 3
4. Memory scaling: peak RSS of ``acn localize`` (a child process, memory-mapped canonical
   features) on one synthetic video of 15 min / 30 min / 1 h / 2 h; the baseline is the peak
   RSS of a child that only imports acn + torch.        target <= 1.5 GB at 2 h, linear in T
5. Evaluation speed: ``acn.evaluate`` (thumos14 protocol) on 100,000 detections over the real
   THUMOS14 test ground truth; also the ``acn evaluate`` CLI wall time. Reported in seconds.

``--quick`` shrinks every size for a smoke run (its figures are not the targets' figures).
Timings are medians of ``--repeats`` runs, baseline and measurement interleaved; torch uses
``--threads`` threads (default 2) everywhere, children included (OMP_NUM_THREADS).
The models are untrained-but-valid: base models fitted for one epoch (``--trained-base``:
the configured base.epochs) and random regression nets; timings do not depend on training quality,
but the number of surviving proposals does, so the counts are printed too.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
MB = 1024 * 1024


# ---------------------------------------------------------------------------- helpers
@dataclass
class Figure:
    number: int
    name: str
    value: float
    unit: str
    target: str
    passed: bool | None
    lines: list[str] = field(default_factory=list)
    profile: str | None = None

    def headline(self) -> str:
        verdict = {True: "PASS", False: "MISS", None: "report"}[self.passed]
        return (f"[{self.number}] {self.name}: {self.value:.3g}{self.unit}  "
                f"(target {self.target})  {verdict}")


def machine(threads: int) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "torch_threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_start": os.getloadavg()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def med(xs) -> float:
    return float(statistics.median(xs))


def profile_top(fn, n: int = 15) -> str:
    """cProfile ``fn`` once; the top ``n`` entries by own time, as text."""
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).strip_dirs().sort_stats("tottime").print_stats(n)
    text = buf.getvalue()
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return env


TIME = Path("/usr/bin/time")

# Peak RSS of a child, measured inside it: VmHWM of /proc/self/status is the high-water mark
# of the process's own address space. (ru_maxrss from wait4/getrusage would not do: Linux
# carries the RSS of the forked copy of this -- large -- benchmark process into the child's
# maxrss at exec; /usr/bin/time avoids that because it forks from a small process.)
_RUNNER = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
else:
    code = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("ACN_VMHWM_KB", int(line.split()[1]), file=sys.stderr)
sys.exit(code)
"""


def run_child(cmd: list[str], env: dict, module: bool = False) -> tuple[float, float, str]:
    """Run ``cmd`` (``module``: ``cmd = [module, args...]`` run as ``python -m``); return
    (wall seconds, peak RSS in MiB, last output line). With ``module``, the peak is VmHWM
    read in the child (cross-checked with /usr/bin/time's %M when that exists); otherwise
    /usr/bin/time's %M, or NaN without it."""
    if module:
        full = [sys.executable, "-c", _RUNNER, *cmd]
    else:
        full = list(cmd)
    if TIME.exists():
        full = [str(TIME), "-f", "ACN_TIME_MAXRSS_KB %M", *full]
    t0 = time.perf_counter()
    p = subprocess.run(full, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({p.returncode}):\n{out[-3000:]}")
    hwm = [int(x.split()[1]) for x in out.splitlines() if x.startswith("ACN_VMHWM_KB")]
    tmx = [int(x.split()[1]) for x in out.splitlines() if x.startswith("ACN_TIME_MAXRSS_KB")]
    kb = hwm[-1] if hwm else (tmx[-1] if tmx else float("nan"))
    if hwm and tmx and abs(hwm[-1] - tmx[-1]) > 0.05 * hwm[-1]:
        print(f"    note: VmHWM {hwm[-1] / 1024:.0f} MiB vs /usr/bin/time {tmx[-1] / 1024:.0f} MiB",
              flush=True)
    lines = [x for x in p.stdout.strip().splitlines() if x.strip()]
    return wall, kb / 1024.0, lines[-1] if lines else ""


# ---------------------------------------------------------------------------- shared setup
class Setup:
    """THUMOS14-scale synthetic data and an untrained-but-valid two-stream ACN."""

    def __init__(self, args, work: Path):
        from acn.config import resolve
        from acn.data.synth import synthesize, to_dataset
        from acn.model.regression import RegressionNets
        from acn.pipeline import ACN, STREAMS
        from acn.train.stages import StreamModel, input_statistics, save_checkpoint

        self.videos = 40 if args.quick else None
        self.dim = 256 if args.quick else 1024
        overrides = [] if args.trained_base else ["base.epochs=1"]
        if args.quick and args.trained_base:
            overrides = ["base.epochs=5"]
        # speed figures on the paper's fixed anchors and fusion weights: no carved-split
        # selection (a 1-epoch base model would send it through every fallback recipe)
        # Lc on the base models' embedding: the fallback, and the costlier source (one more
        # pass of each base model's first layer)
        overrides += ["select.validation_fraction=0", "acn.anchors=[1, 2, 4, 8, 16, 32]",
                      "acn.alpha=0.8", "localize.rgb_weight=0.5", "acn.lc_features=embedding"]
        self.cfg = resolve(overrides=overrides)
        t0 = time.perf_counter()
        self.synth = synthesize("thumos14", videos=self.videos, dim=self.dim, seed=0)
        self.ds = to_dataset(self.synth)
        t_synth = time.perf_counter() - t0
        self.run = work / "run"
        self.model = ACN(self.cfg)
        t0 = time.perf_counter()
        self.model.fit(self.ds, self.run, progress=False, stage="base")
        t_fit = time.perf_counter() - t0
        acn = self.cfg["acn"]
        for si, s in enumerate(STREAMS):
            torch.manual_seed(1000 + si)
            sm = self.model.models[s]
            stats = input_statistics(sm.base)  # standardised input, as trained nets have
            nets = RegressionNets(self.dim, list(acn["anchors"]), filters=acn["filters"],
                                  zero_init=False, input_norm=stats is not None).eval()
            if stats is not None:  # random offsets, like trained nets
                nets.set_input_statistics(*stats)
            self.model.models[s] = StreamModel(sm.base, nets, sm.attention_threshold)
            save_checkpoint(self.run / "checkpoints" / f"{s}_regression.pt",
                            {"state_dict": nets.state_dict(), "kwargs": nets.kwargs(),
                             "config": self.cfg, "classes": self.model.classes, "stream": s,
                             "history": []})
        ann = self.ds.annotations
        self.test_ids = [v.id for v in ann.subset(ann.test_subset)]
        self.train_ids = [v.id for v in ann.subset(ann.train_subset)]
        base_epochs = self.cfg["base"]["epochs"]
        self.describe = (f"synthesize('thumos14', videos={self.videos}, dim={self.dim}): "
                         f"{len(self.train_ids)} train + {len(self.test_ids)} test videos "
                         f"({t_synth:.0f} s); base models fitted {base_epochs} epoch(s) "
                         f"({t_fit:.0f} s); random RegressionNets")


# ---------------------------------------------------------------------------- figure 1
def fig_localize(args, setup: Setup) -> Figure:
    from acn.batching import models_on
    from acn.pipeline import STREAM_INDEX, STREAMS
    from acn.train.regression import pad_batch

    model, ds, ids = setup.model, setup.ds, setup.test_ids
    loc = model.cfg["localize"]
    dev = torch.device(args.device)
    loc["device"] = args.device  # ACN.localize runs its networks there
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    # the batches ACN.propose forms: videos sorted by length, <= batch_snippets per batch
    padded = {}
    for s in STREAMS:
        col = STREAM_INDEX[s]
        lengths = {v: ds.features(v)[col].shape[0] for v in ids}
        batches, cur = [], []
        for vid in sorted(ids, key=lambda v: lengths[v]):
            if cur and (len(cur) + 1) * lengths[vid] > loc["batch_snippets"]:
                batches.append(cur)
                cur = []
            cur.append(vid)
        batches.append(cur)
        padded[s] = [tuple(t.to(dev) for t in pad_batch([ds.features(v, setup.dim)[col]
                                                          for v in b]))
                     for b in batches]

    def nets_only():  # inputs already on the device: the convolutions alone
        with torch.inference_mode(), models_on(model.models, dev, STREAMS):
            for s in STREAMS:
                for feats, lens in padded[s]:
                    model.models[s].nets(feats, lens, zero_padded=True)
            sync()

    # time spent inside the nets during localize (forward hooks)
    inside = [0.0]
    starts = []
    hooks = []

    def pre_hook(module, inputs) -> None:  # hooks must return None (else they replace data)
        sync()
        starts.append(time.perf_counter())

    def post_hook(module, inputs, output) -> None:
        sync()
        inside[0] += time.perf_counter() - starts.pop()

    for s in STREAMS:
        nets = model.models[s].nets
        hooks.append(nets.register_forward_pre_hook(pre_hook))
        hooks.append(nets.register_forward_hook(post_hook))

    result = {}

    def full():
        result["dets"] = model.localize(ds, ids, ["rgb", "flow", "fused"], progress=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nets_only()  # warm-up (allocator, first-touch pages)
        base, tot, inn = [], [], []
        for r in range(args.repeats):
            for which in ((0, 1) if r % 2 == 0 else (1, 0)):
                if which == 0:
                    base.append(timed(nets_only))
                else:
                    inside[0] = 0.0
                    tot.append(timed(full))
                    inn.append(inside[0])
    ratio = med(tot) / med(base)
    dets = result["dets"]
    n = {s: sum(len(d) for d in dets[s].values()) for s in dets}
    snippets = sum(ds.features(v)[0].shape[0] for v in ids)
    if dev.type == "cuda":  # the CUDA target is absolute
        fig = Figure(1, f"localize wall time on {dev} (full ACN.localize, 3 outputs)", med(tot),
                     "s", "<= 2 s", med(tot) <= 2.0)
    else:
        fig = Figure(1, "localize overhead (full ACN.localize / regression-net forward)", ratio,
                     "x", "<= 1.25", ratio <= 1.25)
    fig.lines += [
        f"device {dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        f"data: {setup.describe}; localize {len(ids)} test videos, {snippets} snippets/stream",
        f"nets forward alone (same padded batches, both streams): median {med(base):.2f} s "
        f"of {', '.join(f'{x:.2f}' for x in base)}",
        f"full localize (streams rgb, flow, fused): median {med(tot):.2f} s of "
        f"{', '.join(f'{x:.2f}' for x in tot)}; inside the nets {med(inn):.2f} s, "
        f"everything else {med(tot) - med(inn):.2f} s",
        f"ratio of medians {ratio:.3f}; per-pair ratios "
        f"{', '.join(f'{t / b:.3f}' for t, b in zip(tot, base))}",
        f"detections: rgb {n['rgb']}, flow {n['flow']}, fused {n['fused']} "
        f"(base model {model.cfg['base']['epochs']} epoch(s))"]
    if args.profile or not fig.passed:
        fig.profile = profile_top(full)
    for h in hooks:
        h.remove()
    return fig


# ---------------------------------------------------------------------------- figure 2
def fig_scoring(args) -> Figure:
    from acn.localize import reference as ref
    from acn.localize.proposals import build_proposals, score_video
    from acn.model.coherence import proposal_terms

    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    T, D, C = (500, 256, 20) if args.quick else (2000, 1024, 20)
    anchors = [1, 2, 4, 8, 16, 32]
    n_ref = 100 if args.quick else 300
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(T, D, generator=g)  # float32, non-negative like I3D features
    scp = torch.rand(C, T, generator=g) * 0.8 + 0.15  # all above 0.1: nothing filtered
    regs = {P: torch.randn(2, T, generator=g) for P in anchors}
    classes = torch.arange(C)
    f_d, s_d, c_d = feats.to(dev), scp.to(dev), classes.to(dev)
    regs_d = {P: r.to(dev) for P, r in regs.items()}
    props = build_proposals(T, regs)
    n = len(props)

    def vectorised():
        score_video(f_d, s_d, regs_d, c_d, scp_threshold=0.1)
        sync()

    pd = build_proposals(T, regs_d)

    def terms_only():
        proposal_terms(f_d, s_d, pd.outer_start, pd.start, pd.end, pd.outer_end)
        sync()

    # reference: proposal_terms_one (all C classes of one proposal per call) on a random
    # subset stratified by anchor, extrapolated per proposal to all n
    rng = np.random.default_rng(0)
    f64, s64 = feats.double().numpy(), scp.double().numpy()
    bounds = torch.stack([props.outer_start, props.start, props.end, props.outer_end], 1)
    bounds = bounds.double().numpy()
    anchor = props.anchor.numpy()
    subset = np.concatenate([
        rng.choice(np.flatnonzero(anchor == P),
                   max(1, round(n_ref * (anchor == P).sum() / n)), replace=False)
        for P in anchors if (anchor == P).any()])

    def reference():
        for j in subset:
            ref.proposal_terms_one(f64, s64, *bounds[j])

    def standardized():
        score_video(f_d, s_d, regs_d, c_d, scp_threshold=0.1, lc_features="standardize")
        sync()

    reps = max(args.repeats, 5)
    t_ref = [timed(reference) / len(subset) * n for _ in range(reps)]
    by_threads = {}
    for th in dict.fromkeys([args.threads, 1]):  # the requested threads, then 1 thread
        torch.set_num_threads(th)
        vectorised()  # warm-up
        t_vec, t_terms, t_std = [], [], []
        for _ in range(reps):
            t_vec.append(timed(vectorised))
            t_terms.append(timed(terms_only))
            t_std.append(timed(standardized))
        by_threads[th] = (t_vec, t_terms, t_std)
    torch.set_num_threads(args.threads)
    t_vec, t_terms, t_std = by_threads[args.threads]
    ratio = med(t_ref) / med(t_vec)
    fig = Figure(2, "scoring speed-up (reference loop / vectorised score_video)", ratio, "x",
                 ">= 100x", ratio >= 100)
    fig.lines += [
        f"one video: T={T}, D={D}, C={C}, anchors {anchors} -> {n} proposals x {C} classes, "
        f"device {dev}, torch threads {args.threads}",
        f"reference (acn.localize.reference.proposal_terms_one: per proposal, float64 numpy, "
        f"a Python loop over the snippets each region overlaps, vectorised over D and the C "
        f"classes): timed on {len(subset)} random proposals (stratified by anchor), "
        f"extrapolated to all {n}: median {med(t_ref):.2f} s "
        f"({med(t_ref) / n * 1e3:.3f} ms/proposal)"]
    for th, (tv, tt, ts) in by_threads.items():
        fig.lines += [
            f"{th} torch thread(s): score_video (decode + filter + score, test mode, "
            f"lc_features=raw) median {med(tv) * 1e3:.1f} ms of "
            f"{', '.join(f'{x * 1e3:.0f}' for x in tv)} -> {med(t_ref) / med(tv):.0f}x; "
            f"proposal_terms alone {med(tt) * 1e3:.1f} ms -> {med(t_ref) / med(tt):.0f}x; "
            f"score_video with lc_features=standardize {med(ts) * 1e3:.1f} ms"]
    if args.profile or ratio < 100:
        fig.profile = profile_top(lambda: [vectorised() for _ in range(5)])
    return fig


# ---------------------------------------------------------------------------- figure 3
def fig_training(args, setup: Setup) -> Figure:
    from acn.train import outputs as bt
    from acn.model.regression import RegressionNets
    from acn.pipeline import STREAM_INDEX, STREAMS
    from acn.train.base import load_base_checkpoint
    from acn.train.regression import epoch_order, make_optimizer, pad_batch, train_regression
    from acn.train.stages import lc_source_for

    cfg, ds, ids, dim = setup.cfg, setup.ds, setup.train_ids, setup.dim

    def lc_source(stream: str, features):  # what acn train gives it: the base embedding
        net, _ = load_base_checkpoint(setup.run / "checkpoints" / f"{stream}_base.pt")
        return lc_source_for(cfg, net, features)

    acn_cfg, train_cfg = cfg["acn"], dict(cfg["train"])
    if args.quick:
        train_cfg["epochs"] = 2
    epochs = int(train_cfg["epochs"])
    ann = ds.annotations
    labels = {v: [ann.class_index(lab) for lab in ds.video(v).labels] for v in ids}
    seed = int(cfg["seed"])

    def plain(features, si) -> list[float]:
        """Same nets, optimiser, lr schedule, video order and batches; loss = mean output."""
        torch.manual_seed(seed + 10 + si)
        nets = RegressionNets(dim, list(acn_cfg["anchors"]), filters=acn_cfg["filters"],
                              zero_init=acn_cfg["zero_init"])
        opt = make_optimizer(nets, train_cfg)
        bs = int(train_cfg["batch_videos"])
        marks = [time.perf_counter()]
        for epoch in range(epochs):
            for gr in opt.param_groups:
                gr["lr"] = train_cfg["lr"] * train_cfg["lr_decay"] ** epoch
            order = epoch_order(len(ids), seed + 10 + si, epoch)
            nets.train()
            for b in range(0, len(order), bs):
                batch = [ids[i] for i in order[b:b + bs]]
                feats, lengths = pad_batch([features(v) for v in batch])
                regs = nets(feats, lengths)
                loss = torch.stack([r.mean() for r in regs.values()]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            marks.append(time.perf_counter())
        return list(np.diff(marks))

    def acn_training(features, outputs, si, stats) -> list[float]:
        marks = [time.perf_counter()]
        _, history = train_regression(
            features, ids, outputs, labels, dim, acn_cfg, train_cfg, seed=seed + 10 + si,
            progress=False, checkpoint=lambda *a: marks.append(time.perf_counter()),
            lc_source=lc_source(STREAMS[si], features))
        stats.append(history)
        return list(np.diff(marks))

    plain_t, acn_t, hist = [], [], []
    prof = None
    for si, s in enumerate(STREAMS):
        col = STREAM_INDEX[s]
        cache = {v: ds.features(v, dim)[col] for v in ids}  # both sides read from RAM
        outputs = bt.load_outputs(setup.run / "base_outputs" / s, ids)
        order = (0, 1) if si % 2 == 0 else (1, 0)  # alternate which side runs first
        for which in order:
            if which == 0:
                plain_t.append(plain(cache.__getitem__, si))
            else:
                acn_t.append(acn_training(cache.__getitem__, outputs, si, hist))
        if args.profile and si == 0:
            one = dict(train_cfg, epochs=1)
            prof = profile_top(lambda: train_regression(
                cache.__getitem__, ids, outputs, labels, dim, acn_cfg, one, seed=seed,
                progress=False, lc_source=lc_source(s, cache.__getitem__)))
    total_plain = sum(map(sum, plain_t))
    total_acn = sum(map(sum, acn_t))
    ratio = total_acn / total_plain
    per_epoch = [a / p for a_s, p_s in zip(acn_t, plain_t) for a, p in zip(a_s, p_s)]
    kept = [h["kept_proposals"] for hs in hist for h in hs]
    fig = Figure(3, "training overhead (ACN regression training / plain fwd+bwd)", ratio, "x",
                 "<= 3", ratio <= 3)
    fig.lines += [
        f"data: {len(ids)} training videos, {epochs} epochs x 2 streams, "
        f"{train_cfg['batch_videos']} videos/batch, D={dim}; features cached in RAM for both",
        f"plain (same nets, SGD, batches; loss = mean of outputs): {total_plain:.1f} s "
        f"(per stream-epoch {', '.join(f'{x:.1f}' for x in sum(plain_t, []))})",
        f"ACN train_regression: {total_acn:.1f} s "
        f"(per stream-epoch {', '.join(f'{x:.1f}' for x in sum(acn_t, []))})",
        f"per stream-epoch ratios {', '.join(f'{x:.2f}' for x in per_epoch)} "
        f"(median {med(per_epoch):.2f}); kept proposals per stream-epoch {kept}"]
    if ratio > 3 and prof is None:
        outputs = bt.load_outputs(setup.run / "base_outputs" / STREAMS[0], ids)
        cache = {v: ds.features(v, dim)[0] for v in ids}
        prof = profile_top(lambda: train_regression(
            cache.__getitem__, ids, outputs, labels, dim, acn_cfg, dict(train_cfg, epochs=1),
            seed=seed, progress=False, lc_source=lc_source(STREAMS[0], cache.__getitem__)))
    fig.profile = prof
    return fig


# ---------------------------------------------------------------------------- figure 4
def long_video_folder(root: Path, classes: list[str], minutes: float, dim: int, seed: int) -> int:
    """A canonical folder holding one synthetic test video of ``minutes``; returns T."""
    from acn.data.annotations import Annotations
    from acn.data.canonical import save_canonical
    from acn.data.synth_features import Knobs, make_world, video_features
    from acn.data.synth_timelines import SAMPLED, num_snippets, sampled_video

    secs = 60.0 * minutes
    st = replace(SAMPLED["long"], classes=tuple(classes), duration=("uniform", secs, secs, 0, 0))
    video = sampled_video(st, f"long_{int(minutes)}min", "test", seed, (1, int(minutes)))
    ann = Annotations(classes=list(classes), videos={video.id: video},
                      train_subset="validation", test_subset="test", name="long-synth")
    T = num_snippets(video.duration, video.fps, video.frames_per_snippet)
    world = make_world(list(classes), dim, seed, Knobs())  # the world the models saw
    save_canonical(root, ann, {video.id: video_features(world, video, T)})
    return T


def fig_memory(args, setup: Setup, work: Path) -> Figure:
    minutes = [1, 2, 4] if args.quick else [15, 30, 60, 120]
    env = child_env(args.threads)
    # baseline: a child that imports what `acn localize` imports, and nothing else
    _, rss0, _ = run_child(["acn.pipeline"], env, module=True)  # imports torch + acn
    # every class is localized (video_score_threshold=0), so the amount of scoring does not
    # depend on what the (untrained) base model happens to predict: the default proposal
    # source, and anchors + CAS segments (the most scoring work)
    configs = [("default config", ["acn.video_score_threshold=0"]),
               ("acn.proposals=both", ["acn.video_score_threshold=0", "acn.proposals=both"])]
    folders = {}
    for m in minutes:
        folders[m] = (work / f"long_{m}",
                      long_video_folder(work / f"long_{m}", setup.model.classes, m, setup.dim, 0))
    results = []
    for name, sets in configs:
        rows = []
        for m in minutes:
            folder, T = folders[m]
            out = work / f"long_{m}.json"
            cmd = ["acn", "localize", "--run", str(setup.run), "--data", str(folder), "--out",
                   str(out), "--quiet"]
            for item in sets:
                cmd += ["--set", item]
            wall, rss, last = run_child(cmd, env, module=True)
            rows.append((m, T, rss, wall, last))
        Ts = np.array([r[1] for r in rows], dtype=float)
        rss = np.array([r[2] for r in rows])
        slope, icpt = np.polyfit(Ts, rss, 1)
        # super-linear growth would make the slope over the second half of T steeper than
        # over the first half; allow 1.5x (+2 MiB per 1000 snippets of noise)
        mid = len(Ts) // 2
        s1 = (rss[mid] - rss[0]) / (Ts[mid] - Ts[0]) * 1000
        s2 = (rss[-1] - rss[mid]) / (Ts[-1] - Ts[mid]) * 1000
        linear = bool(s2 <= 1.5 * s1 + 2)
        results.append((name, sets, rows, slope * 1000, icpt, s1, s2, linear))
    peak = max(r[2][-1][2] for r in results)
    # pass/miss on the 2 h peak; the growth is reported (least-squares slope, and the slope of
    # each half: a super-linear term makes the second clearly steeper than the first, but
    # allocator noise of +-100 MiB between runs also moves single points)
    ok = bool(peak <= 1536)
    fig = Figure(4, f"peak RSS of `acn localize` at {minutes[-1]} min (worst config)", peak,
                 " MiB", "<= 1536 MiB at 2 h; growth reported", ok)
    fig.lines.append(f"baseline child (`python -m acn.pipeline`: imports torch + acn, nothing "
                     f"else): peak RSS {rss0:.0f} MiB; D={setup.dim}, features memory-mapped "
                     f"(canonical folder), OMP_NUM_THREADS={args.threads}")
    for name, sets, rows, slope, icpt, s1, s2, linear in results:
        fig.lines.append(f"{name} (--set {' --set '.join(sets)}):")
        for m, T, r, wall, last in rows:
            fig.lines.append(f"  {m:>4} min  T={T:>6} snippets  peak RSS {r:7.0f} MiB "
                             f"(+{r - rss0:.0f} over baseline)  wall {wall:6.1f} s  "
                             f"[{last.split(' -> ')[0]}]")
        fig.lines.append(f"  least-squares slope {slope:.1f} MiB per 1000 snippets "
                         f"(+ {icpt:.0f} MiB); first half {s1:.1f}, second half {s2:.1f} "
                         f"MiB per 1000 snippets ({'not steeper than linear' if linear else 'second half steeper'})")
    return fig


# ---------------------------------------------------------------------------- figure 5
def fig_evaluate(args, work: Path) -> Figure:
    sys.path.insert(0, str(HERE))
    from bench_evaluate import random_detections, thumos14_ground_truth

    from acn.evaluate import evaluate, load_results, save_results

    n = 10_000 if args.quick else 100_000
    gt = thumos14_ground_truth()
    dets = random_detections(gt, n, 0)
    pred = work / "pred_100k.json"
    save_results(pred, dets)
    t_load, t_eval = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        d = load_results(pred)
        t_load.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = evaluate(gt, d, protocol="thumos14")
        t_eval.append(time.perf_counter() - t0)
    from importlib import resources

    gt_dir = Path(str(resources.files("acn") / "resources" / "thumos14"
                      / "Thumos14reduced-Annotations"))
    env = child_env(args.threads)
    cli = []
    for _ in range(max(1, args.repeats // 2)):
        wall, _, _ = run_child([sys.executable, "-m", "acn", "evaluate", "--gt", str(gt_dir),
                                "--pred", str(pred), "--protocol", "thumos14",
                                "--allow-pickle"], env)
        cli.append(wall)
    _, _, _ = run_child([sys.executable, "-c", "import acn.cli"], env)
    t_start = [run_child([sys.executable, "-c", "import acn.cli, acn.evaluate"], env)[0]
               for _ in range(2)]
    total = med(t_load) + med(t_eval)
    fig = Figure(5, f"evaluation of {n} detections (load + evaluate, thumos14 protocol)",
                 total, " s", "report seconds", None)
    fig.lines += [
        f"load_results {med(t_load):.2f} s + evaluate {med(t_eval):.2f} s "
        f"({len(res.tious)} tIoUs, mAP@0.5 {100 * res.map[0.5]:.2f} %)",
        f"`acn evaluate` CLI wall time {med(cli):.2f} s, of which interpreter start + imports "
        f"{med(t_start):.2f} s (baseline child importing acn.cli + acn.evaluate)"]
    return fig


# ---------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="figure 2's device (the pipeline itself runs on the CPU)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--only", default="1,2,3,4,5", help="comma-separated figure numbers")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats per timing (default 3, quick 2)")
    ap.add_argument("--trained-base", action="store_true",
                    help="fit the base models for the configured base.epochs instead of 1")
    ap.add_argument("--profile", action="store_true", help="print cProfile tops for 1-3")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device")
    torch.set_num_threads(args.threads)
    only = {int(x) for x in args.only.split(",") if x.strip()}
    info = machine(args.threads)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="acn-bench-") as tmp:
        work = Path(tmp)
        setup = Setup(args, work) if only & {1, 3, 4} else None
        if setup is not None:
            print(f"setup: {setup.describe}", flush=True)
        steps = {1: lambda: fig_localize(args, setup), 2: lambda: fig_scoring(args),
                 3: lambda: fig_training(args, setup), 4: lambda: fig_memory(args, setup, work),
                 5: lambda: fig_evaluate(args, work)}
        for k in sorted(only):
            t0 = time.perf_counter()
            try:
                fig = steps[k]()
            except Exception as e:  # noqa: BLE001 - report and go on with the other figures
                import traceback

                traceback.print_exc()
                fig = Figure(k, f"figure {k} FAILED: {type(e).__name__}: {e}", float("nan"), "",
                             "-", False)
            figures.append(fig)
            print(f"\n{fig.headline()}   [{time.perf_counter() - t0:.0f} s, "
                  f"load avg {os.getloadavg()[0]:.2f}]")
            for line in fig.lines:
                print("    " + line)
            if fig.profile:
                print("    profile (cProfile, top by own time):")
                print("\n".join("      " + x for x in fig.profile.splitlines()))
            sys.stdout.flush()
    info["load_avg_end"] = os.getloadavg()
    print("\nsummary" + (" (--quick: sizes reduced, not the target figures)" if args.quick
                         else ""))
    for fig in figures:
        print("  " + fig.headline())
    print(f"  load average at the end: {info['load_avg_end']}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, "quick": args.quick, "figures": [
            {"number": f.number, "name": f.name, "value": float(f.value), "unit": f.unit,
             "target": f.target, "passed": None if f.passed is None else bool(f.passed),
             "lines": f.lines, "profile": f.profile}
            for f in figures]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
