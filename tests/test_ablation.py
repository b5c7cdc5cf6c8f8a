"""`acn ablate`: the paper's tables on any dataset, and validation carved from training."""

from __future__ import annotations

import pytest

from acn.ablation import HELDOUT, carve_validation
from acn.cli import main

from conftest import FAST_SET


def test_carved_validation_uses_training_videos_only(tiny):
    val = carve_validation(tiny, 0.25, seed=3)
    held = [v for v in val.annotations.videos.values() if v.subset == HELDOUT]
    assert len(held) == 6 and val.annotations.test_subset == HELDOUT
    assert all(tiny.video(v.id).subset == tiny.annotations.train_subset for v in held)
    assert {v.id for v in held} == {v.id for v in carve_validation(tiny, 0.25, 3).subset(HELDOUT)}
    assert tiny.annotations.test_subset == "test"  # the original is untouched


@pytest.mark.slow
def test_ablate_writes_every_table(tiny_folder, tmp_path):
    sets = sum((["--set", s] for s in FAST_SET + ["base.epochs=5", "train.epochs=1"]), [])
    out = tmp_path / "abl"
    assert main(["ablate", "--data", str(tiny_folder), "--out", str(out),
                 "--validation-fraction", "0.25", "--protocol", "activitynet", *sets]) == 0
    text = (out / "ablation.md").read_text()
    for heading in ("Sensitivity to α", "Scoring, rgb stream", "Scoring, flow stream",
                    "Streams and baselines", "CAS baseline (topk_mil) both",
                    "CAS baseline (untrimmednet) both",
                    "Stages (second_stage.rounds)", "first stage only: ACN fused",
                    "second stage, 1 round(s): CAS baseline (both streams)",
                    "second stage, 1 round(s): ACN fused",
                    "Boundaries (acn.cas_subsnippet)",
                    "ACN fused, CAS segment boundaries inside snippets",
                    "ACN fused, CAS segment boundaries on whole snippets",
                    "Lc features (acn.lc_features; nets trained with embedding)",
                    "ACN fused, Lc on the base models' embedding",
                    "ACN fused, Lc on the features z-scored per video",
                    "ACN fused, Lc on the raw features",
                    "Long candidates (acn.long_candidates)",
                    "ACN fused, candidates of the smoothed CAS off",
                    "ACN fused, candidates of the smoothed CAS on",
                    "Valley term (localize.valley)", "ACN fused, valley term off",
                    "ACN fused, valley term on",
                    "Attention term (localize.attention_weight)",
                    "ACN fused, attention weight 0", "ACN fused, attention weight 0.8",
                    "heldout"):
        assert heading in text
    assert (out / "ablation.json").is_file()
    # one attention row is the run's own weight, and it scores as the config's own fused row
    import json

    res = json.loads((out / "ablation.json").read_text())
    own = [k for k in res["attention"] if k.endswith("(the run's)")]
    assert len(own) == 1
    assert res["attention"][own[0]] == res["streams"]["ACN fused"]
    # one long-candidates row is the run's own setting, and it scores as the fused row
    own = [k for k in res["long_candidates"] if "(the run's" in k]
    assert len(own) == 1
    assert res["long_candidates"][own[0]] == res["streams"]["ACN fused"]
    # and so is one valley row
    own = [k for k in res["valley"] if "(the run's" in k]
    assert len(own) == 1
    assert res["valley"][own[0]] == res["streams"]["ACN fused"]
    # the second stage's row came from base models trained again on pseudo-labels
    log = (out / "base_second_stage_1" / "train_log.json").read_text()
    assert '"round_1"' in log
