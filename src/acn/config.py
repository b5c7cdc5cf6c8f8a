"""Configuration: YAML files merged over the packaged defaults, checked key by key.

Every constant of the method lives in ``configs/default.yaml`` (shipped inside the package).
A run's config is ``default.yaml`` <- an optional preset/user file <- ``--set a.b=value``
overrides; unknown keys and wrong types are errors that name the key and the file. The
resolved config is written beside every run's outputs.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from acn.errors import AcnError

# String options with a closed set of values.
CHOICES: dict[str, tuple[str, ...]] = {
    "base.head": ("untrimmednet", "topk_mil"),
    "base.scp": ("softmax", "sigmoid"),
    "acn.score_terms": ("both", "oic", "coherence"),
    "acn.lc_features": ("raw", "standardize", "embedding"),
    "acn.attention_mode": ("drop", "zero_scp", "none"),
    "acn.class_source": ("predicted", "labels"),
    "acn.scp_threshold_mode": ("absolute", "relative"),
    "acn.proposals": ("anchors", "cas", "both"),
    "acn.long_candidates": ("auto", "on", "off"),
    "acn.scp_source": ("stream", "mean"),
    "train.optimizer": ("sgd", "adam"),
    "localize.nms": ("greedy", "soft_gaussian", "soft_linear"),
    "localize.stream": ("rgb", "flow", "fused"),
    "localize.fusion": ("paper", "joint"),
    "localize.joint_candidates": ("mean", "all"),
    "localize.short_videos": ("clip", "error"),
    "localize.whole_video": ("off", "scored", "first"),
    "localize.valley": ("auto", "on", "off"),
    "base.attention": ("branch", "max_logit"),
    "base.pool": ("probs", "logits"),
    "base.lr_schedule": ("constant", "cosine"),
}


# Keys whose default is null ("chosen from the data at training time") and the type a
# value given for them must have.
NULLABLE: dict[str, Any] = {
    "acn.alpha": 0.0,
    "acn.anchors": [],
    "localize.rgb_weight": 0.0,
    "localize.whole_video": "off",
    "localize.nms_iou": 0.0,
    "localize.attention_weight": 0.0,
    "base.per_stream": {},
    "acn.lc_features": "raw",
}


def packaged_config_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("acn.configs").iterdir()
                  if p.name.endswith(".yaml"))


def _read_yaml(text: str, where: str) -> dict:
    try:
        obj = yaml.safe_load(text)  # safe_load: a config file can never construct objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        what = getattr(e, "problem", None) or " ".join(str(e).split())
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise AcnError(f"{where}: not valid YAML ({what}{at})") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise AcnError(f"{where}: a config must be a mapping of sections, got {type(obj).__name__}")
    return obj


def load_packaged(name: str) -> dict:
    """A config shipped with acn (``default``, ``paper``, ``activitynet12``, ...)."""
    f = resources.files("acn.configs") / f"{name}.yaml"
    if not f.is_file():
        raise AcnError(f"no packaged config {name!r}; packaged: {packaged_config_names()}")
    return _read_yaml(f.read_text(encoding="utf-8"), f"configs/{name}.yaml")


def defaults() -> dict:
    return load_packaged("default")


def _typename(v: Any) -> str:
    name = type(v).__name__
    return ("an " if name[0] in "aeiou" else "a ") + name


# Older spellings still read: a run's config.yaml written before a key became a choice.
ALIASES: dict[str, dict[Any, Any]] = {
    "localize.whole_video": {False: "off", True: "scored"},
    # YAML reads a bare on / off as true / false
    "acn.long_candidates": {False: "off", True: "on"},
    "localize.valley": {False: "off", True: "on"},
}


def _check_value(key: str, value: Any, default: Any, where: str) -> Any:
    if value is None:
        return value
    if key in ALIASES and isinstance(value, bool):
        value = ALIASES[key].get(value, value)
    if default is None:
        if key not in NULLABLE:
            return value
        try:
            return _check_value(key, value, NULLABLE[key], where)
        except AcnError as e:
            raise AcnError(f"{e} (or null)") from None
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise AcnError(f"{where}: {key} must be {_typename(default)}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise AcnError(f"{where}: {key} must be one of {list(CHOICES[key])}, got {value!r}")
    return value


def merge(base: dict, override: dict, where: str, prefix: str = "") -> dict:
    """Return ``base`` updated by ``override``; unknown keys and wrong types raise AcnError."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        key = f"{prefix}{k}"
        if k not in base:
            known = ", ".join(sorted(base)) if isinstance(base, dict) else ""
            raise AcnError(f"{where}: unknown config key {key!r} (known here: {known})")
        if isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise AcnError(f"{where}: {key} must be a section (mapping), got {v!r}")
            out[k] = merge(base[k], v, where, key + ".")
        else:
            out[k] = _check_value(key, v, base[k], where)
    return out


def over_defaults(cfg: Any, default: dict[str, Any], what: str) -> dict[str, Any]:
    """A flat ``cfg`` (a mapping or None) merged over ``default``; a key ``default`` lacks
    raises :class:`AcnError` naming ``what`` and the known keys."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(default))
    if unknown:
        raise AcnError(f"{what}: unknown keys {unknown}; known keys: {sorted(default)}")
    return {**default, **cfg}


def parse_set(items: list[str]) -> dict:
    """``["acn.alpha=0.5", "train.epochs=2"]`` -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise AcnError(f"--set {item!r}: expected key=value, e.g. acn.alpha=0.5")
        key, raw = item.split("=", 1)
        value = _read_yaml(f"v: {raw}", f"--set {item}")["v"] if raw.strip() else None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def resolve(config: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Defaults <- config (a path or a packaged name) <- ``--set`` overrides."""
    cfg = defaults()
    if config:
        p = Path(config)
        if p.suffix in (".yaml", ".yml") or p.exists():
            if not p.is_file():
                raise AcnError(f"{p}: config file not found")
            cfg = merge(cfg, _read_yaml(p.read_text(encoding="utf-8"), str(p)), str(p))
        else:
            cfg = merge(cfg, load_packaged(str(config)), f"configs/{config}.yaml")
    if overrides:
        cfg = merge(cfg, parse_set(overrides), "--set")
    return cfg


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
