"""The backend registry behind drivers.connect: the built-in backends, a backend registered by
decorator, option checking, the generated "accepted forms" message and entry-point plugins."""

from __future__ import annotations

import sys
import textwrap

import pytest
from drv_helpers import small_config

import drivers
from drivers import registry
from drivers.sim import SimDevice


@pytest.fixture
def scratch_backend():
    """Registers test backends and removes them afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        if name in {b.name for b in drivers.backends()}:
            drivers.unregister_backend(name)


@pytest.mark.parametrize(("uri", "name"), [
    ("sim", "sim"), ("sim?seed=3", "sim"), ("sim:/tmp/x.json", "sim"),
    ("TCPIP::127.0.0.1::5025::SOCKET", "visa"), ("tcpip0::host::inst0::INSTR", "visa"),
    ("ASRL3::INSTR", "visa"), ("GPIB0::12::INSTR", "visa"), ("simulator", None), ("COM3", None),
    ("http://x", None),
])
def test_builtin_backends_take_their_uri_forms(uri, name):
    found = drivers.find_backend(uri)
    assert (found.name if found else None) == name


def test_a_registered_backend_is_opened_with_its_options_and_listed(scratch_backend):
    seen = {}

    @drivers.backend("bench-test", scheme="benchtest", options=("serial",),
                     forms=[("benchtest[?x]", "a test bench")])
    def _open(uri, **options):
        seen["uri"], seen["options"] = uri, options
        return SimDevice(config=small_config(), resource=uri, **options)

    scratch_backend.append("bench-test")
    with drivers.connect(" benchtest?x ", serial="B1") as dev:
        assert dev.is_open and dev.identity.serial == "B1"
    assert seen == {"uri": "benchtest?x", "options": {"serial": "B1"}}
    assert not drivers.find_backend("benchtestx")  # the scheme is a whole word
    with pytest.raises(TypeError, match=r"option\(s\) timeout_s for the 'bench-test' backend.*serial"):
        drivers.connect("benchtest", timeout_s=1)
    with pytest.raises(ValueError) as info:
        drivers.connect("nonsense")
    text = str(info.value)
    # one line per registered form, built-ins first, in registration order
    lines = [line.split()[0] for line in text.splitlines()[1:]]
    assert lines == ["sim", "sim?seed=3", "sim:PATH.json[?seed=3]", "twin:DIR[?seed=3]",
                     "TCPIP::host::port::SOCKET", "TCPIP::host::INSTR,", "benchtest[?x]"]
    assert "a test bench" in text


def test_registration_errors(scratch_backend):
    with pytest.raises(ValueError, match="needs a scheme or a pattern"):
        drivers.register_backend("nothing", lambda uri: None)
    with pytest.raises(ValueError, match="already registered"):
        drivers.register_backend("sim", lambda uri: None, scheme="sim2")
    assert drivers.find_backend("sim2") is None
    b = drivers.register_backend("pat", lambda uri: None, pattern=r"^LAB\d+::")
    scratch_backend.append("pat")
    assert drivers.find_backend("LAB7::x") is b and b.forms == ((r"^LAB\d+::", "pat"),)


def test_sim_options_are_checked_by_name():
    with pytest.raises(TypeError, match="pattern_memory, serial, frame_buffer_bytes"):
        drivers.connect("sim", timeout_s=3)
    with drivers.connect("sim", pattern_memory=17) as dev:
        assert dev.pattern_memory == 17


def test_entry_point_plugins_register_on_first_lookup(tmp_path, monkeypatch, scratch_backend):
    (tmp_path / "opu_plugin_mod.py").write_text(textwrap.dedent("""
        import drivers
        from drivers.sim import SimDevice

        @drivers.backend("plugin", scheme="plugin", forms=[("plugin", "from an entry point")])
        def _open(uri, **options):
            return SimDevice(resource=uri)
    """))
    dist = tmp_path / "opu_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: opu-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nplugin = opu_plugin_mod\n"
                                           "broken = no_such_module_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    scratch_backend.append("plugin")
    with pytest.warns(RuntimeWarning, match="'broken'.*failed to load"):
        found = drivers.find_backend("plugin")
    assert found is not None and found.name == "plugin"
    assert "from an entry point" in drivers.accepted_forms()
    sys.modules.pop("opu_plugin_mod", None)
