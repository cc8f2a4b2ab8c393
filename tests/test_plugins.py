import types

import attrs
import pytest

import seqkit
from seqkit import _plugins
from seqkit.cells.lstm import LSTM


def test_builtins_register_through_entry_points():
    plugins = {p.name: p for p in seqkit.list_plugins()}
    assert plugins["cells"].registered["cell"] == (
        "gru",
        "gru_ln",
        "gru_simple",
        "lstm",
        "lstm_ln",
        "rnn",
    )
    assert plugins["cells"].distribution == "seqkit"
    assert plugins["cells"].entry_point == "cells = seqkit.cells._builtin"
    assert plugins["numpy"].registered["backend"] == ("numpy",)
    assert {"gru", "gru_simple", "lstm", "rnn"} <= set(seqkit.list_cells())
    assert "numpy" in seqkit.list_backends()


def test_unknown_names_list_the_choices():
    with pytest.raises(
        seqkit.UnknownNameError, match=r"unknown backend 'jaxx'; available: .*numpy"
    ):
        seqkit.get_backend("jaxx")
    with pytest.raises(
        seqkit.UnknownNameError,
        match=r"unknown cell 'lstn'; available: gru, gru_ln, gru_simple, lstm, lstm_ln",
    ):
        seqkit.Recurrent("lstn", 2, 3)


def test_third_party_cell_plugin_registers_and_runs():
    @attrs.frozen
    class Twin(LSTM):
        name = "lstm_twin"

    plugin = types.SimpleNamespace(seqkit_register_cells=seqkit.hookimpl(lambda: [Twin]))
    seqkit.register_plugin(plugin, name="twin-plugin")
    try:
        assert "lstm_twin" in seqkit.list_cells()
        info = {p.name: p for p in seqkit.list_plugins()}["twin-plugin"]
        assert info.registered == {"cell": ("lstm_twin",)}
        layer = seqkit.Recurrent("lstm_twin", 2, 3)
        assert layer.state_names == ("h", "c")
    finally:
        seqkit.unregister_plugin("twin-plugin")
    assert "lstm_twin" not in seqkit.list_cells()


def test_duplicate_names_are_an_error_naming_both_plugins():
    @attrs.frozen
    class Clash(LSTM):
        pass  # inherits name "lstm"

    plugin = types.SimpleNamespace(seqkit_register_cells=seqkit.hookimpl(lambda: [Clash]))
    seqkit.register_plugin(plugin, name="clash")
    try:
        with pytest.raises(
            seqkit.PluginError,
            match=r"cell 'lstm' is registered twice: by plugin '.*' and by plugin '.*'",
        ):
            seqkit.list_cells()
    finally:
        seqkit.unregister_plugin("clash")


def test_hook_returning_a_non_list_is_named():
    plugin = types.SimpleNamespace(seqkit_register_cells=seqkit.hookimpl(lambda: "lstm"))
    seqkit.register_plugin(plugin, name="bad-return")
    try:
        with pytest.raises(
            seqkit.PluginError,
            match=r"plugin 'bad-return': seqkit_register_cells\(\) must return a list",
        ):
            seqkit.list_cells()
    finally:
        seqkit.unregister_plugin("bad-return")


def test_broken_entry_point_names_plugin_and_entry_point(monkeypatch):
    import importlib.metadata as md

    broken = md.EntryPoint(name="broken", value="no_such_module_xyz", group="seqkit")
    monkeypatch.setattr(md, "entry_points", lambda group: [broken])
    with pytest.raises(
        seqkit.PluginError,
        match=r"plugin 'broken' \(entry point 'broken = no_such_module_xyz'.*failed to import: ModuleNotFoundError",
    ):
        _plugins._Manager()


def test_hooks_are_named_seqkit():
    from seqkit import hookspecs

    names = [n for n in dir(hookspecs) if n.startswith("seqkit_")]
    assert names and all(hasattr(seqkit.plugin_manager().hook, n) for n in names)


def test_an_unknown_hook_name_is_an_error_with_the_closest_hook():
    plugin = types.SimpleNamespace(seqkit_register_cellz=seqkit.hookimpl(lambda: [LSTM]))
    with pytest.raises(
        seqkit.PluginError,
        match=r"plugin 'typo' implements unknown hook 'seqkit_register_cellz'; "
        r"did you mean 'seqkit_register_cells'\? \(seqkit's hooks: seqkit_register_backends, ",
    ):
        seqkit.register_plugin(plugin, name="typo")
    assert "typo" not in {p.name for p in seqkit.list_plugins()}  # nothing half-registered
    far = types.SimpleNamespace(completely_else=seqkit.hookimpl(lambda: []))
    with pytest.raises(seqkit.PluginError, match=r"unknown hook 'completely_else' \(seqkit's"):
        seqkit.register_plugin(far, name="far")


def test_optional_hooks_of_other_versions_are_allowed():
    plugin = types.SimpleNamespace(
        seqkit_register_future=seqkit.hookimpl(optionalhook=True)(lambda: [])
    )
    seqkit.register_plugin(plugin, name="future")
    seqkit.unregister_plugin("future")


def test_a_hook_function_without_the_marker_is_an_error():
    plugin = types.SimpleNamespace(seqkit_register_cells=lambda: [LSTM])
    with pytest.raises(
        seqkit.PluginError,
        match=r"plugin 'bare' defines seqkit_register_cells\(\) without marking it with "
        r"@seqkit.hookimpl",
    ):
        seqkit.register_plugin(plugin, name="bare")
    assert "bare" not in {p.name for p in seqkit.list_plugins()}


def test_an_entry_point_with_an_unknown_hook_names_the_entry_point(tmp_path, monkeypatch):
    (tmp_path / "typo_cells.py").write_text(
        "import seqkit\n\n@seqkit.hookimpl\ndef seqkit_register_cellz():\n    return []\n"
    )
    info = tmp_path / "typo_cells-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: typo-cells\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[seqkit]\ntypo = typo_cells\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        seqkit.PluginError,
        match=r"plugin 'typo' \(entry point 'typo = typo_cells'\) implements unknown hook "
        r"'seqkit_register_cellz'; did you mean 'seqkit_register_cells'\?",
    ):
        _plugins._Manager()
