"""The plugin host: built-ins, in-process plugins, entry points, conflicts, listing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pluggy
import pytest
import torch

import scorekit
from scorekit import hookimpl
from scorekit.errors import OptionError, PluginConflictError, UnknownComponentError
from scorekit.plugins import PluginHost, PluginLoadWarning
from scorekit.targets import StandardGaussianScore


def _plugin(name: str, **networks):
    """A module-like plugin registering the given networks."""
    mod = types.ModuleType(name)

    @hookimpl
    def register_networks(register):
        for key, factory in networks.items():
            register(key, factory)

    mod.register_networks = register_networks
    return mod


def test_builtins_register_through_the_same_hooks(host):
    owners = {(c.kind, c.name): c.owner for c in host.components()}
    for key in [("network", "mlp"), ("estimator", "dsm"), ("estimator", "ssm"), ("estimator", "exact")]:
        assert owners[key] == "scorekit"


def test_in_process_plugin_composes_by_name(host):
    host.register_plugin(_plugin("my_nets", tiny=StandardGaussianScore))
    assert ("network", "tiny", "my_nets") in {(c.kind, c.name, c.owner) for c in host.components("network")}
    model = scorekit.compose(network="tiny", sampler=None, host=host)
    assert type(model.network) is StandardGaussianScore and model.names["network"] == "tiny"


def test_register_plugin_on_default_host():
    class Zero(torch.nn.Module):
        def forward(self, x, sigma):
            return torch.zeros_like(x)

    scorekit.register_plugin(_plugin("zeros", zero=Zero))
    model = scorekit.compose(network="zero", sampler=None)
    assert isinstance(model.network, Zero)
    scorekit.reset_host()
    with pytest.raises(UnknownComponentError, match="'zero'"):
        scorekit.compose(network="zero", sampler=None)


def test_two_plugins_claiming_one_name_is_an_error_naming_both(host):
    host.register_plugin(_plugin("first_pkg", mlp=torch.nn.Identity))
    with pytest.raises(PluginConflictError, match="'scorekit' and 'first_pkg'"):
        host.get("network", "mlp")


def test_replace_is_an_explicit_opt_in(host):
    mod = types.ModuleType("override")

    @hookimpl
    def register_networks(register):
        register("mlp", torch.nn.Identity, replace=True)

    mod.register_networks = register_networks
    host.register_plugin(mod)
    comp = host.get("network", "mlp")
    assert comp.owner == "override" and comp.factory is torch.nn.Identity


def test_names_are_per_kind(host):
    host.register_plugin(_plugin("shared_name", dsm=torch.nn.Identity))
    assert host.get("network", "dsm").owner == "shared_name"
    assert host.get("estimator", "dsm").owner == "scorekit"


def test_unknown_name_lists_available_and_closest(host):
    with pytest.raises(UnknownComponentError) as info:
        host.get("estimator", "sssm")
    message = str(info.value)
    assert "dsm, exact, ssm" in message and "did you mean 'ssm'" in message


def test_names_match_exactly(host):
    with pytest.raises(UnknownComponentError, match="'DSM'"):
        host.get("estimator", "DSM")


def test_misspelled_hook_is_rejected_naming_the_plugin(host):
    mod = types.ModuleType("typo_plugin")

    @hookimpl
    def register_network(register):  # missing 's'
        pass

    mod.register_network = register_network
    with pytest.raises(pluggy.PluginValidationError, match="typo_plugin"):
        host.register_plugin(mod)
    assert host.pm.get_plugin("typo_plugin") is None


def test_misspelled_hook_argument_is_rejected(host):
    mod = types.ModuleType("badarg_plugin")

    @hookimpl
    def register_networks(registr):
        pass

    mod.register_networks = register_networks
    with pytest.raises(pluggy.PluginValidationError, match="badarg_plugin"):
        host.register_plugin(mod)


class _FakeDist:
    def __init__(self, name):
        self.name = name


class _FakeEntryPoint:
    def __init__(self, name, dist, load):
        self.name, self.dist, self._load = name, _FakeDist(dist), load

    def load(self):
        return self._load()


def _fake_entry_points(monkeypatch, eps):
    monkeypatch.setattr("scorekit.plugins.entry_points", lambda group: eps if group == "scorekit" else [])


def test_failing_plugin_is_reported_and_the_rest_keeps_working(monkeypatch):
    def boom():
        raise ImportError("no module named 'missing_dep'")

    good = _plugin("good_pkg", good_net=torch.nn.Identity)
    _fake_entry_points(monkeypatch, [_FakeEntryPoint("bad", "bad-dist", boom), _FakeEntryPoint("good", "good-dist", lambda: good)])
    with pytest.warns(PluginLoadWarning, match="bad-dist.*ImportError.*missing_dep"):
        host = PluginHost(autoload=True)
    assert host.get("network", "good_net").owner == "good-dist"
    assert host.get("estimator", "dsm").owner == "scorekit"
    with pytest.raises(UnknownComponentError, match="bad-dist"):
        host.get("network", "bad_net")


def test_one_distribution_seen_twice_is_loaded_once(monkeypatch):
    plugin = _plugin("dup_pkg", dup_net=torch.nn.Identity)
    _fake_entry_points(monkeypatch, [_FakeEntryPoint("dup", "dup-dist", lambda: plugin)] * 2)
    host = PluginHost(autoload=True)
    assert host.get("network", "dup_net").owner == "dup-dist"


@pytest.mark.parametrize(("env", "loaded"), [("1", False), ("yes", False), ("", True)])
def test_disable_autoload_env(monkeypatch, env, loaded):
    plugin = _plugin("env_pkg", env_net=torch.nn.Identity)
    _fake_entry_points(monkeypatch, [_FakeEntryPoint("env", "env-dist", lambda: plugin)])
    monkeypatch.setenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", env)
    host = PluginHost()
    assert ("env_net" in host.names("network")) is loaded
    assert "mlp" in host.names("network")  # built-ins always load


def test_unknown_kind(host):
    with pytest.raises(UnknownComponentError, match="kinds: network, estimator, sampler"):
        host.names("schedule")


def test_unknown_option_names_component_option_and_allowed(host):
    with pytest.raises(OptionError, match=r"network 'mlp'.*has no option 'hiden'.*did you mean 'hidden'"):
        scorekit.compose(network="mlp", network_options={"hiden": 3}, sampler=None, host=host)


@pytest.mark.subprocess
def test_third_party_distribution_composes_by_name(tmp_path):
    """A throwaway plugin distribution, pip-installed, is found through its entry point."""
    src = tmp_path / "src"
    (src / "scorekit_thirdparty").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "scorekit-thirdparty"
        version = "0.0.1"
        [project.entry-points.scorekit]
        thirdparty = "scorekit_thirdparty"
        [tool.setuptools]
        packages = ["scorekit_thirdparty"]
    """))
    (src / "scorekit_thirdparty" / "__init__.py").write_text(textwrap.dedent("""
        import torch
        from scorekit import hookimpl

        class Halver(torch.nn.Module):
            def __init__(self, *, factor: float = 0.5):
                super().__init__()
                self.factor = factor
            def forward(self, x, sigma):
                return -self.factor * x

        @hookimpl
        def register_networks(register):
            register("halver", Halver)
    """))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(src)],
        check=True, capture_output=True,
    )
    code = textwrap.dedent("""
        import torch, scorekit
        model = scorekit.compose(network="halver", network_options={"factor": 0.25}, sampler=None)
        owner = {c.name: c.owner for c in scorekit.get_host().components("network")}["halver"]
        print(owner, model.network.factor, bool(torch.isfinite(model.loss(torch.randn(4, 3)))))
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "SCOREKIT_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["scorekit-thirdparty", "0.25", "True"]  # the option reached the network


# --- isolation: one broken or clashing plugin never breaks the others ------------------------------


def _raising_plugin(name: str, hook: str):
    """A plugin that registers a dataset fine but whose ``hook`` raises."""
    mod = types.ModuleType(name)

    @hookimpl
    def register_datasets(register):
        register(f"{name}_data", lambda root=None, train=True: torch.zeros(2, 1, 8, 8))

    @hookimpl
    def failing(register):
        raise RuntimeError("the plugin's own bug")

    failing.__name__ = hook
    mod.register_datasets = register_datasets
    setattr(mod, hook, failing)
    return mod


@pytest.mark.parametrize("hook", ["register_networks", "register_samplers", "register_presets"])
def test_a_hook_that_raises_leaves_its_plugin_out_and_everything_else_working(monkeypatch, hook):
    good = _plugin("good_pkg", good_net=torch.nn.Identity)
    _fake_entry_points(monkeypatch, [_FakeEntryPoint("broken", "broken-dist", lambda: _raising_plugin("broken", hook)),
                                     _FakeEntryPoint("good", "good-dist", lambda: good)])
    host = PluginHost(autoload=True)
    with pytest.warns(PluginLoadWarning, match=f"broken-dist.*failed in {hook}: RuntimeError: the plugin's own bug"):
        assert host.get("network", "good_net").owner == "good-dist"
    assert host.get("estimator", "dsm").owner == "scorekit"
    # left out whole, exactly like a plugin that fails to import: its dataset from a hook that worked is gone too
    assert "broken_data" not in host.names("dataset")
    assert [(f.distribution, f.during) for f in host.failed] == [("broken-dist", hook)]
    with pytest.raises(UnknownComponentError, match="broken-dist"):
        host.get("dataset", "broken_data")
    host.register_plugin(_plugin("later", later_net=torch.nn.Identity))  # a new lookup does not call it again
    assert "later_net" in host.names("network") and len(host.failed) == 1


def test_scorekit_plugins_lists_a_broken_plugin_as_failed_and_exits_0(monkeypatch, capsys):
    from scorekit.cli import main

    _fake_entry_points(monkeypatch, [_FakeEntryPoint("broken", "broken-dist",
                                                     lambda: _raising_plugin("broken", "register_networks"))])
    monkeypatch.delenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    scorekit.reset_host()
    with pytest.warns(PluginLoadWarning):
        assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "FAILED  plugin 'broken' from distribution 'broken-dist' failed in register_networks" in out
    assert "annealed_langevin" in out


def test_two_third_party_plugins_claiming_one_name_break_only_that_name(monkeypatch, capsys):
    from scorekit.cli import main

    first = _plugin("first", shared=torch.nn.Identity, only_first=torch.nn.Identity)
    second = _plugin("second", shared=torch.nn.Tanh)
    _fake_entry_points(monkeypatch, [_FakeEntryPoint("first", "first-dist", lambda: first),
                                     _FakeEntryPoint("second", "second-dist", lambda: second)])
    host = PluginHost(autoload=True)
    assert host.get("network", "only_first").owner == "first-dist"
    assert scorekit.compose(network="mlp", sampler=None, host=host).names["network"] == "mlp"
    with pytest.raises(PluginConflictError, match="network 'shared' is registered by two plugins: 'first-dist' and "
                                                  "'second-dist'"):
        scorekit.compose(network="shared", sampler=None, host=host)
    assert [(c.kind, c.name, c.owners) for c in host.conflicts] == [("network", "shared", ("first-dist", "second-dist"))]
    assert "shared" not in host.names("network")

    monkeypatch.delenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    scorekit.reset_host()
    assert main(["plugins"]) == 0
    assert "CONFLICT  network 'shared' is registered by two plugins" in capsys.readouterr().out


def test_a_later_replace_resolves_a_conflict(host):
    host.register_plugin(_plugin("a_pkg", shared=torch.nn.Identity))
    host.register_plugin(_plugin("b_pkg", shared=torch.nn.Tanh))
    with pytest.raises(PluginConflictError):
        host.get("network", "shared")
    mod = types.ModuleType("arbiter")

    @hookimpl
    def register_networks(register):
        register("shared", torch.nn.ReLU, replace=True)

    mod.register_networks = register_networks
    host.register_plugin(mod)
    assert host.get("network", "shared").factory is torch.nn.ReLU and host.conflicts == []


def test_registering_again_under_one_name_replaces_the_earlier_plugin(host):
    """Re-running a notebook cell that defines and registers a plugin."""
    host.register_plugin(_plugin("cell", net_v1=torch.nn.Identity), name="cell")
    host.register_plugin(_plugin("cell", net_v2=torch.nn.Identity), name="cell")
    names = host.names("network")
    assert "net_v2" in names and "net_v1" not in names
    plugin = _plugin("same_object", same=torch.nn.Identity)
    assert host.register_plugin(plugin) == host.register_plugin(plugin) == "same_object"
    assert host.get("network", "same").owner == "same_object"


def test_an_in_process_plugin_cannot_take_a_builtin_plugins_name(host):
    with pytest.raises(PluginConflictError, match="'scorekit.builtin'.*belongs to 'scorekit'.*pass another name"):
        host.register_plugin(_plugin("x", x=torch.nn.Identity), name="scorekit.builtin")
    assert host.get("network", "mlp").owner == "scorekit"
