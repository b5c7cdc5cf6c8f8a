"""``acn ablate``: the paper's Tables 3-5 (and the in-harness baselines) on any dataset.

One base model per stream is trained once (and one of the other head for its CAS
baseline); every variant retrains only the regression networks (as the paper varies alpha and the scoring "during both training and evaluating")
and is evaluated on the test subset. A "Stages" table gives what each stage adds: the base
models' CAS thresholding and ACN on them, without and with the second stage
(``second_stage.rounds``; base models trained again for the setting the config does not
use), and a "Boundaries" table gives ACN fused with its CAS segments' boundaries inside
snippets and on whole snippets (``acn.cas_subsnippet``, the same nets), a "Long candidates"
table the same nets without and with the candidates of the smoothed CAS
(``acn.long_candidates``), a "Valley term" table the same nets without and with the
valley term (``localize.valley``), and an "Lc
features" table the same nets' proposals scored with Lc on the base models' embedding, the
features z-scored per video and the raw features (``acn.lc_features``), and an "Attention
term" table the same nets at each of ``select.attention_weights`` (and the run's own
``localize.attention_weight``). Output: one Markdown file with every table, and a JSON of
every figure.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from acn.data.features import Dataset
from acn.fileio import ensure_dir, write_json, write_text
from acn.localize.video import long_candidates_on, valley_weight
from acn.pipeline import ACN
from acn.selection import HELDOUT, carve_ids, carved_dataset, default_tious_for

ALPHAS = (0.4, 0.5, 0.6, 0.7, 0.8)
SCORINGS = (("coherence", "-Lc"), ("oic", "-L_OIC"), ("both", "-L"))
LC_FEATURES = (("embedding", "the base models' embedding"),
               ("standardize", "the features z-scored per video"), ("raw", "the raw features"))


def _off_and_on(m: ACN, key: tuple[str, str], resolved_on: bool, label: str,
                localize: Callable[[], Any]) -> dict:
    """Rows ``"ACN fused, {label} off|on"`` of the same nets with an auto/on/off setting
    ``key`` forced each way (``localize()`` evaluates ``m`` as it is set); the row the run's
    own setting resolves to (``resolved_on``) is marked. ``m.cfg`` is restored."""
    sec, name = key
    own = m.cfg[sec][name]
    rows = {}
    try:
        for mode in ("off", "on"):
            m.cfg[sec][name] = mode
            mark = f" (the run's: {own})" if (mode == "on") == resolved_on else ""
            rows[f"ACN fused, {label} {mode}{mark}"] = localize()
    finally:
        m.cfg[sec][name] = own
    return rows


def choose_protocol(ds: Dataset, subset: str) -> str:
    """THUMOS14's protocol where it is defined (every class has test ground truth), else
    ActivityNet's (mean over the classes with ground truth)."""
    have = {s.label for v in ds.subset(subset) for s in v.segments}
    return "thumos14" if have >= set(ds.classes) else "activitynet"


def carve_validation(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """A copy of ``ds`` in which ``fraction`` of the training videos (drawn by video, seeded)
    form a ``heldout`` subset that becomes the test subset: model selection never reads the
    real test split."""
    ann = ds.annotations
    _, val = carve_ids([v.id for v in ann.subset(ann.train_subset)], fraction, seed)
    return carved_dataset(ds, val)


def run_ablation(ds: Dataset, cfg: dict, out: Path, protocol: str | None = None,
                 progress: bool = False, tious: tuple[float, ...] | None = None,
                 validation_fraction: float = 0.0) -> str:
    """Train and evaluate every variant; with ``validation_fraction`` > 0 evaluate on a split
    carved from the training videos instead of the test subset (for choosing a config)."""
    from acn.evaluate import evaluate
    from acn.report import map_table

    out = ensure_dir(Path(out))
    if validation_fraction > 0:
        ds = carve_validation(ds, validation_fraction, int(cfg["seed"]))
        cfg = copy.deepcopy(cfg)
        cfg["data"]["train_subset"], cfg["data"]["test_subset"] = ds.annotations.train_subset, HELDOUT
    test = cfg["data"]["test_subset"] or ds.annotations.test_subset
    protocol = protocol or choose_protocol(ds, test)
    tious = tuple(tious or default_tious_for(ds))
    ids = [v.id for v in ds.subset(test)]
    base_run = out / "base"
    base = ACN(cfg)
    base.fit(ds, base_run, progress=progress, stage="base", resume=True)

    cache: dict[str, dict] = {}
    run_of: dict[str, Path] = {}  # variant key -> the run folder its nets were trained in

    def variant(name: str, base_from: Path = base_run, rounds: int | None = None,
                **acn_over) -> dict:
        """Train the regression nets with these acn.* values on the base models of
        ``base_from`` (trained with ``rounds`` second-stage rounds); detections of all
        streams."""
        c = copy.deepcopy(cfg)
        c["acn"].update(acn_over)
        if rounds is not None:
            c["second_stage"]["rounds"] = rounds
        # a variant equal to the config trains once
        key = repr((sorted(c["acn"].items()), str(base_from)))
        if key not in cache:
            m = ACN(c)
            m.fit(ds, out / name, progress=progress, base_from=base_from)
            cache[key] = m.localize(ds, ids, ["rgb", "flow", "fused"], progress=progress)
            run_of[key] = out / name
        run_of[name] = run_of[key]
        return cache[key]

    def ev(dets) -> object:
        return evaluate(ds.annotations, dets, test, protocol, tious=tious)

    results: dict[str, dict] = {}
    sections = [f"# Ablation on {ds.annotations.name} ({test} subset, {len(ids)} videos), "
                f"{protocol} protocol, mAP (%), seed {cfg['seed']}\n"]

    # Table 3: alpha, mAP@0.5 per stream
    key05 = min(tious, key=lambda t: abs(t - 0.5))
    rows = ["| stream | " + " | ".join(f"α={a}" for a in ALPHAS) + " |", "|---" * (len(ALPHAS) + 1) + "|"]
    alpha_res = {a: {s: ev(d) for s, d in variant(f"alpha_{a}", alpha=a, score_terms="both").items()}
                 for a in ALPHAS}
    for s in ("rgb", "flow", "fused"):
        rows.append(f"| {s} | " + " | ".join(f"{100 * alpha_res[a][s].map[key05]:.1f}" for a in ALPHAS) + " |")
    sections.append(f"## Sensitivity to α (Table 3), mAP@{key05:g}\n\n" + "\n".join(rows))
    results["alpha"] = {str(a): {s: r.to_json() for s, r in v.items()} for a, v in alpha_res.items()}

    # Tables 4-5: scoring by -Lc, -L_OIC, -L per stream
    alpha = cfg["acn"]["alpha"]
    score_res = {}
    for terms, label in SCORINGS:
        d = variant(f"score_{terms}", alpha=alpha, score_terms=terms)
        score_res[label] = {s: ev(d[s]) for s in d}
    for s in ("rgb", "flow", "fused"):
        sections.append(f"## Scoring, {s} stream (Tables 4-5), α={alpha}\n\n" +
                        map_table({label: score_res[label][s] for _, label in SCORINGS}))
    results["scoring"] = {k: {s: r.to_json() for s, r in v.items()} for k, v in score_res.items()}

    # Streams and baselines at the config's own settings
    own = variant("config", **{})
    rows_ = {f"ACN {s}": ev(own[s]) for s in ("rgb", "flow", "fused")}
    # Both kinds of weakly-supervised base model give a CAS-thresholding baseline: the config's
    # own and the other head (top-k MIL is the W-TALC / STPN style, soft selection the
    # UntrimmedNet style), each thresholded the same way
    head = cfg["base"]["head"]
    other_cfg = copy.deepcopy(cfg)
    other_cfg["base"]["head"] = other = "untrimmednet" if head == "topk_mil" else "topk_mil"
    other_model = ACN(other_cfg)
    other_model.fit(ds, out / f"base_{other}", progress=progress, stage="base", resume=True)
    for h, model in ((head, base), (other, other_model)):
        for s in ("rgb", "flow", "both"):
            rows_[f"CAS baseline ({h}) {s}"] = ev(model.baseline(ds, ids, s))
    sections.append("## Streams and baselines (config as given)\n\n" + map_table(rows_))
    results["streams"] = {k: r.to_json() for k, r in rows_.items()}

    # Boundaries: the config's CAS segments with boundaries where the CAS crosses each level
    # between two snippets, or on whole snippets (acn.cas_subsnippet); the same trained nets
    m = ACN.load(run_of["config"])
    if cfg["acn"]["proposals"] in ("cas", "both"):
        bound_rows = {}
        for sub in (True, False):
            m.cfg["acn"]["cas_subsnippet"] = sub
            label = "inside snippets" if sub else "on whole snippets"
            bound_rows[f"ACN fused, CAS segment boundaries {label}"] = ev(
                m.localize(ds, ids, ["fused"], progress=progress)["fused"])
        sections.append("## Boundaries (acn.cas_subsnippet)\n\n" + map_table(bound_rows))
        results["boundaries"] = {k: r.to_json() for k, r in bound_rows.items()}
        m.cfg["acn"]["cas_subsnippet"] = cfg["acn"]["cas_subsnippet"]

    # Candidates of the smoothed CAS (acn.long_candidates): the same nets with them off and on
    if cfg["acn"]["proposals"] in ("cas", "both"):
        long_rows = _off_and_on(
            m, ("acn", "long_candidates"), long_candidates_on(m.cfg["acn"], m.cfg["localize"]),
            "candidates of the smoothed CAS",
            lambda: ev(m.localize(ds, ids, ["fused"], progress=progress)["fused"]))
        sections.append("## Long candidates (acn.long_candidates)\n\n" + map_table(long_rows))
        results["long_candidates"] = {k: r.to_json() for k, r in long_rows.items()}

    # The valley term (localize.valley): the same nets with it off and on
    valley_rows = _off_and_on(
        m, ("localize", "valley"), valley_weight(m.cfg["localize"]) > 0, "valley term",
        lambda: ev(m.localize(ds, ids, ["fused"], progress=progress)["fused"]))
    sections.append("## Valley term (localize.valley)\n\n" + map_table(valley_rows))
    results["valley"] = {k: r.to_json() for k, r in valley_rows.items()}

    # Lc's features at test time: the base models' embedding, the input z-scored per video or
    # the raw input (acn.lc_features); the same trained nets, so only the scoring differs
    lc_rows, own_lc = {}, m.cfg["acn"]["lc_features"]
    for lc, label in LC_FEATURES:
        m.cfg["acn"]["lc_features"] = lc
        lc_rows[f"ACN fused, Lc on {label}"] = ev(m.localize(ds, ids, ["fused"],
                                                             progress=progress)["fused"])
    sections.append(f"## Lc features (acn.lc_features; nets trained with "
                    f"{cfg['acn']['lc_features']}), α={m.cfg['acn']['alpha']}\n\n"
                    + map_table(lc_rows))
    results["lc_features"] = {k: r.to_json() for k, r in lc_rows.items()}
    m.cfg["acn"]["lc_features"] = own_lc

    # The attention term (localize.attention_weight): the same nets, each candidate weight
    chosen_att = m.cfg["localize"].get("attention_weight")
    att_rows = {}
    for w in sorted({*map(float, cfg["select"]["attention_weights"]), float(chosen_att or 0)}):
        m.cfg["localize"]["attention_weight"] = w
        mark = " (the run's)" if w == float(chosen_att or 0) else ""
        att_rows[f"ACN fused, attention weight {w:g}{mark}"] = ev(
            m.localize(ds, ids, ["fused"], progress=progress)["fused"])
    m.cfg["localize"]["attention_weight"] = chosen_att
    sections.append("## Attention term (localize.attention_weight)\n\n" + map_table(att_rows))
    results["attention"] = {k: r.to_json() for k, r in att_rows.items()}

    # Stages: the base models alone (CAS thresholding), ACN on them, without and with the
    # second stage (the config's rounds, or one round where it runs none)
    rounds = int(cfg["second_stage"]["rounds"])
    stage_rows = {}
    for r in sorted({0, max(rounds, 1)}):
        if r == rounds:
            model_r, run_r, dets_r = base, base_run, own
        else:
            c = copy.deepcopy(cfg)
            c["second_stage"]["rounds"] = r
            model_r, run_r = ACN(c), out / f"base_second_stage_{r}"
            model_r.fit(ds, run_r, progress=progress, stage="base", resume=True)
            dets_r = variant(f"config_second_stage_{r}", base_from=run_r, rounds=r)
        what = "first stage only" if r == 0 else f"second stage, {r} round(s)"
        stage_rows[f"{what}: CAS baseline (both streams)"] = ev(model_r.baseline(ds, ids, "both"))
        stage_rows[f"{what}: ACN fused"] = ev(dets_r["fused"])
    sections.append("## Stages (second_stage.rounds)\n\n" + map_table(stage_rows))
    results["stages"] = {k: r.to_json() for k, r in stage_rows.items()}

    table = "\n\n".join(sections) + "\n"
    write_text(out / "ablation.md", table)
    write_json(out / "ablation.json", results)
    return table
