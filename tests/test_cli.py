"""Flags: upstream defaults and units, env precedence, clear errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpu_exporter.cli import (
    FLAGS,
    _check_unsupported,
    build_config,
    build_parser,
    main,
    parse_address,
    resolve,
)
from gpu_exporter.config import Config, DcgmSettings, ListenAddress


def _config(argv: list[str], env: dict[str, str] | None = None) -> Config:
    environ = env or {}
    values = resolve(build_parser().parse_args(argv), environ)
    return build_config(values, environ)


def _assert_refused(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], env: dict[str, str] | None = None,
) -> None:
    """``main(argv)``, clean environment plus ``env``: exit 2 with ``message``, no traceback."""
    for key in [f.env for f in FLAGS if f.env]:
        monkeypatch.delenv(key, raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_upstream_defaults_and_units() -> None:
    config = _config([], {"NODE_NAME": "node-a"})
    assert config.collect_interval == 30.0  # -c default 30000 ms
    assert config.address == ListenAddress(None, 9400)
    assert config.counters_path.name == "default-counters.csv"
    assert config.xid_window == 300.0
    assert config.hostname == "node-a"
    assert config.hostname_label == "Hostname"
    assert not config.kube.enabled
    assert config.simulate is None


def test_flag_beats_env_beats_default() -> None:
    env = {"DCGM_EXPORTER_INTERVAL": "5000", "DCGM_EXPORTER_LISTEN": "127.0.0.1:9500"}
    assert _config([], env).collect_interval == 5.0
    assert _config(["-c", "250"], env).collect_interval == 0.25
    assert _config([], env).address == ListenAddress("127.0.0.1", 9500)
    assert _config(["-a", "[::]:9401"], env).address == ListenAddress("::", 9401)


def test_long_flags_with_one_dash_as_go_takes_them() -> None:
    from gpu_exporter.cli import normalize_argv

    assert normalize_argv(["-collect-interval", "500", "-f", "x.csv", "-rbmn", "-k",
                           "-address=:9500", "--", "-debug"]) == [
        "--collect-interval", "500", "-f", "x.csv", "-rbmn", "-k", "--address=:9500", "--",
        "-debug"]
    config = _config(normalize_argv(["-collect-interval", "500", "-collectors", "x.csv"]))
    assert config.collect_interval == 0.5
    assert config.counters_path == Path("x.csv")


def test_empty_integer_env_var_means_the_default_as_upstream() -> None:
    # urfave/cli (dcgm-exporter) ignores an integer variable set to ""; a chart rendering
    # `value: ""` must not stop the exporter
    assert _config([], {"DCGM_EXPORTER_INTERVAL": ""}).collect_interval == 30.0
    assert _config([], {"DCGM_EXPORTER_XID_COUNT_WINDOW_SIZE": ""}).xid_window == 300.0
    assert not _config([], {"DCGM_EXPORTER_KUBERNETES": ""}).kube.enabled  # bool: "" = false


def test_bool_flags_take_optional_values_and_aliases() -> None:
    assert _config(["-k"]).kube.enabled
    assert not _config(["--kubernetes=false"]).kube.enabled
    assert _config([], {"DCGM_EXPORTER_KUBERNETES": "true"}).kube.enabled
    assert _config(["-rbmn"]).replace_blanks
    assert _config(["-o"]).old_names
    assert _config(["-n"]).hostname is None
    assert _config([], {"KUBERNETES_VIRTUAL_GPUS": "true"}).kube.virtual_gpus


def test_every_flag_has_unique_names_and_env() -> None:
    names = [n for f in FLAGS for n in f.names]
    envs = [f.env for f in FLAGS if f.env]
    assert len(names) == len(set(names))
    assert len(envs) == len(set(envs))


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["-c", "abc"], {}, "--collect-interval: expected an integer, got 'abc'"),
        (["-c", "0"], {}, "--collect-interval: must be at least 1"),
        (["-a", "9400"], {}, "--address: expected host:port"),
        (["-a", ":99999"], {}, "--address: port must be 0-65535"),
        (["-k", "maybe"], {}, "--kubernetes: expected true or false, got 'maybe'"),
        ([], {"DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE": "uuid"},
         "--kubernetes-gpu-id-type: expected 'uid' or 'device-name'"),
        (["--kubernetes-pod-label-allowlist-regex", "app,(team"], {},
         "--kubernetes-pod-label-allowlist-regex: '(team' is not a valid regular expression"),
        (["--kubernetes-enable-pod-uid", "sometimes"], {},
         "--kubernetes-enable-pod-uid: expected true or false, got 'sometimes'"),
        (["--configmap-data", "ns:cm"], {}, "--configmap-data: not supported yet"),
        (["--hostname-label", "host"], {}, "--hostname-label: expected 'Hostname' or 'hostname'"),
    ],
)
def test_bad_input_exits_2_naming_the_flag(
    argv: list[str], env: dict[str, str], message: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _assert_refused(argv, message, monkeypatch, capsys, env)


def test_parse_address_forms() -> None:
    assert parse_address(":9400") == ListenAddress(None, 9400)
    assert parse_address("0.0.0.0:1") == ListenAddress("0.0.0.0", 1)  # noqa: S104
    assert str(parse_address("[::1]:9400")) == "[::1]:9400"


def test_flags_doc_is_current() -> None:
    from pathlib import Path

    from gpu_exporter.cli import flags_markdown

    doc = Path(__file__).parent.parent / "docs" / "flags.md"
    assert doc.read_text() == flags_markdown(), (
        "docs/flags.md is stale: run python -m gpu_exporter.cli --markdown > docs/flags.md"
    )


def test_default_counters_fall_back_to_the_packaged_file() -> None:
    from gpu_exporter.cli import counters_path, packaged_counters

    assert packaged_counters().is_file()
    default = "/etc/dcgm-exporter/default-counters.csv"
    expected = Path(default) if Path(default).exists() else packaged_counters()
    assert counters_path(default) == expected
    assert packaged_counters().read_bytes() == (
        Path(__file__).parent.parent / "counters" / "default-counters.csv").read_bytes()


def test_missing_counters_file_names_the_flag_and_every_path_tried(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gpu_exporter import cli

    assert cli.counters_path("/nonexistent/x.csv") == Path("/nonexistent/x.csv")
    assert cli.missing_counters("/nonexistent/x.csv") == (
        "-f/--collectors: no counters file at /nonexistent/x.csv; pass -f PATH or set "
        "DCGM_EXPORTER_COLLECTORS")
    default = "/etc/dcgm-exporter/default-counters.csv"
    assert cli.missing_counters(default) is None  # the packaged copy (or the real one)
    # a package whose data file is missing: both paths named, and how to fix it
    monkeypatch.setattr(cli, "packaged_counters", lambda: tmp_path / "default-counters.csv")
    if Path(default).exists():
        pytest.skip(f"{default} exists on this machine")
    message = cli.missing_counters(default)
    assert message is not None
    assert default in message
    assert str(tmp_path / "default-counters.csv") in message
    assert "-f PATH" in message
    assert "DCGM_EXPORTER_COLLECTORS" in message


def test_missing_counters_file_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpu_exporter.cli", "-f", str(tmp_path / "none.csv")],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"-f/--collectors: no counters file at {tmp_path / 'none.csv'};" in done.stderr


def test_kubelet_timing_flags() -> None:
    config = _config(["--pod-resources-refresh-interval", "2000", "--pod-resources-timeout",
                      "750"])
    assert config.kube.refresh_interval == 2.0
    assert config.kube.deadline == 0.75
    assert config.kube.max_stale == 60.0


def test_max_stale_below_refresh_interval_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--pod-resources-refresh-interval", "5000", "--pod-resources-max-stale", "1000"])
    assert info.value.code == 2
    assert "--pod-resources-max-stale: must be at least 5000" in capsys.readouterr().err


def test_remote_hostengine_host_part_is_the_hostname_outside_kubernetes() -> None:
    env = {"NODE_NAME": "node-a"}
    assert _config([], env).hostname == "node-a"
    assert _config(["-r", "dcgm.example:5555"], env).hostname == "dcgm.example"
    assert _config(["-r", "localhost:5555"], env).hostname == "localhost"  # as upstream (#572)
    assert _config([], {**env, "DCGM_REMOTE_HOSTENGINE_INFO": "10.0.0.7:5555"}).hostname == (
        "10.0.0.7")
    assert _config(["-r", "[fd00::7]:5555"], env).hostname == "fd00::7"
    assert _config(["-r", "engine"], env).hostname == "engine"  # no port: as given
    assert _config(["-r", "dcgm.example:5555", "-k"], env).hostname == "node-a"
    assert _config(["-r", "dcgm.example:5555", "-n"], env).hostname is None


def test_dcgm_engine_from_r_or_dcgm_local() -> None:
    env = {"NODE_NAME": "node-a"}
    assert _config([], env).dcgm is None
    remote = _config(["-r", "nvidia-dcgm:5555", "--watch-max-keep-age", "30s",
                      "--watch-max-keep-samples", "5"], env).dcgm
    assert remote == DcgmSettings("nvidia-dcgm:5555", flag="-r", max_keep_age=30.0,
                                  max_keep_samples=5)
    assert _config([], {**env, "DCGM_REMOTE_HOSTENGINE_INFO": "10.0.0.7:5555"}).dcgm == (
        DcgmSettings("10.0.0.7:5555"))
    local = _config(["--dcgm-local"], env)
    assert local.dcgm == DcgmSettings("127.0.0.1:5555", flag="--dcgm-local")
    assert local.hostname == "node-a"  # a local engine does not rename the host
    assert _config([], {**env, "GPU_EXPORTER_DCGM_LOCAL": "true"}).dcgm == local.dcgm
    unix = _config(["-r", "unix:///run/nvidia-dcgm/socket"], env)
    assert unix.dcgm == DcgmSettings("/run/nvidia-dcgm/socket", unix_socket=True)
    assert unix.hostname == "node-a"


@pytest.mark.parametrize(("argv", "message"), [
    (["-r", "engine:5555", "--dcgm-local"], "--dcgm-local and -r/--remote-hostengine-info"),
    (["-r", "unix://run/socket"], "-r/--remote-hostengine-info: expected host:port or unix://"),
    (["-r", "unix://"], "-r/--remote-hostengine-info: expected host:port or unix://"),
])
def test_inconsistent_dcgm_engines_are_refused(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _assert_refused(argv, message, monkeypatch, capsys)


def test_parity_switches_default_off() -> None:
    config = _config([])
    assert not config.mig_device_fields_once
    assert not config.omit_unsupported_zeros
    config = _config(["--mig-device-fields-once", "--omit-unsupported-zeros"])
    assert config.mig_device_fields_once
    assert config.omit_unsupported_zeros
    config = _config([], {"GPU_EXPORTER_MIG_DEVICE_FIELDS_ONCE": "true",
                          "GPU_EXPORTER_OMIT_UNSUPPORTED_ZEROS": "1"})
    assert config.mig_device_fields_once
    assert config.omit_unsupported_zeros
# --- parity with the newest upstream release ----------------------------------------------

UPSTREAM_FLAGS = Path(__file__).parent / "data" / "upstream" / "dcgm-exporter-4.6.1-4.8.4-flags.csv"


def _upstream_rows() -> list[tuple[str, list[str], str, str]]:
    rows = []
    for line in UPSTREAM_FLAGS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, aliases, env, default = line.split(",", 3)
        rows.append((name, aliases.split(), env, default))
    return rows


def test_upstream_fixture_is_the_whole_flag_table_of_the_release() -> None:
    rows = _upstream_rows()
    assert len([r for r in rows if r[0]]) == 47  # flags of 4.6.1-4.8.4, plus NODE_NAME
    assert rows[-1] == ("", [], "NODE_NAME", "")


@pytest.mark.parametrize("row", _upstream_rows(), ids=lambda row: row[0] or row[2])
def test_every_upstream_flag_and_env_var_is_known(row: tuple[str, list[str], str, str]) -> None:
    name, aliases, env, default = row
    if not name:  # NODE_NAME: the hostname label's value
        assert _config([], {env: "node-x"}).hostname == "node-x"
        return
    flag = next((f for f in FLAGS if f.names[0] == name), None)
    assert flag is not None, f"{name} of dcgm-exporter 4.6.1-4.8.4 is unknown to our CLI"
    assert set(aliases) <= set(flag.names[1:]), f"{name}: aliases {aliases} vs {flag.names}"
    assert flag.env == env
    # -r: upstream's default localhost:5555 applies only when the flag is set (IsSet); unset
    # is modelled as the empty default here
    assert flag.default == ("" if name == "--remote-hostengine-info" else default)
    # every spelling parses (argparse would exit 2 on an unknown one)
    for spelling in (name, *aliases):
        build_parser().parse_args([spelling] if flag.kind == "bool" else [spelling, default])


def test_our_own_flags_are_marked_as_ours() -> None:
    # a flag upstream does not have takes a GPU_EXPORTER_* variable, never a DCGM_* one
    upstream = {row[0] for row in _upstream_rows()}
    ours = [f for f in FLAGS if f.names[0] not in upstream]
    assert {"--hostname-label", "--simulate"} <= {f.names[0] for f in ours}
    assert all((f.env or "").startswith("GPU_EXPORTER_") for f in ours), [
        f.names[0] for f in ours]


NOT_BUILT_YET = {  # upstream flags refused (exit 2) when set away from their default
    "--configmap-data", "--container-labels", "--container-runtime-socket", "--cpu-devices",
    "--dump-compression", "--dump-directory", "--dump-enabled", "--dump-retention",
    "--kubernetes-enable-dra", "--kubernetes-enable-pod-labels", "--kubernetes-enable-pod-uid",
    "--kubernetes-pod-label-allowlist-regex", "--switch-devices",
}


def test_upstream_flags_are_honoured_refused_or_dcgm_only() -> None:
    upstream = {row[0] for row in _upstream_rows() if row[0]}
    status = {f.names[0]: f.status for f in FLAGS if f.names[0] in upstream}
    assert set(status) == upstream
    later = {name for name, value in status.items() if value == "later"}
    noop = {name for name, value in status.items() if value == "noop"}
    dcgm_only = {
        "--dcgm-log-level", "--disable-startup-validate", "--enable-dcgm-log",
        "--enable-gpu-bind-unbind-watch", "--enable-pprof", "--fake-gpus",
        "--gpu-bind-unbind-poll-interval", "--watch-max-keep-age", "--watch-max-keep-samples",
    }
    # flags whose effect needs DCGM itself are accepted without effect (one log line); so are
    # 4.8.4's scrape cap and opt-in process metrics (scrapes are free here, process metrics
    # always on) and --kubernetes-enable-dra until DRA attribution lands (the GPU Operator
    # sets it)
    harmless = {"--max-concurrent-scrapes", "--enable-exporter-metrics", "--kubernetes-enable-dra"}
    assert dcgm_only <= noop <= dcgm_only | harmless
    # features land one by one: the refused set may only shrink
    assert later <= NOT_BUILT_YET


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--web-read-timeout", "50ms"], {}, "--web-read-timeout: must be between 100ms and 1h"),
        ([], {"DCGM_EXPORTER_WEB_WRITE_TIMEOUT": "2h"},
         "--web-write-timeout: must be between 100ms and 1h"),
        (["--web-probe-address", "nope"], {}, "--web-probe-address: expected host:port"),
        (["--web-read-timeout", "soon"], {}, "--web-read-timeout: 'soon' is not a duration"),
        (["--container-labels"], {}, "--container-labels: not supported yet"),
        ([], {"DCGM_CONTAINER_RUNTIME_SOCKET": "/run/containerd/containerd.sock"},
         "DCGM_CONTAINER_RUNTIME_SOCKET"),
        (["--gpu-bind-unbind-poll-interval", "1x"], {},
         "--gpu-bind-unbind-poll-interval: '1x' is not a duration"),
        (["--max-concurrent-scrapes", "0"], {}, "--max-concurrent-scrapes: must be at least 1"),
        ([], {"DCGM_EXPORTER_WATCH_MAX_KEEP_SAMPLES": "-1"},
         "--watch-max-keep-samples: must be at least 0"),
        (["--watch-max-keep-age=-1m"], {}, "--watch-max-keep-age: '-1m' is not a duration"),
    ],
)
def test_upstream_flags_not_built_are_refused_naming_them(
    argv: list[str], env: dict[str, str], message: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _assert_refused(argv, message, monkeypatch, capsys, env)


def test_upstream_defaults_of_refused_flags_are_accepted_in_any_spelling() -> None:
    # upstream's chart renders the default timeouts; the same durations spelled otherwise
    # are no change
    values = resolve(build_parser().parse_args(
        ["--web-read-timeout", "10000ms", "--web-write-timeout=0.5m", "--container-labels=false",
         "--watch-max-keep-age", "10m"]),
        {})
    assert _check_unsupported(values) == []
    values = resolve(build_parser().parse_args(
        ["--watch-max-keep-age", "0s", "--max-concurrent-scrapes", "4",
         "--enable-exporter-metrics"]), {})
    assert _check_unsupported(values) == [
        "--max-concurrent-scrapes", "--enable-exporter-metrics", "--watch-max-keep-age"]


def test_kubernetes_api_flags_and_upstream_env_names() -> None:
    """The four API flags of issue 9 parse (flag or upstream env var) into KubeSettings."""
    kube = _config(["-k", "--kubernetes-enable-pod-labels", "--kubernetes-enable-pod-uid",
                    "--kubernetes-pod-label-allowlist-regex", "^app$, team.*"],
                   {"NODE_NAME": "node-a"}).kube
    assert (kube.pod_labels, kube.pod_uid, kube.dra) == (True, True, False)
    assert kube.label_allowlist == ("^app$", "team.*")
    assert kube.node_name == "node-a"
    assert kube.needs_api
    env = {"DCGM_EXPORTER_KUBERNETES": "true", "KUBERNETES_ENABLE_DRA": "true",
           "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_LABELS": "false",
           "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_UID": "true",
           "DCGM_EXPORTER_KUBERNETES_POD_LABEL_ALLOWLIST_REGEX": "app"}
    kube = _config([], env).kube
    assert (kube.pod_labels, kube.pod_uid, kube.dra, kube.label_allowlist) == (
        False, True, True, ("app",))
    assert not _config(["--kubernetes-enable-dra"]).kube.needs_api  # not without -k
    assert not _config(["-k"]).kube.needs_api


def test_workload_metrics_off_by_default_and_its_flags(tmp_path: Path) -> None:
    assert _config([]).workloads is None
    config = _config(["--workload-metrics", "--procfs-root", str(tmp_path),
                      "--workload-pid-labels", "--container-engine-socket", "/run/docker.sock"])
    assert config.workloads is not None
    assert config.workloads.procfs_root == str(tmp_path)
    assert config.workloads.pid_labels
    assert config.workloads.engine_socket == Path("/run/docker.sock")
    from_env = _config([], {"GPU_EXPORTER_WORKLOAD_METRICS": "true",
                            "GPU_EXPORTER_PROCFS_ROOT": str(tmp_path)})
    assert from_env.workloads is not None
    assert from_env.workloads.procfs_root == str(tmp_path)
    assert from_env.workloads.engine_socket is None  # empty default: no engine contacted
    assert not from_env.workloads.pid_labels


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload-pid-labels"], "--workload-pid-labels: needs --workload-metrics"),
        (["--container-engine-socket", "/run/docker.sock"],
         "--container-engine-socket: needs --workload-metrics"),
        (["--procfs-root", "/host/proc"], "--procfs-root: needs --workload-metrics"),
        (["--workload-metrics", "--procfs-root", "/no/such/proc"],
         "--procfs-root: '/no/such/proc' is not a directory"),
    ],
)
def test_workload_flags_bad_input_exits_2(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _assert_refused(argv, message, monkeypatch, capsys)
