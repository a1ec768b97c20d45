"""Categories (codec, filter, clevel, split mode) and the objective: names, mappings, labels."""

from __future__ import annotations

import blosc2
import numpy as np
import pytest

from btune_wrap.categories import (
    SPLIT_CATEGORIES,
    TUTORIAL_CATEGORIES,
    Category,
    Codec,
    Filter,
    SplitMode,
    parse_categories,
)
from btune_wrap.errors import ConfigError
from btune_wrap.objective import (
    TRADEOFFS,
    best_index,
    objective,
    objective_matrix,
    parse_mode,
    regret,
)


def test_tutorial_set_is_the_tutorials_32():
    names = [c.name for c in TUTORIAL_CATEGORIES]
    assert len(names) == len(set(names)) == 32
    assert names[:4] == [
        "blosclz-nofilter-nosplit-5",
        "blosclz-shuffle-nosplit-5",
        "blosclz-bitshuffle-nosplit-5",
        "blosclz-shuffle-bytedelta-nosplit-5",
    ]
    # the tutorial's traces: category 7 is lz4 + bytedelta, 2 blosclz + bitshuffle
    assert TUTORIAL_CATEGORIES[7].to_plugin() == (1, 35, 5, 2)
    assert TUTORIAL_CATEGORIES[2].to_plugin() == (0, 2, 5, 2)
    assert {c.clevel for c in TUTORIAL_CATEGORIES if c.codec is Codec.ZSTD} == {1, 3, 6, 9}
    assert len(SPLIT_CATEGORIES) == 64
    assert SPLIT_CATEGORIES[1].name == "blosclz-nofilter-split-5"


@pytest.mark.parametrize("cat", SPLIT_CATEGORIES, ids=lambda c: c.name)
def test_names_and_plugin_tuples_round_trip(cat):
    assert Category.parse(cat.name) == cat
    assert Category.from_plugin(list(cat.to_plugin())) == cat


def test_parse_accepts_the_tutorial_names():
    cat = Category.parse("lz4-shuffle-bytedelta-nosplit-5")
    assert (cat.codec, cat.filter, cat.clevel, cat.splitmode) == (
        Codec.LZ4,
        Filter.BYTEDELTA,
        5,
        SplitMode.NEVER,
    )
    assert str(Category("zstd", "bitshuffle", 9)) == "zstd-bitshuffle-nosplit-9"


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("lz5-shuffle-nosplit-5", "category='lz5-shuffle-nosplit-5'"),
        ("lz4-delta-nosplit-5", "codec-filter-split-clevel"),
        ("lz4-shuffle-nosplit", "codec-filter-split-clevel"),
        ("lz4-shuffle-maybe-5", "codec-filter-split-clevel"),
        ("lz4-shuffle-nosplit-12", "clevel=12"),
    ],
)
def test_bad_names(bad, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Category.parse(bad)


def test_bad_fields_name_the_field():
    with pytest.raises(ConfigError, match=r"codec=3 is invalid"):
        Category(3, 0, 5)
    with pytest.raises(ConfigError, match=r"filter=7 is invalid"):
        Category.from_plugin([1, 7, 5, 2])
    with pytest.raises(ConfigError, match=r"clevel=10"):
        Category("lz4", "shuffle", 10)
    with pytest.raises(ConfigError, match=r"splitmode=9"):
        Category("lz4", "shuffle", 5, 9)
    with pytest.raises(ConfigError, match=r"four integers"):
        Category.from_plugin([1, 1, 5.0, 2])
    with pytest.raises(ConfigError, match=r"each category at most once"):
        parse_categories(["lz4-shuffle-nosplit-5", "lz4-shuffle-nosplit-5"])


@pytest.mark.parametrize("cat", SPLIT_CATEGORIES[::5], ids=lambda c: c.name)
def test_cparams_compress_like_the_category(cat):
    data = np.cumsum(np.random.default_rng(0).integers(-3, 4, 20_000)).astype(np.int64)
    cparams = cat.to_cparams(typesize=8, nthreads=1)
    assert Category.from_cparams(cparams) == cat
    chunk = blosc2.compress2(data, cparams=cparams)
    assert np.array_equal(np.frombuffer(blosc2.decompress2(chunk), dtype=np.int64), data)
    if cat.filter is Filter.BYTEDELTA:
        assert list(cparams.filters[-2:]) == [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA]


def test_blosc2_defaults_are_a_category():
    assert Category.from_cparams(blosc2.CParams()).name == "zstd-shuffle-autosplit-5"
    odd = blosc2.CParams(filters=[blosc2.Filter.DELTA], filters_meta=[0])
    with pytest.raises(ConfigError, match="cparams.filters"):
        Category.from_cparams(odd)


# -- the objective ------------------------------------------------------------------------


def test_objective_extremes_and_labels():
    # 3 categories on 2 chunks of 1000 bytes: fast+poor, balanced, slow+good
    nbytes = np.array([1000.0, 1000.0])
    cbytes = np.array([[800.0, 400.0, 250.0]] * 2)
    ctime = np.array([[1e-6, 1.2e-6, 1e-3]] * 2)
    dtime = np.array([[1e-3, 1e-6, 2e-6]] * 2)
    j = objective_matrix(nbytes, cbytes, ctime, dtime, "comp", TRADEOFFS)
    assert j.shape == (11, 2, 3)
    labels = best_index(j)
    assert (labels[0] == 0).all()  # t = 0: the fastest compressor
    assert (labels[-1] == 2).all()  # t = 1: the best ratio
    assert (labels[5] == 1).all()
    jd = objective_matrix(nbytes, cbytes, ctime, dtime, "d", TRADEOFFS)
    assert (best_index(jd)[0] == 1).all()  # decomp: the fastest decompressor
    r = regret(j, j.max(axis=-1, keepdims=True))
    assert (r >= 0).all() and (r < 1).all()
    assert np.allclose(np.take_along_axis(r, labels[..., None], -1), 0)
    assert objective(4.0, 1e9, 1.0) == pytest.approx(np.log(4.0))


def test_parse_mode():
    assert parse_mode("c") == parse_mode("COMP") == parse_mode("comp")
    assert parse_mode("d").name == "DECOMP"
    with pytest.raises(ConfigError, match="mode='x' is invalid"):
        parse_mode("x")
