"""``acn evaluate`` as a CLI module: arguments, default protocol, table and JSON output."""

from __future__ import annotations

import argparse
import json

import pytest

from acn.cli import evaluate as cli_evaluate
from acn.errors import AcnError
from acn.evaluate import save_results


def _gt(tmp_path, ambiguous: bool):
    db = {
        "v1": {"subset": "validation", "duration": 100.0,
               "annotations": [{"segment": [0.0, 10.0], "label": "Jump"},
                               {"segment": [20.0, 30.0], "label": "Run"}]},
        "v2": {"subset": "validation", "duration": 100.0,
               "annotations": [{"segment": [5.0, 15.0], "label": "Jump"}]},
        "t1": {"subset": "training", "duration": 50.0,
               "annotations": [{"segment": [1.0, 2.0], "label": "Run"}]},
    }
    if ambiguous:
        db["v2"]["ambiguous"] = [[40.0, 50.0]]
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({"version": "1.3", "database": db}))
    return p


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="acn evaluate")
    cli_evaluate.add_arguments(parser)
    return parser.parse_args(list(argv))


PRED = {"v1": [(0.0, 10.0, "Jump", 0.9), (20.0, 26.0, "Run", 0.8)],  # Run: tIoU 0.6
        "v2": [(5.0, 15.0, "Jump", 0.7)]}


def test_run_prints_table_and_writes_json(tmp_path, capsys):
    gt = _gt(tmp_path, ambiguous=False)
    pred = tmp_path / "pred.json"
    save_results(pred, PRED)
    out = tmp_path / "res" / "eval.json"
    assert cli_evaluate.run(_parse("--gt", str(gt), "--pred", str(pred), "--json", str(out),
                                   "--per-class")) == 0
    text = capsys.readouterr().out
    assert "ActivityNet protocol, subset 'validation'" in text  # test subset by default
    assert "Jump" in text and "Run" in text
    res = json.loads(out.read_text())
    assert res["protocol"] == "activitynet" and res["subset"] == "validation"
    assert res["map"]["0.5"] == 1.0 and res["map"]["0.65"] == 0.5
    assert res["per_class"]["Run"]["0.6"] == 1.0 and res["per_class"]["Run"]["0.65"] == 0.0
    assert res["predictions"] == str(pred)


def test_default_protocol_follows_ambiguous_segments(tmp_path, capsys):
    gt = _gt(tmp_path, ambiguous=True)
    pred = tmp_path / "pred.json"
    save_results(pred, PRED)
    cli_evaluate.run(_parse("--gt", str(gt), "--pred", str(pred)))
    text = capsys.readouterr().out
    assert "THUMOS14 protocol" in text and "0.1" in text.splitlines()[1]
    cli_evaluate.run(_parse("--gt", str(gt), "--pred", str(pred), "--protocol", "activitynet",
                            "--tiou", "0.5,0.7"))
    lines = capsys.readouterr().out.splitlines()
    assert "ActivityNet protocol" in lines[0] and lines[1].split() == ["tIoU", "0.5", "0.7",
                                                                        "avg"]


def test_subset_and_unknown_videos(tmp_path, capsys):
    gt = _gt(tmp_path, ambiguous=False)
    pred = tmp_path / "pred.json"
    save_results(pred, {**PRED, "t1": [(1.0, 2.0, "Run", 0.5)]})
    with pytest.raises(AcnError, match=r"pred.json: 1 detections on 1 videos that are not in "
                                        r"subset 'validation' \(1 of them in other subsets"):
        cli_evaluate.run(_parse("--gt", str(gt), "--pred", str(pred)))
    with pytest.warns(UserWarning, match="dropped"):
        cli_evaluate.run(_parse("--gt", str(gt), "--pred", str(pred),
                                "--ignore-unknown-videos"))
    assert "1 detections on videos outside the subset dropped" in capsys.readouterr().out
    with pytest.warns(UserWarning):  # v1, v2 are not in "training"
        cli_evaluate.run(_parse("--gt", str(gt), "--pred", str(pred), "--subset", "training",
                                "--ignore-unknown-videos"))
    assert "subset 'training'" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0.5,x", "0.5,0.5", "0,0.5", ""])
def test_bad_tiou_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as e:
        _parse("--gt", "g", "--pred", "p", "--tiou", value)
    assert e.value.code == 2 and "--tiou" in capsys.readouterr().err


def test_missing_files_are_acn_errors(tmp_path):
    gt = _gt(tmp_path, ambiguous=False)
    with pytest.raises(AcnError, match="results file not found"):
        cli_evaluate.run(_parse("--gt", str(gt), "--pred", str(tmp_path / "none.json")))
    with pytest.raises(AcnError, match="ground truth not found"):
        cli_evaluate.run(_parse("--gt", str(tmp_path / "nogt"), "--pred", "x.json"))
