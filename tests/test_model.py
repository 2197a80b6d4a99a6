"""The tiny base model: the shipped build is the default recipe's, and any other recipe builds here."""

from __future__ import annotations

import json

from conftest import compose_config

from dars.model import SHIPPED_BASE, base_model_key, load_policy, shipped_base_model


def test_shipped_base_model_is_the_default_recipes():
    cfg = compose_config([])
    meta = json.loads((SHIPPED_BASE / "recipe.json").read_text())
    assert meta["key"] == base_model_key(cfg), (
        "conf/model/tiny.yaml or the data levels changed the base-model recipe, but dars/assets/tiny_base "
        "is the old build: rebuild it with `python -m dars.model ship` (docs/sandbox.md) and commit it"
    )
    assert shipped_base_model(cfg) == SHIPPED_BASE
    model, tok, source = load_policy(cfg, cache_dir="/nonexistent-cache-never-built", seed=0)
    assert source == str(SHIPPED_BASE)
    # the tiny architecture of conf/model/tiny.yaml (1.06M), not some other checkpoint under that path
    assert 1.0e6 < sum(p.numel() for p in model.parameters()) < 1.1e6
    assert tok("57+8=", add_special_tokens=False).input_ids  # the character tokenizer came with it


def test_another_recipe_or_use_shipped_false_builds_here():
    default = compose_config([])
    assert shipped_base_model(compose_config(["model.warm_start.steps=150"])) is None
    assert shipped_base_model(compose_config(["data.levels=[add21,mul]"])) is None
    off = compose_config(["model.warm_start.use_shipped=false"])
    assert shipped_base_model(off) is None
    assert base_model_key(off) == base_model_key(default)  # the same recipe: a local build is cached under the same key
