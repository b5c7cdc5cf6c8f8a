"""The whole ACN method as a Python API: ``ACN(cfg).fit(ds, run)`` and ``.localize(ds, ids)``.

A run folder holds everything a trained model needs::

    RUN/config.yaml                      resolved config (seed included)
    RUN/checkpoints/{rgb,flow}_base.pt   base model: weights, kwargs, class list, threshold
    RUN/checkpoints/{rgb,flow}_regression.pt
    RUN/checkpoints/{rgb,flow}_regression_state.pt   per-epoch state for --resume
    RUN/base_outputs/{rgb,flow}/*.npz    base outputs of the TRAINING videos
    RUN/train_log.json                   per-stage figures (losses, classification mAP, time)

Every checkpoint loads with ``torch.load(..., weights_only=True)``.

The :class:`ACN` class reads as the method's outline: ``fit`` = the per-dataset choices on
carved training videos (:mod:`acn.train.select`) -> each stream's base model -> its
regression nets (:mod:`acn.train.stages`); ``localize`` = ``propose`` (the networks over
padded batches of videos, :mod:`acn.batching`) -> score -> NMS (:mod:`acn.localize.video`)
-> fuse the streams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from acn import batching
from acn.batching import STREAM_INDEX, STREAMS, inference_device
from acn.config import defaults, dump, merge
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.fileio import ensure_dir, read_json, write_json, write_text
from acn.localize.video import (
    StreamProposals,
    check_short,
    fuse_proposals,
    score_candidates,
    suppress,
)
from acn.model.coherence import PrefixIntegral
from acn.train import distributed as dist
from acn.train import select, stages
from acn.train.base import load_base_checkpoint, predict_base, stream_statistics
from acn.train.outputs import BaseOutputs, mean_outputs
from acn.train.stages import StreamModel

#: Detections of one video: (start_s, end_s, label, score) tuples.
Detection = tuple[float, float, str, float]


def splits(ds: Dataset, cfg: dict) -> tuple[str, str]:
    ann = ds.annotations
    return (cfg["data"]["train_subset"] or ann.train_subset,
            cfg["data"]["test_subset"] or ann.test_subset)


class ACN:
    """Train and apply ACN on a :class:`~acn.data.features.Dataset`.

    Args:
        cfg: a resolved config (:func:`acn.config.resolve`).
    """

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.classes: list[str] = []
        self.feature_dim: int | None = None
        self.models: dict[str, StreamModel] = {}
        self.log: dict = {}
        self.last_outputs: dict[str, dict[str, BaseOutputs]] = {}
        self._outputs_of: Dataset | None = None
        # one padding buffer per stream, kept between localize calls (up to
        # localize.batch_snippets x D floats each): a fresh one page-faults in every call
        self._pad_buffers: dict[str, list[np.ndarray]] = {}

    def __getstate__(self) -> dict:
        # the padding buffers are scratch memory (hundreds of MB): never pickled or copied
        return {**self.__dict__, "_pad_buffers": {}}

    # ------------------------------------------------------------------ training
    def fit(self, ds: Dataset, run: Path, progress: bool = True, resume: bool = False,
            stage: str = "all", base_from: Path | None = None) -> dict:
        """Train base models and regression nets for both streams on the TRAINING subset.

        ``stage``: ``"base"`` stops after the base models; ``"all"`` trains everything.
        ``resume``: reuse finished stages and per-epoch regression state found in ``run``.
        ``base_from``: reuse the base models (and their training outputs) of another run
        folder, trained on the same data (ablations vary only the regression stage).
        Returns the training log (also written to ``RUN/train_log.json``).

        Under ``torchrun`` every rank calls ``fit``: each global mini-batch is split across
        ranks (:mod:`acn.train.distributed`), and only rank 0 writes files.
        """
        dist.init_from_env()
        main = dist.is_main()
        progress = progress and main
        cfg = self.cfg
        seed = int(cfg["seed"])
        train_subset, _ = splits(ds, cfg)
        train_videos = ds.subset(train_subset)
        ids = [v.id for v in train_videos]
        self.classes = list(ds.classes)
        # Every training video is checked before the run folder is touched: bad data fails
        # fast, naming the file, and leaves no half-made run behind.
        self.feature_dim = ds.validate(ids)
        run = ensure_dir(Path(run))
        ckdir = ensure_dir(run / "checkpoints")
        if main:
            write_text(run / "config.yaml", dump(cfg))
        log_path = run / "train_log.json"
        self.log = read_json(log_path) if (resume and log_path.is_file()) else {}
        self.log.update({"train_subset": train_subset, "train_videos": len(ids),
                         "classes": len(self.classes), "feature_dim": self.feature_dim, "seed": seed})
        base_cfg = {k: v for k, v in cfg["base"].items()
                    if k not in ("attention_percentile", "per_stream")}
        labels = {v.id: [ds.annotations.class_index(lab, f"video {v.id}") for lab in v.labels]
                  for v in train_videos}
        src = Path(base_from) if base_from is not None else (run if resume else None)
        have = {s: src is not None and (src / "checkpoints" / f"{s}_base.pt").is_file()
                for s in STREAMS}
        rounds = int(cfg["second_stage"]["rounds"])
        if rounds > 0 and not all(have.values()):
            # a second-stage round labels from BOTH streams' models of the round before: an
            # unfinished run starts its rounds again rather than mix rounds
            have = {s: False for s in STREAMS}
        stats: dict[str, tuple[np.ndarray, np.ndarray] | None] = {s: None for s in STREAMS}
        if not all(have.values()):
            if cfg["data"]["standardize"]:
                stats = {s: stream_statistics(ds, ids, s) for s in STREAMS if not have[s]}
            # per-dataset choices on carved training videos (acn.train.select); a resumed
            # run's config.yaml holds what its first attempt chose
            if select.selection_pending(self) and not any(have.values()):
                select.select(self, ds, ids, base_cfg, stats, progress)
            if not any(have.values()):
                select.fill_unchosen(self)
            base_cfg = {k: v for k, v in cfg["base"].items()  # with what selection chose
                        if k not in ("attention_percentile", "per_stream")}
            if main:  # the chosen values are the run's config from now on
                write_text(run / "config.yaml", dump(cfg))
                write_json(log_path, self.log)
        # 1. the base model of each stream: trained here, or finished in a run folder; with
        # second_stage.rounds, trained again on snippet pseudo-labels from the round before
        all_outputs: dict[str, dict[str, BaseOutputs]] = {}
        last = 0 if any(have.values()) else rounds
        for rnd in range(last + 1):
            targets = None
            if rnd > 0:
                targets, info = stages.second_stage_labels(self, ds, ids, all_outputs)
                info["base_maps_before"] = {s: self.log[f"{s}_base"]["train_classification_map"]
                                            for s in STREAMS}
                self.log.setdefault("second_stage", {})[f"round_{rnd}"] = info
            for si, stream in enumerate(STREAMS):
                base_path = ckdir / (f"{stream}_base.pt" if rnd == last
                                     else f"{stream}_base_round{rnd}.pt")
                if have[stream]:
                    net, outputs, threshold = stages.reuse_base(self, src, run, stream, ids,
                                                                base_path, main)
                else:
                    net, outputs, threshold = stages.fit_base(
                        self, ds, ids, stream, si, base_cfg, stats[stream], run, base_path,
                        progress, main, targets)
                    if main:
                        write_json(log_path, self.log)
                self.models[stream] = StreamModel(net, None, threshold)  # type: ignore[arg-type]
                all_outputs[stream] = outputs
        select.fill_unchosen(self)  # base models from elsewhere made before these keys existed
        if cfg["acn"]["anchors"] is None:  # anchor sizes from the data (acn.selection)
            select.choose_anchors(self, ds, ids, all_outputs, labels)
            if main:
                write_text(run / "config.yaml", dump(cfg))
                write_json(log_path, self.log)
        if stage == "base":
            dist.barrier()
            return self.log
        # 2. the regression nets, after both base models: with acn.scp_source = mean, each
        # stream's proposals are scored on the mean of both streams' SCP.
        for si, stream in enumerate(STREAMS):
            outputs = self.scored_outputs(all_outputs, stream)
            self.models[stream].nets = stages.fit_regression(self, ds, ids, stream, si, outputs,
                                                             labels, ckdir, resume, progress)
            if main:
                write_json(log_path, self.log)
        dist.barrier()  # rank 0's files are complete before any rank goes on
        return self.log

    @classmethod
    def load(cls, run: Path) -> "ACN":
        """Load a trained run folder (weights_only checkpoints)."""
        run = Path(run)
        if not run.is_dir():
            raise AcnError(f"{run}: run folder not found")
        self: ACN | None = None
        for stream in STREAMS:
            base_path = run / "checkpoints" / f"{stream}_base.pt"
            if not base_path.is_file():
                raise AcnError(f"{base_path}: checkpoint not found (train with `acn train`)")
            model, meta = load_base_checkpoint(base_path)
            if self is None:
                # keys added since the run was trained take today's defaults; the regression
                # checkpoint's config is the final one (anchors chosen after the base models)
                reg_cfg = stages.load_checkpoint(run / "checkpoints" / f"{stream}_regression.pt")
                self = cls(merge(defaults(), reg_cfg.get("config") or meta["config"],
                                 str(base_path)))
                self.classes = list(meta["classes"])
                self.feature_dim = int(meta["feature_dim"])
            else:
                stages.check_compatible(self, meta, base_path)
            reg_path = run / "checkpoints" / f"{stream}_regression.pt"
            ck = stages.load_checkpoint(reg_path)
            if ck.get("classes") != self.classes:
                raise AcnError(f"{reg_path}: trained on a different class list than {base_path}")
            self.models[stream] = StreamModel(model, stages.load_nets(ck, reg_path),
                                              float(meta["attention_threshold"]))
        assert self is not None
        return self

    # ------------------------------------------------------------------ inference
    def localize(self, ds: Dataset, video_ids: Iterable[str], streams: Iterable[str] = ("fused",),
                 progress: bool = True, keep_outputs: bool = False
                 ) -> dict[str, dict[str, list[Detection]]]:
        """Detections in SECONDS for each requested stream (``rgb``, ``flow``, ``fused``).

        ``fused`` follows ``localize.fusion``: ``paper`` (Sec. 3.4: Flow proposals plus
        discounted, non-overlapping RGB ones) or ``joint`` (one proposal set scored on both
        streams, see :meth:`propose`). With ``keep_outputs`` the base outputs of every video
        are kept in ``self.last_outputs`` (``{stream: {video_id: BaseOutputs}}``).

        Returns ``{stream: {video_id: [(start_s, end_s, label, score), ...]}}``.
        """
        self.check_dataset(ds, str(ds.root or ds.annotations.name))
        ids = list(video_ids)
        streams = list(streams)
        bad = sorted(set(streams) - {"rgb", "flow", "fused"})
        if bad:
            raise AcnError(f"localize: unknown streams {bad} (rgb, flow, fused)")
        inference_device(self.cfg["localize"]["device"])  # usable here, before any work
        ds.validate(ids, self.feature_dim)  # every video's features, before any work
        joint = self.cfg["localize"]["fusion"] == "joint"
        want = [s for s in ("rgb", "flow") if s in streams or ("fused" in streams and not joint)]
        if "fused" in streams and joint:
            want.append("joint")
        props, self.last_outputs = self.propose(ds, ids, want, progress=progress,
                                                keep_outputs=keep_outputs)
        self._outputs_of = ds if keep_outputs else None
        out: dict[str, dict[str, list[Detection]]] = {}
        for s in streams:
            dets = {}
            for vid in ids:
                if s != "fused":
                    p = props[s][vid]
                elif joint:
                    p = props["joint"][vid]
                else:
                    p = self.fuse(props["rgb"][vid], props["flow"][vid])
                dets[vid] = self.to_seconds(ds, vid, p)
            out[s] = dets
        return out

    def propose(self, ds: Dataset, ids: list[str], want: Iterable[str],
                progress: bool = False, keep_outputs: bool = False,
                ) -> tuple[dict[str, dict[str, StreamProposals]], dict[str, dict[str, BaseOutputs]]]:
        """Post-NMS proposals (snippets) of ``want`` ⊆ {``rgb``, ``flow``, ``joint``} for ``ids``.

        One pass over the data: each video's features are read once, and each padded batch of
        videos of similar length goes through both streams' base models and regression nets
        before its proposals are scored. ``joint`` scores one proposal set per video on both
        streams at once (``localize.fusion = joint``): CAS segments of the mean SCP, boundaries
        moved by the mean of the two streams' regressions, Lc the mean of the streams' Lc (on
        their features, or on their base models' embedding with ``acn.lc_features:
        embedding``).

        Returns ``(proposals {kind: {video_id: StreamProposals}}, base outputs {stream:
        {video_id: BaseOutputs}})``; the base outputs are kept only with ``keep_outputs``.
        """
        cfg, loc = self.cfg, self.cfg["localize"]
        want = list(dict.fromkeys(want))
        bad = sorted(set(want) - {"rgb", "flow", "joint"})
        if bad:
            raise AcnError(f"propose: unknown proposal kinds {bad} (rgb, flow, joint)")
        need_both = "joint" in want or cfg["acn"]["scp_source"] == "mean"
        run = [s for s in STREAMS if need_both or s in want]
        lengths = dict(zip(ids, batching._lengths(ds, ids).tolist()))
        check_short(cfg, ids, lengths)
        batches = batching.length_batches(ids, lengths, loc["batch_snippets"])
        props: dict[str, dict[str, StreamProposals]] = {k: {} for k in want}
        kept: dict[str, dict[str, BaseOutputs]] = {s: {} for s in run}
        dev = inference_device(loc["device"])
        share_lc = "joint" in want and ("rgb" in want or "flow" in want)
        embed_lc = cfg["acn"]["lc_features"] == "embedding"
        # one padding buffer per stream, reused by every batch (a batch's features are not
        # referenced once its proposals are scored) and by later calls
        with torch.inference_mode(), batching.models_on(self.models, dev, run), \
                batching.padding_buffers(self._pad_buffers, run) as buffers:
            for batch in tqdm(batches, desc="localize", disable=not progress, leave=False):
                # not copied: pad_batch copies them into its buffer
                pairs = [ds.features(v, self.feature_dim, copy=False) for v in batch]
                x, lc_x, regs, outs = {}, {}, {}, {}
                for s in run:
                    sm = self.models[s]
                    # padded on the CPU (scoring reads it there), the networks on ``dev``
                    x[s], mask = batching.pad_batch([p[STREAM_INDEX[s]] for p in pairs],
                                                    buffer=buffers[s])
                    xd, md = x[s].to(dev), mask.to(dev)
                    # pad_batch zero-fills the padding: neither model re-masks the input
                    res = sm.base.eval()(xd, md, zero_padded=True)
                    # Lc's features: the input, or the base model's embedding of it
                    lc_x[s] = (sm.base.embed(xd, md, zero_padded=True).float().cpu()
                               if embed_lc else x[s])
                    regs[s] = ({a: r.cpu() for a, r in
                                sm.nets(xd, md.sum(1), zero_padded=True).items()}
                               if cfg["acn"]["regression"] else None)
                    scp, att = res.scp.float().cpu().numpy(), res.attention.float().cpu().numpy()
                    vs = res.video_scores.float().cpu().numpy()
                    outs[s] = [BaseOutputs(scp=np.ascontiguousarray(scp[i, :, : lengths[v]]),
                                           attention=np.ascontiguousarray(att[i, : lengths[v]]),
                                           video_scores=vs[i].copy())
                               for i, v in enumerate(batch)]
                for i, vid in enumerate(batch):
                    T = lengths[vid]
                    # this video's Lc tables per stream, kept only where a second scoring
                    # (joint after per-stream) reuses them: they cost memory on long videos
                    lc_cache: dict[str, PrefixIntegral] | None = {} if share_lc else None
                    base = {s: {vid: outs[s][i]} for s in run}
                    if keep_outputs:
                        for s in run:
                            kept[s][vid] = outs[s][i]
                    r_i = {s: {a: (r[i, :, :T] if regs[s] is not None else None)
                               for a, r in (regs[s] or dict.fromkeys(cfg["acn"]["anchors"])).items()}
                           for s in run}
                    for s in ("rgb", "flow"):
                        if s in want:
                            props[s][vid] = self._score_one(
                                lc_x[s][i, :T], self.scored_outputs(base, s)[vid], r_i[s],
                                self.models[s].attention_threshold,
                                lc_cache=lc_cache, lc_keys=[s])
                    if "joint" in want:
                        w = self.rgb_weight()
                        regs_j = {a: (None if r is None else w * r + (1 - w) * r_i["flow"][a])
                                  for a, r in r_i["rgb"].items()}
                        props["joint"][vid] = self._score_one(
                            [lc_x["rgb"][i, :T], lc_x["flow"][i, :T]],
                            mean_outputs(base, vid, w), regs_j,
                            w * self.models["rgb"].attention_threshold
                            + (1 - w) * self.models["flow"].attention_threshold,
                            candidate_scps=([outs["rgb"][i].scp, outs["flow"][i].scp]
                                            if loc["joint_candidates"] == "all" else None),
                            lc_cache=lc_cache, lc_keys=["rgb", "flow"], group_weights=[w, 1 - w])
        return props, kept

    def _score_one(self, feats: torch.Tensor | list[torch.Tensor], out: BaseOutputs,
                   regs: dict[int, torch.Tensor], attention_threshold: float,
                   candidate_scps: list[np.ndarray] | None = None,
                   lc_cache: dict[str, PrefixIntegral] | None = None,
                   lc_keys: list[str] | None = None,
                   group_weights: list[float] | None = None) -> StreamProposals:
        """One video's proposals: its candidates scored by -L (the arguments are those of
        :func:`acn.localize.video.score_candidates`), then NMS."""
        scored = score_candidates(self.cfg, feats, out, regs, attention_threshold,
                                  candidate_scps, lc_cache, lc_keys, group_weights)
        return suppress(scored, self.cfg)

    def fuse(self, rgb: StreamProposals, flow: StreamProposals) -> StreamProposals:
        """Sec. 3.4: all Flow proposals + discounted RGB ones not overlapping same-class Flow."""
        return fuse_proposals(rgb, flow, self.cfg)

    def baseline(self, ds: Dataset, ids: list[str], stream: str,
                 cfg: dict | None = None) -> dict[str, list[Detection]]:
        """CAS-thresholding detections from this run's own base models (the in-harness
        baseline): ``stream`` is ``rgb``, ``flow`` or ``both`` (mean of the two streams' CAS)."""
        from acn.baselines import cas_detections

        have = self.last_outputs if self._outputs_of is ds else {}
        def outs(s):  # reuse the outputs kept by the last localize(keep_outputs=True)
            if s in have and all(v in have[s] for v in ids):
                return have[s]
            return self.base_outputs(ds, ids, s)
        if stream == "both":
            both = {s: outs(s) for s in STREAMS}
            outputs = {v: mean_outputs(both, v, self.rgb_weight()) for v in ids}
        else:
            outputs = outs(stream)
        return cas_detections(outputs, ds, cfg)

    def check_dataset(self, ds: Dataset, where: str) -> None:
        if list(ds.classes) != self.classes:
            extra = sorted(set(ds.classes) - set(self.classes))
            raise AcnError(f"{where}: the dataset's class list differs from the model's "
                           f"({len(ds.classes)} vs {len(self.classes)} classes"
                           + (f"; unknown to the model: {extra[:5]}" if extra else "") + ")")

    def base_outputs(self, ds: Dataset, ids: list[str], stream: str) -> dict[str, BaseOutputs]:
        return predict_base(self.models[stream].base, ds, ids, stream)

    def scored_outputs(self, outputs: dict[str, dict[str, BaseOutputs]],
                       stream: str) -> dict[str, BaseOutputs]:
        """The SCP/video scores a stream's proposals are scored on: its own (paper) or the mean
        of both streams' (``acn.scp_source = mean``); attention stays the stream's own."""
        if self.cfg["acn"]["scp_source"] == "stream":
            return outputs[stream]
        w = self.rgb_weight()
        return {v: BaseOutputs(scp=mean_outputs(outputs, v, w).scp,
                                  attention=o.attention,
                                  video_scores=mean_outputs(outputs, v, w).video_scores)
                for v, o in outputs[stream].items()}

    def rgb_weight(self) -> float:
        """``localize.rgb_weight`` (RGB's share of the joint fusion, Flow's is ``1 - w``);
        None (not chosen, e.g. selection switched off) is 0.5."""
        w = self.cfg["localize"]["rgb_weight"]
        w = 0.5 if w is None else w
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise AcnError(f"localize.rgb_weight must be a number in [0, 1] or null, got {w!r}")
        return float(w)

    def to_seconds(self, ds: Dataset, vid: str, p: StreamProposals) -> list[Detection]:
        video = ds.video(vid)
        scale = video.frames_per_snippet / video.fps
        order = np.argsort(-p.scores, kind="stable")
        return [(float(p.segments[i, 0] * scale), float(min(p.segments[i, 1] * scale,
                                                              video.duration or np.inf)),
                 self.classes[int(p.labels[i])], float(p.scores[i])) for i in order]
