"""ACN as a refiner of any weakly-supervised model's output (``acn refine``).

ACN's proposal stage needs a class activation sequence (CAS), video scores and the features,
not our base model: this module reads a CAS written by any W-TAL model, trains the regression
nets on it with the coherence loss (on the training videos, as :meth:`acn.pipeline.ACN.fit`
does on its own base model's SCP), and scores proposals on it by -L.

The CAS format (docs/refine.md): one of

- a folder with one ``VIDEO_ID.npy`` per video, a ``(T, C)`` array (snippets x classes);
- a folder with one ``VIDEO_ID.npz`` per video: ``cas`` ``(T, C)``, optionally ``attention``
  ``(T,)`` and ``video_scores`` ``(C,)``;
- one ``.npz`` file with a ``(T, C)`` array per video id (``np.savez(path, **{vid: cas})``).

``T`` must be the video's number of feature snippets and ``C`` the dataset's number of
classes, in its class order (``C + 1`` with a background column, see ``background``).
Values are probabilities, or logits with ``activation`` = ``softmax`` (over classes, the
W-TALC / CO2-Net / DELU ``element_logits``) or ``sigmoid``. Missing video scores are the mean
of each class's top ``T // k_divisor`` snippets (top-k MIL); missing attention is the maximum
class probability of each snippet.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from acn.batching import STREAM_INDEX, STREAMS, _lengths
from acn.config import dump
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.fileio import ensure_dir, read_json, write_json, write_text
from acn.train.outputs import BaseOutputs, calibrate_attention

ACTIVATIONS = ("auto", "probs", "softmax", "sigmoid")
BACKGROUND = ("none", "first", "last")

Detection = tuple[float, float, str, float]


# -- reading a CAS -----------------------------------------------------------------------------
class CasSource:
    """A CAS on disk (a folder of per-video files, or one ``.npz``), read one video at a time.

    ``source[vid]`` gives the raw arrays ``{"cas": (T, C'), "attention": (T,) | None,
    "video_scores": (C,) | None}`` of a video, before any activation."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._npz: np.lib.npyio.NpzFile | None = None
        if self.path.is_dir():
            names = {}
            for p in self.path.iterdir():
                if p.suffix in (".npy", ".npz") and not p.name.startswith("."):
                    if p.stem in names:
                        raise AcnError(f"{self.path}: video {p.stem!r} has both a .npy and a "
                                       ".npz file; keep one")
                    names[p.stem] = p
            self.files = names
        elif self.path.is_file():
            try:
                self._npz = np.load(self.path, allow_pickle=False)
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise AcnError(f"{self.path}: not a readable .npz file ({e})") from None
            if not isinstance(self._npz, np.lib.npyio.NpzFile):
                raise AcnError(f"{self.path}: one array; a CAS file must be an .npz with one "
                               "(T, C) array per video id (or pass a folder)")
            self.files = {k: self.path for k in self._npz.files}
        else:
            raise AcnError(f"{self.path}: CAS not found (a folder of VIDEO.npy/.npz files or "
                           "one .npz)")
        if not self.files:
            raise AcnError(f"{self.path}: no CAS in it (expected VIDEO_ID.npy or .npz files)")

    def __contains__(self, vid: str) -> bool:
        return vid in self.files

    def ids(self) -> list[str]:
        return sorted(self.files)

    def __getitem__(self, vid: str) -> dict[str, np.ndarray | None]:
        if vid not in self.files:
            raise AcnError(f"{self.path}: no CAS for video {vid!r} "
                           f"({len(self.files)} videos in it)")
        where = f"{self.path}[{vid}]" if self._npz is not None else str(self.files[vid])
        try:
            if self._npz is not None:
                return {"cas": self._npz[vid], "attention": None, "video_scores": None}
            p = self.files[vid]
            if p.suffix == ".npy":
                return {"cas": np.load(p, allow_pickle=False), "attention": None,
                        "video_scores": None}
            with np.load(p, allow_pickle=False) as z:
                if "cas" not in z.files:
                    raise AcnError(f"{where}: no 'cas' array (has {z.files})")
                return {k: (z[k] if k in z.files else None)
                        for k in ("cas", "attention", "video_scores")}
        except AcnError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise AcnError(f"{where}: unreadable CAS ({type(e).__name__}: {e})") from None


def topk_video_scores(scp: np.ndarray, k_divisor: float = 8.0) -> np.ndarray:
    """``(C,)`` top-k MIL video scores of a ``(C, T)`` SCP: each class's mean over its
    ``max(1, T // k_divisor)`` highest snippets."""
    T = scp.shape[1]
    k = max(1, int(T // k_divisor))
    return np.sort(scp, axis=1)[:, T - k:].mean(axis=1).astype(np.float32)


def to_outputs(raw: dict[str, np.ndarray | None], n_classes: int, length: int, where: str,
               activation: str = "auto", background: str = "none",
               k_divisor: float = 8.0) -> BaseOutputs:
    """One video's raw CAS arrays (:class:`CasSource`) as :class:`BaseOutputs` (SCP
    ``(C, T)`` probabilities), checked against the dataset: ``length`` snippets,
    ``n_classes`` classes (plus the background column ``background`` names)."""
    if activation not in ACTIVATIONS:
        raise AcnError(f"unknown CAS activation {activation!r}; choose one of {ACTIVATIONS}")
    if background not in BACKGROUND:
        raise AcnError(f"unknown background column {background!r}; choose one of {BACKGROUND}")
    cas = np.asarray(raw["cas"])
    if cas.ndim != 2:
        raise AcnError(f"{where}: CAS must be (T, C) (snippets x classes), got shape "
                       f"{cas.shape}")
    if not np.issubdtype(cas.dtype, np.number):
        raise AcnError(f"{where}: CAS is {cas.dtype}, not numbers")
    want_c = n_classes + (background != "none")
    if cas.shape[1] != want_c:
        hint = ""
        if cas.shape[1] == n_classes + 1 and background == "none":
            hint = "; one more column than classes: a background class? pass --background last"
        elif cas.shape[0] == want_c and cas.shape[1] == length:
            hint = "; it looks transposed: the CAS must be (T, C)"
        raise AcnError(f"{where}: CAS has {cas.shape[1]} classes, the dataset {n_classes}"
                       + (" plus a background column" if background != "none" else "")
                       + hint)
    if cas.shape[0] != length:
        raise AcnError(f"{where}: CAS has {cas.shape[0]} snippets, the video's features "
                       f"{length}; the CAS must be computed on the same snippets")
    if length == 0:
        raise AcnError(f"{where}: empty CAS (0 snippets)")
    cas = cas.astype(np.float64)
    if not np.isfinite(cas).all():
        bad = np.argwhere(~np.isfinite(cas))[0]
        raise AcnError(f"{where}: CAS has NaN or infinite values (first at snippet {bad[0]}, "
                       f"class column {bad[1]})")
    probs_like = cas.min() >= 0.0 and cas.max() <= 1.0
    if activation == "auto":
        if not probs_like:
            raise AcnError(f"{where}: CAS values span [{cas.min():.3g}, {cas.max():.3g}], not "
                           "probabilities: logits? pass --activation softmax (over classes) "
                           "or sigmoid")
        activation = "probs"
    if activation == "probs" and not probs_like:
        raise AcnError(f"{where}: --activation probs, but CAS values span "
                       f"[{cas.min():.3g}, {cas.max():.3g}]")
    if activation == "softmax":
        e = np.exp(cas - cas.max(axis=1, keepdims=True))
        cas = e / e.sum(axis=1, keepdims=True)
    elif activation == "sigmoid":
        cas = 1.0 / (1.0 + np.exp(-cas))
    if background == "first":
        cas = cas[:, 1:]
    elif background == "last":
        cas = cas[:, :-1]
    scp = np.ascontiguousarray(cas.T, dtype=np.float32)
    att = raw.get("attention")
    if att is None:
        att = scp.max(axis=0)
    else:
        att = np.asarray(att, dtype=np.float32).reshape(-1)
        if att.shape[0] != length or not np.isfinite(att).all():
            raise AcnError(f"{where}: 'attention' must be {length} finite values, got shape "
                           f"{np.shape(raw['attention'])}")
    vs = raw.get("video_scores")
    if vs is None:
        vs = topk_video_scores(scp, k_divisor)
    else:
        vs = np.asarray(vs, dtype=np.float32).reshape(-1)
        if vs.shape[0] != n_classes or not np.isfinite(vs).all():
            raise AcnError(f"{where}: 'video_scores' must be {n_classes} finite values, got "
                           f"shape {np.shape(raw['video_scores'])}")
    return BaseOutputs(scp=scp, attention=np.ascontiguousarray(att, dtype=np.float32),
                       video_scores=vs)


def read_cas(path: Path | CasSource, ds: Dataset, ids: Iterable[str], activation: str = "auto",
             background: str = "none", k_divisor: float = 8.0) -> dict[str, BaseOutputs]:
    """The CAS of ``ids`` as :class:`BaseOutputs`, every video checked against ``ds`` (its
    feature length and class count) before any is used."""
    src = path if isinstance(path, CasSource) else CasSource(path)
    ids = list(ids)
    missing = [v for v in ids if v not in src]
    if missing:
        raise AcnError(f"{src.path}: no CAS for {len(missing)} of {len(ids)} videos "
                       f"(e.g. {missing[:3]})")
    lengths = dict(zip(ids, _lengths(ds, ids).tolist()))
    return {v: to_outputs(src[v], len(ds.classes), lengths[v], f"{src.path}[{v}]",
                          activation, background, k_divisor) for v in ids}


def save_cas(folder: Path, outputs: dict[str, BaseOutputs]) -> Path:
    """Write ``outputs`` in the CAS format (one ``VIDEO_ID.npz`` each: ``cas`` ``(T, C)``,
    ``attention``, ``video_scores``), e.g. to refine our own base model's output."""
    import io

    from acn.fileio import write_bytes

    folder = ensure_dir(Path(folder))
    for vid, o in outputs.items():
        buf = io.BytesIO()
        np.savez(buf, cas=o.scp.T, attention=o.attention, video_scores=o.video_scores)
        write_bytes(folder / f"{vid}.npz", buf.getvalue())
    return folder


# -- the refiner --------------------------------------------------------------------------------
class Refiner:
    """ACN's regression nets and -L scoring over an external CAS.

    Args:
        cfg: a resolved config. Values left null are chosen as ``acn train`` chooses them, on
            videos carved from the training videos (when they have segment annotations):
            the streams' Lc weights, alpha, the whole-video mode and the NMS IoU
            (:func:`acn.train.select.choose_scoring`), then whether to keep the regression
            nets (:meth:`_check_regression`); otherwise their fallbacks
            (:data:`acn.selection.CHOSEN_FALLBACKS`). Anchors are sized from the CAS
            segments of the training videos when ``acn.anchors`` is null.
            ``acn.lc_features`` null or ``embedding`` needs our base models, which an
            external CAS does not come with: Lc then uses ``standardize`` (the features
            z-scored per video), and ``RUN/config.yaml`` and ``refine.json`` say so.
    """

    def __init__(self, cfg: dict):
        from acn.pipeline import ACN

        self.log: dict = {}
        if cfg["acn"]["lc_features"] in (None, "embedding"):
            self.log["lc_features"] = (f"standardize (acn.lc_features "
                                       f"{cfg['acn']['lc_features'] or 'null'}: the base "
                                       f"models' embedding is a candidate only with acn's own "
                                       f"base models; an external CAS has none)")
            cfg["acn"]["lc_features"] = "standardize"
        if cfg["localize"].get("attention_weight") is None:
            self.log["attention_weight"] = ("0 (localize.attention_weight null: the attention "
                                            "term reads our base models' attention logits; an "
                                            "external CAS's attention has no known scale)")
            cfg["localize"]["attention_weight"] = 0.0
        self.acn = ACN(cfg)  # its scoring, fusion weight and seconds conversion
        self.cfg = cfg
        self.attention_threshold: float | None = None

    def fit(self, ds: Dataset, cas: dict[str, BaseOutputs], run: Path | None = None,
            progress: bool = True) -> dict:
        """Make the choices left null (see the class) and train both streams' regression nets
        on the training videos in ``cas`` (``{video: BaseOutputs}``; labels from ``ds``); with
        ``run``, write ``RUN/config.yaml`` (the chosen values included), the nets'
        checkpoints (``RUN/checkpoints/{rgb,flow}_regression.pt``) and ``RUN/refine.json``
        (what was chosen, and why). Returns that log."""
        from acn.train import select
        from acn.train.base import stream_statistics
        from acn.train.regression import train_regression
        from acn.train.stages import StreamModel, save_checkpoint

        model, cfg = self.acn, self.cfg
        ids = sorted(cas)
        if not ids:
            raise AcnError("refine: no training videos with a CAS to fit the regression nets")
        model.classes = list(ds.classes)
        model.feature_dim = ds.validate(ids)
        labels = {v: [ds.annotations.class_index(lab, f"video {v}") for lab in ds.video(v).labels]
                  for v in ids}
        if not any(labels.values()):
            raise AcnError("refine: none of the training videos has a label")
        t0 = time.perf_counter()
        val_ids = self._carved(ds, ids)
        if val_ids and any(cfg[sec][key] is None for sec, key in select.SCORING_KEYS):
            # as acn train does: the Lc weight of each stream, alpha, the whole-video mode and
            # the NMS IoU by the carved videos' mAP of -L scoring (the CAS is both streams')
            self.log["scoring"] = select.choose_scoring(model, ds, val_ids,
                                                        {"rgb": cas, "flow": cas})
        select.fill_unchosen(model)
        if cfg["acn"]["anchors"] is None:
            select.choose_anchors(model, ds, ids, {"rgb": cas, "flow": cas}, labels)
        if val_ids and cfg["select"]["regression_check"] and cfg["acn"]["regression"]:
            self.log["regression_check"] = self._check_regression(ds, cas, ids, progress)
        self.attention_threshold = calibrate_attention(cas, cfg["base"]["attention_percentile"])
        # regression off: the loss has no gradient, the nets would stay at their zero start
        train_cfg = cfg["train"] if cfg["acn"]["regression"] else {**cfg["train"], "epochs": 0}
        for si, stream in enumerate(STREAMS):
            col = STREAM_INDEX[stream]
            stats = stream_statistics(ds, ids, stream) if cfg["data"]["standardize"] else None
            nets, history = train_regression(
                lambda v, c=col: ds.features(v, model.feature_dim)[c], ids, cas, labels,
                model.feature_dim, cfg["acn"], train_cfg, seed=int(cfg["seed"]) + 10 + si,
                progress=progress, desc=f"{stream} regression (refine)", input_stats=stats)
            model.models[stream] = StreamModel(None, nets, self.attention_threshold)  # type: ignore[arg-type]
            self.log[f"{stream}_regression"] = {"history": history}
            if run is not None:
                save_checkpoint(ensure_dir(Path(run) / "checkpoints") / f"{stream}_regression.pt",
                                {"state_dict": nets.state_dict(), "kwargs": nets.kwargs(),
                                 "config": cfg, "classes": model.classes, "stream": stream,
                                 "history": history})
        self.log.update({"train_videos": len(ids), "seconds": round(time.perf_counter() - t0, 2),
                         "attention_threshold": self.attention_threshold,
                         "anchors": cfg["acn"]["anchors"]})
        if run is not None:
            write_text(Path(run) / "config.yaml", dump(cfg))
            write_json(Path(run) / "refine.json", self.log)
        return self.log

    def _carved(self, ds: Dataset, ids: list[str]) -> list[str]:
        """The carved training videos the choices are made on (acn train's split), or none
        (``select.validation_fraction`` 0, too few videos, no segment annotations on them)."""
        from acn import selection

        frac = self.cfg["select"]["validation_fraction"]
        if frac <= 0 or len(ids) < 2:
            return []
        _, val_ids = selection.carve_ids(ids, frac, int(self.cfg["seed"]))
        return val_ids if any(ds.video(v).segments for v in val_ids) else []

    def _check_regression(self, ds: Dataset, cas: dict[str, BaseOutputs], ids: list[str],
                          progress: bool) -> dict | None:
        """``acn train``'s regression check (:func:`acn.train.select.check_regression`) on
        this CAS: nets trained on a fit split localize the carved training videos with and
        without regression; regression is kept only where it wins by more than
        ``select.regression_margin`` (average mAP) there and on ``select.regression_support``
        of bootstrap resamples. Without segment annotations on the carved videos nothing is
        checked (None). On family member 4 the nets moved Flow-less RGB CAS boundaries badly
        (-2.3 mAP@0.5 against CAS thresholding; +0.7 without them)."""
        import copy

        from acn import selection

        cfg = self.cfg
        fit_ids, val_ids = selection.carve_ids(ids, cfg["select"]["validation_fraction"],
                                               int(cfg["seed"]))
        if not fit_ids or not val_ids or not any(ds.video(v).segments for v in val_ids):
            return None
        probe = Refiner(copy.deepcopy(cfg))
        probe.cfg["select"]["regression_check"] = False
        probe.fit(ds, {v: cas[v] for v in fit_ids}, progress=progress)
        dets = {}
        for reg in (True, False):
            probe.cfg["acn"]["regression"] = reg
            dets[reg] = probe.localize(ds, cas, val_ids, progress=False)
        verdict = selection.keep_regression(ds, val_ids, dets[True], dets[False],
                                            cfg["select"]["regression_margin"],
                                            cfg["select"]["regression_support"],
                                            int(cfg["seed"]))
        cfg["acn"]["regression"] = verdict["regression"]
        return {**verdict, "fit_videos": len(fit_ids), "validation_videos": len(val_ids)}

    @classmethod
    def load(cls, run: Path) -> "Refiner":
        """The regression nets of a run folder: one written by :meth:`fit` (``acn refine
        --save-run``) or by ``acn train`` (its base models are not used)."""
        from acn.config import defaults, merge
        from acn.train.stages import StreamModel, load_checkpoint, load_nets

        run = Path(run)
        if not run.is_dir():
            raise AcnError(f"{run}: run folder not found")
        self = None
        for stream in STREAMS:
            path = run / "checkpoints" / f"{stream}_regression.pt"
            ck = load_checkpoint(path)
            if self is None:
                self = cls(merge(defaults(), ck.get("config") or {}, str(path)))
                self.acn.classes = list(ck.get("classes") or [])
            elif list(ck.get("classes") or []) != self.acn.classes:
                raise AcnError(f"{path}: trained on a different class list than the rgb nets")
            nets = load_nets(ck, path)
            self.acn.feature_dim = int(nets.kwargs()["in_dim"])
            self.acn.models[stream] = StreamModel(None, nets, float("nan"))  # type: ignore[arg-type]
        assert self is not None
        info = run / "refine.json"
        if info.is_file():
            self.attention_threshold = float(read_json(info)["attention_threshold"])
        return self

    def localize(self, ds: Dataset, cas: dict[str, BaseOutputs], ids: Sequence[str] | None = None,
                 progress: bool = True) -> dict[str, list[Detection]]:
        """Refined detections in SECONDS of ``ids`` (default: every video in ``cas``): each
        video's candidates from its CAS, boundaries moved by both streams' regression nets
        (weighted by ``localize.rgb_weight``), scored by -L with Lc on both streams'
        features, then NMS (and ``localize.whole_video``). Returns ``{video_id:
        [(start_s, end_s, label, score), ...]}``."""
        from acn.localize.video import check_short

        model, cfg = self.acn, self.cfg
        ids = list(cas) if ids is None else list(ids)
        missing = [v for v in ids if v not in cas]
        if missing:
            raise AcnError(f"refine: no CAS for {missing[:3]}")
        model.check_dataset(ds, str(ds.root or ds.annotations.name))
        ds.validate(ids, model.feature_dim)
        check_short(cfg, ids, dict(zip(ids, _lengths(ds, ids).tolist())))
        thr = self.attention_threshold
        if thr is None or not np.isfinite(thr):
            # nets from `acn train`: its threshold is on its own model's attention scale, so
            # take the same percentile of these videos' CAS attention (no labels read)
            thr = calibrate_attention({v: cas[v] for v in ids},
                                      cfg["base"]["attention_percentile"])
        w = model.rgb_weight()
        out: dict[str, list[Detection]] = {}
        with torch.inference_mode():
            for vid in tqdm(ids, desc="refine", disable=not progress, leave=False):
                pair = ds.features(vid, model.feature_dim)
                T = pair[0].shape[0]
                x = [torch.from_numpy(np.ascontiguousarray(pair[STREAM_INDEX[s]],
                                                          dtype=np.float32)) for s in STREAMS]
                regs = {}
                for s, xs in zip(STREAMS, x):
                    r = model.models[s].nets.eval()(xs[None], torch.tensor([T]))
                    regs[s] = {a: v[0, :, :T] for a, v in r.items()}
                joint = {a: (w * r + (1 - w) * regs["flow"][a]) for a, r in regs["rgb"].items()}
                p = model._score_one(x, cas[vid], joint, thr, lc_keys=list(STREAMS),
                                     group_weights=[w, 1 - w])
                out[vid] = model.to_seconds(ds, vid, p)
        return out
