"""Candidate sets: the named sets, blosc2's auto split, and models over the new default set in
the plugin (real blosc2, real training, real plugin)."""

from __future__ import annotations

import json

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig, plugin_support
from btune_wrap.categories import (
    BLOSC2_DEFAULT,
    CATEGORY_SETS,
    DEFAULT_CATEGORIES,
    SPLIT_CATEGORIES,
    STORED,
    TUTORIAL_CATEGORIES,
    WIDE_CATEGORIES,
    Category,
    Codec,
    Filter,
    SplitMode,
    category_set,
    default_category,
    union,
)
from btune_wrap.cli import main
from btune_wrap.data import mixed_int
from btune_wrap.measurements import Measurements

from .conftest import build_models, build_training_meas

needs_plugin = pytest.mark.skipif(not plugin_support(), reason=plugin_support().reason)


def test_every_named_set_holds_distinct_categories_that_round_trip():
    for name, cats in CATEGORY_SETS.items():
        assert len(set(cats)) == len(cats) > 0, name
        for cat in cats:
            assert Category.parse(cat.name) == cat
            assert Category.from_plugin(list(cat.to_plugin())) == cat


def test_sets_nest_from_the_tutorial_to_the_widest():
    assert CATEGORY_SETS["default"] == DEFAULT_CATEGORIES
    assert len(TUTORIAL_CATEGORIES) == 32 and len(SPLIT_CATEGORIES) == 64
    assert set(TUTORIAL_CATEGORIES) < set(SPLIT_CATEGORIES) < set(WIDE_CATEGORIES)
    assert set(DEFAULT_CATEGORIES) <= set(WIDE_CATEGORIES)
    # the widest: 1, 5, 9 for every codec, zstd also 3 and 6; both split modes; blosc2's
    # default; level 0 (stored)
    levels = {c: {k.clevel for k in WIDE_CATEGORIES[:-1] if k.codec is c} for c in Codec}
    assert levels == {c: {1, 5, 9} for c in Codec} | {Codec.ZSTD: {1, 3, 5, 6, 9}}
    assert len(WIDE_CATEGORIES) == 17 * 4 * 2 + 2
    assert WIDE_CATEGORIES[-2:] == (BLOSC2_DEFAULT, STORED)


def test_the_stored_category_copies_the_chunk_as_is_and_is_a_default_candidate():
    assert STORED.name == "blosclz-nofilter-nosplit-0" and STORED.clevel == 0
    assert STORED in DEFAULT_CATEGORIES and DEFAULT_CATEGORIES[-1] == STORED
    data = np.arange(50_000, dtype=np.int64)  # compresses >50x with any codec at level >= 1
    arr = blosc2.asarray(data, chunks=(10_000,), cparams=STORED.to_cparams(typesize=8))
    np.testing.assert_array_equal(arr[:], data)
    assert arr.schunk.cratio < 1


def test_blosc2_default_is_the_installed_blosc2s_default_and_a_candidate():
    assert default_category() == BLOSC2_DEFAULT
    assert BLOSC2_DEFAULT.name == "zstd-shuffle-autosplit-5"
    assert BLOSC2_DEFAULT in DEFAULT_CATEGORIES


def test_union_keeps_first_appearance_order():
    a, b = TUTORIAL_CATEGORIES[:3], TUTORIAL_CATEGORIES[1:5]
    assert union(a, b) == TUTORIAL_CATEGORIES[:5]
    assert category_set(((Codec.LZ4, (1,)),), (Filter.SHUFFLE,), splits=tuple(SplitMode))[
        -1
    ].name == ("lz4-shuffle-fcsplit-1")


@pytest.mark.parametrize("typesize", [1, 2, 4, 8])
def test_auto_split_compresses_like_always_or_never(typesize):
    # Why the sets carry no other auto-split candidate than blosc2's default: blosc2 decides
    # the split from codec, filter and typesize alone, so auto gives the bytes of one of the two.
    data = np.cumsum(np.sin(np.arange(32768) / 50.0) * 1000).astype(np.float64).view(np.uint8)
    for codec in Codec:
        for filter_ in Filter:
            sizes = {}
            for mode in (SplitMode.ALWAYS, SplitMode.NEVER, SplitMode.AUTO):
                cparams = Category(codec, filter_, 5, mode).to_cparams(
                    typesize=typesize, blocksize=32768, nthreads=1
                )
                sizes[mode] = blosc2.compress2(data.tobytes(), cparams=cparams)
            assert sizes[SplitMode.AUTO] in (sizes[SplitMode.ALWAYS], sizes[SplitMode.NEVER])
            if typesize == 1:  # one stream per byte of the type: the same bytes but the header
                header = blosc2.MAX_OVERHEAD
                split, never = sizes[SplitMode.ALWAYS], sizes[SplitMode.NEVER]
                assert split[header:] == never[header:]


@pytest.mark.parametrize("name", sorted(CATEGORY_SETS))
def test_cli_gather_accepts_every_set_name(tmp_path, capsys, name):
    np.save(tmp_path / "d.npy", mixed_int(1, seed=3))
    args = ["gather", str(tmp_path / "d.npy"), "--chunks", "5000", "--repeats", "1"]
    assert main([*args, "--categories", f" {name.upper()} ", "--quiet"]) == 0
    meas = Measurements.load(tmp_path / "d.npy.meas")
    assert meas.categories == CATEGORY_SETS[name]


def test_cli_gather_refuses_an_unknown_set_name(tmp_path, capsys):
    np.save(tmp_path / "d.npy", mixed_int(1, seed=3))
    assert main(["gather", str(tmp_path / "d.npy"), "--categories", "widest"]) == 2
    assert "category='widest' is invalid" in capsys.readouterr().err
    assert not (tmp_path / "d.npy.meas").exists()


@needs_plugin
def test_plugin_infers_with_a_model_trained_on_the_default_set(tmp_path, clean_env):
    from btune_wrap.infer import compress

    meas = build_training_meas(tmp_path / "gather", nchunks=40, categories=DEFAULT_CATEGORIES)
    models = tmp_path / "models"
    build_models(meas, models)
    held = json.loads((models / "model_comp.json").read_text())["categories"]
    assert [Category.from_plugin(c) for c in held] == list(DEFAULT_CATEGORIES)
    assert {c[3] for c in held} == {int(m) for m in (SplitMode.ALWAYS, SplitMode.NEVER)} | {
        int(SplitMode.AUTO)
    }
    data = mixed_int(24, seed=11)
    seen = set()
    for mode in ("COMP", "DECOMP"):
        for tradeoff in (0.0, 0.5, 1.0):
            config = BtuneConfig(
                tradeoff=tradeoff, perf_mode=mode, models_dir=models, use_inference=-1, trace=True
            )
            arr, trace = compress(data, config, "native", chunks=(5000,))
            np.testing.assert_array_equal(arr[:], data)
            assert len(trace.inferences) == 24
            for line in trace.inferences:
                assert [line.codec, line.filter, line.clevel, line.splitmode] == held[line.category]
                seen.add(held[line.category][3])
    # the plugin ran categories of more than one split mode from the JSON
    assert len(seen) > 1, seen


@pytest.mark.parametrize("engine", ["native", "python"])
def test_both_engines_store_chunks_as_is_where_the_model_picks_level_0(
    models_dir, tmp_path, clean_env, engine
):
    if engine == "native" and not plugin_support():
        pytest.skip(plugin_support().reason)
    from btune_wrap.infer import compress

    models = tmp_path / "models"
    models.mkdir()
    for f in models_dir.iterdir():
        text = f.read_bytes()
        if f.name in ("model_comp.json", "model_decomp.json"):  # every output means STORED
            held = json.loads(text)
            held["categories"] = [list(STORED.to_plugin())] * len(held["categories"])
            text = json.dumps(held).encode()
        (models / f.name).write_bytes(text)
    data = mixed_int(8, seed=5)
    config = BtuneConfig(
        tradeoff=0.5, perf_mode="COMP", models_dir=models, use_inference=-1, trace=True
    )
    arr, trace = compress(data, config, engine, chunks=(5000,))
    np.testing.assert_array_equal(arr[:], data)
    assert [line.clevel for line in trace.inferences] == [0] * 8
    assert arr.schunk.cratio < 1
