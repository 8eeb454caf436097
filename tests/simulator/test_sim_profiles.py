"""Profiles: built-ins, user YAML files, validation messages, deterministic identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_exporter.simulator import SimulatorError, list_profiles, prepare
from gpu_exporter.simulator.profiles import (
    device_uuid,
    load_profile,
    parse_yaml,
    place_mig,
    render_config,
    resolve,
)

BUILTINS = ["a100-mig", "h100x8", "l4x2", "rtx4090", "t4x4"]


def test_list_profiles() -> None:
    assert list_profiles() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profiles_resolve(name: str) -> None:
    r = resolve(load_profile(name))
    assert r.name == name
    text = render_config(r, seed=0)
    assert f"gpus {len(r.devices)}" in text
    assert render_config(r, seed=0) == text


def test_device_counts_and_traits() -> None:
    h100 = resolve(load_profile("h100x8")).devices
    assert len(h100) == 8
    assert h100[0]["gpm"] is True
    assert h100[0]["nvlink"]["links"] == 18
    assert h100[7]["workload"]["pattern"] == "idle"
    a100 = resolve(load_profile("a100-mig")).devices
    assert a100[0]["mig"]["devices"] == ["1g.10gb"] * 7
    assert a100[1]["mig"]["devices"] == ["3g.40gb", "2g.20gb", "1g.10gb"]
    assert "devices" not in a100[3]["mig"]
    rtx = resolve(load_profile("rtx4090")).devices[0]
    assert rtx["ecc"]["supported"] is False
    assert rtx.get("gpm") is False


def test_uuid_depends_on_profile_seed_and_index() -> None:
    assert device_uuid("h100x8", 0, 1) == device_uuid("h100x8", 0, 1)
    assert device_uuid("h100x8", 0, 1) != device_uuid("h100x8", 1, 1)
    assert device_uuid("h100x8", 0, 1) != device_uuid("h100x8", 0, 2)
    assert device_uuid("h100x8", 0, 1).startswith("GPU-")


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(SimulatorError, match=r"unknown profile 'h200'.*a100-mig, h100x8, l4x2"):
        prepare("h200")


def _user(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def test_user_profile_with_base_and_overrides(tmp_path: Path) -> None:
    path = _user(tmp_path, """\
base: h100x8
name: my-h100
device_count: 2
devices:
  - index: 1
    name: NVIDIA H100 PCIe
    memory: {total_mib: 81559, reserved_mib: 600}
    nvlink: {links: 0}
""")
    session = prepare(path, seed=3, state_dir=tmp_path / "state")
    config = (session.state_dir / "config").read_text()
    assert "gpus 2" in config
    assert "g 1 name NVIDIA H100 PCIe" in config
    assert "g 0 name NVIDIA H100 80GB HBM3" in config
    assert "g 1 nvlink_links 0" in config
    assert "g 1 mem_reserved_mib 600" in config
    assert session.profile == "my-h100"


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = _user(tmp_path, """\
base: h100x8
device_defaults:
  memory:
    totl_mib: 5
""")
    with pytest.raises(SimulatorError) as err:
        prepare(path)
    msg = str(err.value)
    assert f"{path}:4:" in msg
    assert "unknown key 'device_defaults.memory.totl_mib'" in msg
    assert "total_mib" in msg


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = _user(tmp_path, "base: t4x4\ndevice_count: four\n")
    with pytest.raises(SimulatorError, match=r"mine.yaml:2: key 'device_count': expected int"):
        prepare(path)


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = _user(tmp_path, "base: t4x4\ndevices: [\n  {index: 1\n")
    with pytest.raises(SimulatorError, match=r"mine.yaml:\d+: invalid YAML"):
        prepare(path)


def test_missing_required_setting(tmp_path: Path) -> None:
    path = _user(tmp_path, """\
device_count: 1
system: {driver_version: "1", nvml_version: "1", cuda_version: 12000}
device_defaults: {name: X, brand: tesla, architecture: hopper, compute_capability: "9.0"}
""")
    with pytest.raises(SimulatorError,
                       match=r"device 0: key 'device_defaults.sm_count': is required"):
        prepare(path)


def test_bad_enum_value(tmp_path: Path) -> None:
    path = _user(tmp_path, "base: l4x2\ndevices:\n  - index: 1\n    brand: radeon\n")
    with pytest.raises(SimulatorError, match=r"mine.yaml:4: device 1: key 'devices\[0\].brand'"):
        prepare(path)


def test_device_index_out_of_range(tmp_path: Path) -> None:
    path = _user(tmp_path, "base: l4x2\ndevices:\n  - index: 2\n    numa_node: 1\n")
    with pytest.raises(SimulatorError,
                       match=r"mine.yaml:3: key 'devices\[0\].index': 2 is outside"):
        prepare(path)


def test_mig_layout_that_does_not_fit(tmp_path: Path) -> None:
    path = _user(tmp_path, "base: a100-mig\ndevices:\n  - index: 4\n"
                           "    mig: {devices: [4g.40gb, 4g.40gb]}\n")
    with pytest.raises(SimulatorError, match=r"device 4: key 'devices\[\d\].mig.devices'"):
        prepare(path)


def test_workload_out_of_range(tmp_path: Path) -> None:
    path = _user(tmp_path, "base: l4x2\ndevice_defaults:\n  workload: {mean: 90, amplitude: 20}\n")
    with pytest.raises(SimulatorError, match=r"must stay within 0\.\.100"):
        prepare(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match=r"nope\.yaml: cannot read profile"):
        prepare(tmp_path / "nope.yaml")


def test_duplicate_key(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match=r"x.yaml:2: duplicate key 'a'"):
        parse_yaml("a: 1\na: 2\n", "x.yaml")


def test_place_mig_first_fit_and_gi_ids() -> None:
    devs = place_mig("a100-80gb", ["3g.40gb", "2g.20gb", "1g.10gb"])
    assert [(d.profile.name, d.start, d.gi) for d in devs] == [
        ("3g.40gb", 0, 1), ("2g.20gb", 4, 5), ("1g.10gb", 6, 13)]
    seven = place_mig("h100-80gb", ["1g.10gb"] * 7)
    assert [d.gi for d in seven] == list(range(7, 14))
    with pytest.raises(ValueError, match="at most 7"):
        place_mig("a100-80gb", ["1g.10gb"] * 8)
    with pytest.raises(ValueError, match="unknown MIG profile"):
        place_mig("a100-80gb", ["5g.50gb"])


def test_negative_seed_rejected() -> None:
    with pytest.raises(SimulatorError, match="seed"):
        prepare("t4x4", seed=-1)


def test_place_mig_split_gpu_instances() -> None:
    devs = place_mig("a100-80gb", ["1c.3g.40gb", "2c.3g.40gb", "3g.40gb"])
    assert [(d.name, d.gi, d.ci, d.start) for d in devs] == [
        ("1c.3g.40gb", 1, 0, 0), ("2c.3g.40gb", 1, 1, 0), ("3g.40gb", 2, 0, 4)]
    assert devs[0].render().split()[:2] == ["1c.3g.40gb", "2"]
    assert int(devs[0].render().split()[8]) == 42 // 3  # its share of the SMs
    full = place_mig("a100-80gb", ["1c.3g.40gb"] * 4)  # the 4th opens a second GPU instance
    assert [(d.gi, d.ci) for d in full] == [(1, 0), (1, 1), (1, 2), (2, 0)]
    with pytest.raises(ValueError, match="only 3 compute slices"):
        place_mig("a100-80gb", ["4c.3g.40gb"])
    assert len(place_mig("a100-80gb", ["1c.7g.80gb"] * 7)) == 7  # at most 7: one per slice
