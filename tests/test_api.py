"""The public API: what ``import btune_wrap`` gives, and what it costs."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import btune_wrap
from btune_wrap import evaluate as evaluate_function
from btune_wrap import infer, measure, model, plugin, train

#: Modules that ``import btune_wrap`` must not load: each costs seconds (TensorFlow, Keras),
#: hundreds of milliseconds (numba, pandas, pyarrow, matplotlib) or is optional (LiteRT).
HEAVY = ("tensorflow", "keras", "pandas", "pyarrow", "numba", "matplotlib", "ai_edge_litert")


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_readme_names_are_exported_and_are_the_stage_functions():
    expected = {
        "gather": measure.gather,
        "fit": train.fit,
        "export": train.export,
        "load_model": model.load_model,
        "compress": infer.compress,
        "evaluate": sys.modules["btune_wrap.evaluate"].evaluate,
        "write_tuned": plugin.write_tuned,
        "BtuneConfig": btune_wrap.config.BtuneConfig,
    }
    for name, value in expected.items():
        assert name in btune_wrap.__all__, name
        assert getattr(btune_wrap, name) is value, name
    assert set(btune_wrap.__all__) <= set(dir(btune_wrap))


def test_every_name_in_all_resolves():
    for name in btune_wrap.__all__:
        assert getattr(btune_wrap, name) is not None


def test_an_unknown_name_is_an_attribute_error_naming_it():
    try:
        btune_wrap.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("btune_wrap.no_such_name did not raise AttributeError")


def test_evaluate_is_the_function_and_the_submodule_stays_importable():
    # ``from btune_wrap import evaluate`` above ran after conftest imported the package.
    assert inspect.isfunction(evaluate_function)
    assert isinstance(sys.modules["btune_wrap.evaluate"], types.ModuleType)
    # In a fresh process, whatever the order of the imports:
    out = _run(
        "import sys, types\n"
        "from btune_wrap.evaluate import frontier_table\n"
        "import btune_wrap.evaluate\n"
        "from btune_wrap import evaluate\n"
        "assert callable(evaluate) and not isinstance(evaluate, types.ModuleType)\n"
        "assert btune_wrap.evaluate is evaluate\n"
        "assert isinstance(sys.modules['btune_wrap.evaluate'], types.ModuleType)\n"
        "assert sys.modules['btune_wrap.evaluate'].frontier_table is frontier_table\n"
        "print('ok')\n"
    )
    assert out.strip() == "ok"


def test_importing_the_package_loads_no_heavy_module_but_loads_the_plugin_library():
    code = (
        "import sys\n"
        "import btune_wrap\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "print(bool(btune_wrap.plugin_support()), 'blosc2_btune' in sys.modules)\n"
    )
    heavy, plugin_line = _run(code).splitlines()
    assert heavy == "[]"
    supported, loaded = plugin_line.split()
    # The plugin's library must be in before TensorFlow can be (see btune_wrap.plugin).
    assert loaded == supported


def test_a_lazy_name_loads_its_stage_on_first_use():
    out = _run(
        "import sys\n"
        "import btune_wrap\n"
        "assert 'btune_wrap.infer' not in sys.modules\n"
        "f = btune_wrap.compress\n"
        "assert sys.modules['btune_wrap.infer'].compress is f\n"
        "print('ok')\n"
    )
    assert out.strip() == "ok"
