"""mss.config: defaults, TOML, ``MSS_*`` variables, overrides, checks, errors and the docs.

Every ``load_config`` call passes ``env=`` explicitly so that the test run's own environment
never leaks in.
"""

from __future__ import annotations

import ast
import dataclasses
import pickle
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mss import config as config_module
from mss.config import (
    DEFAULT_CONFIG,
    ApiConfig,
    Config,
    Listen,
    RegistrarConfig,
    StunConfig,
    TimersConfig,
    TransportConfig,
    config_reference_markdown,
    config_to_dict,
    env_var_name,
    load_config,
)
from mss.errors import ConfigError, MssError, PolicyRejection

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mss.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(
    text: str | None = None,
    *,
    env: dict[str, str] | None = None,
    overrides: dict[str, object] | None = None,
    tmp_path: Path | None = None,
) -> ConfigError:
    path = write(tmp_path, text) if text is not None and tmp_path is not None else None
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {}, overrides=overrides)
    return info.value


def all_keys() -> list[tuple[str, dataclasses.Field[Any], Any]]:
    """(dotted key, field, resolved type) of every setting."""
    keys = []
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub_hints = typing.get_type_hints(tp)
            for sub in dataclasses.fields(tp):
                keys.append((f"{f.name}.{sub.name}", sub, sub_hints[sub.name]))
        else:
            keys.append((f.name, f, tp))
    return keys


def section_names() -> list[str]:
    hints = typing.get_type_hints(Config)
    return [f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])]


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_config_error_fields_and_text() -> None:
    error = ConfigError("transport.idle_timeout", "must be > 0")
    assert isinstance(error, MssError)
    assert (error.field, error.reason) == ("transport.idle_timeout", "must be > 0")
    assert str(error) == "transport.idle_timeout: must be > 0"
    assert "ConfigError('transport.idle_timeout'" in repr(error)


def test_config_error_is_one_line_and_pickles() -> None:
    error = ConfigError("listen[2]", "bad\nthing\r\nhere")
    assert str(error) == f"{error.field}: {error.reason}"
    assert "\n" not in str(error) and "\r" not in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.reason, str(copy)) == (error.field, error.reason, str(error))


def test_policy_rejection() -> None:
    rejection = PolicyRejection(486, "Busy Here")
    assert isinstance(rejection, MssError)
    assert (rejection.sip_status, rejection.reason, rejection.http_status) == (
        486,
        "Busy Here",
        403,
    )
    other = PolicyRejection(503, "trunk limit", http_status=429)
    assert other.http_status == 429
    copy = pickle.loads(pickle.dumps(other))
    assert (copy.sip_status, copy.reason, copy.http_status) == (503, "trunk limit", 429)


def test_modules_have_all_tuples() -> None:
    import mss.errors

    for module in (config_module, mss.errors):
        assert isinstance(module.__all__, tuple)
        for name in module.__all__:
            assert hasattr(module, name), name


def test_config_and_errors_import_nothing_else_from_mss() -> None:
    """House style: mss.config and mss.errors sit below every other mss layer."""
    for name, allowed in (("config.py", {"mss.errors"}), ("errors.py", set())):
        tree = ast.parse((ROOT / "src" / "mss" / name).read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        assert {m for m in imported if m.split(".")[0] in ("mss", "fastsip")} <= allowed, name


# ---------------------------------------------------------------------------------------------
# defaults
# ---------------------------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = Config()
    assert cfg == DEFAULT_CONFIG == load_config(env={})
    assert cfg.data_dir == "./mss-data"
    assert cfg.transport.listen == (Listen("udp", "0.0.0.0", 5060), Listen("tcp", "0.0.0.0", 5060))
    assert cfg.transport.idle_timeout == 120.0
    assert cfg.transport.max_connections_per_source == 32
    assert cfg.transport.max_connections == 10000
    assert cfg.transport.use_uvloop is True
    assert cfg.transport.recv_buffer == 4 * 1024 * 1024
    assert (cfg.stun.enabled, cfg.stun.port, cfg.stun.host) == (True, 3478, "0.0.0.0")
    assert (cfg.timers.t1, cfg.timers.t2, cfg.timers.t4) == (0.5, 4.0, 5.0)
    assert dataclasses.astuple(cfg.limits) == (65536, 128, 8192, 70)
    assert (cfg.sip.domain, cfg.sip.server_name, cfg.sip.realm) == ("", "mss", "")
    assert dataclasses.astuple(cfg.registrar) == (3600, 60, 7200, "write-through", 1.0)
    assert (cfg.auth.nonce_lifetime, cfg.auth.secret, cfg.auth.failed_response) == (300, "", 401)
    assert (cfg.calls.no_answer_timeout, cfg.calls.max_forwards) == (60, 70)
    assert dataclasses.astuple(cfg.security) == (
        True,
        5,
        60,
        10800,
        86400,
        4,
        86400,
        100000,
        10.0,
        403,
    )
    assert (cfg.storage.backend, cfg.storage.path) == ("sqlite", "")
    assert (cfg.log.format, cfg.log.level) == ("auto", "info")
    assert (cfg.api.listen, cfg.api.enabled, cfg.api.allow_insecure_remote) == (
        "127.0.0.1:8080",
        True,
        False,
    )
    assert (cfg.tls.cert_file, cfg.tls.key_file, cfg.tls.ca_file) == (None, None, None)


def test_frozen_and_slotted() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data_dir = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sip.domain = "x"  # type: ignore[misc]
    for obj in (cfg, cfg.sip, cfg.transport, cfg.transport.listen[0]):
        assert not hasattr(obj, "__dict__")
    assert hash(cfg) == hash(Config())


def test_construction_by_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"^min_expires: must be >= 1$"):
        RegistrarConfig(min_expires=0)
    with pytest.raises(ConfigError, match=r"^port: expected an integer, got True$"):
        Listen("udp", "::1", True)
    timers = TimersConfig(t1=1)
    assert timers.t1 == 1.0 and type(timers.t1) is float
    transport = TransportConfig(listen=["udp:[::1]:0"])  # type: ignore[arg-type]
    assert transport.listen == (Listen("udp", "::1", 0),)


def test_effective_values() -> None:
    cfg = Config()
    assert cfg.effective_domain("pbx") == "pbx"  # wildcard listener → the machine's name
    assert cfg.effective_domain()  # socket.gethostname()
    assert cfg.effective_realm("pbx") == "pbx"
    assert cfg.storage_path() == str(Path("./mss-data") / "mss.sqlite3")
    cfg = load_config(env={"MSS_TRANSPORT_LISTEN": "udp:192.0.2.7:5060", "MSS_DATA_DIR": "/d"})
    assert cfg.effective_domain("pbx") == "192.0.2.7"
    assert cfg.storage_path() == str(Path("/d") / "mss.sqlite3")
    cfg = load_config(env={"MSS_SIP_DOMAIN": "example.com", "MSS_SIP_REALM": "r"})
    assert (cfg.effective_domain("pbx"), cfg.effective_realm("pbx")) == ("example.com", "r")
    assert load_config(env={"MSS_STORAGE_PATH": "/x.db"}).storage_path() == "/x.db"


def test_stun_dedicated_port() -> None:
    assert StunConfig().dedicated_port == 3478
    assert StunConfig(port=None).dedicated_port is None
    assert StunConfig(port=0).dedicated_port is None
    assert StunConfig(enabled=False).dedicated_port is None


def test_api_host_and_port() -> None:
    api = load_config(env={"MSS_API_LISTEN": "[::1]:9000"}).api
    assert (api.listen, api.host, api.port) == ("[::1]:9000", "::1", 9000)
    assert ApiConfig(listen="LOCALHOST:80").listen == "localhost:80"


# ---------------------------------------------------------------------------------------------
# TOML
# ---------------------------------------------------------------------------------------------

FULL_TOML = """
data_dir = "/var/lib/mss"

[sip]
domain = "pbx.example.com"
server_name = "mss/1.0 (test)"
realm = "pbx"

[transport]
listen = ["udp:127.0.0.1:5070", "tcp:[::1]:5070", "tls:localhost:5071"]
idle_timeout = 30
max_connections_per_source = 8
max_connections = 100
use_uvloop = false
gc_threshold = 0
gc_freeze_interval = 0
gc_full_interval = 60
recv_buffer = 1048576

[tls]
cert_file = "/etc/mss/cert.pem"
key_file = "/etc/mss/key.pem"
ca_file = "/etc/mss/ca.pem"

[stun]
enabled = false
port = 0
host = "::"

[timers]
t1 = 0.25
t2 = 2
t4 = 2.5

[limits]
max_message_size = 32768
max_headers = 64
max_header_length = 4096
max_via = 10

[registrar]
default_expires = 600
min_expires = 30
max_expires = 3600
persist = "write-back"
write_back_interval = 0.5

[auth]
nonce_lifetime = 60
secret = "s3cret"
failed_response = 403
algorithms = ["MD5"]

[calls]
no_answer_timeout = 30
max_forwards = 20

[security]
f2b_enabled = false
f2b_max_failures = 3
f2b_window = 30
f2b_ban_time = 600
f2b_max_ban_time = 6000
f2b_known_good_factor = 2
f2b_known_good_window = 3600
ban_table_size = 1000
drop_log_interval = 2.5
blacklist_status = 603

[lines]
retry_min = 5.0
retry_max = 60.0
refresh_ratio = 0.5
history = 10
unregister_on_stop = false

[trunks]
ping_interval = 10.0
ping_timeout = 2.0
ping_failures = 3

[storage]
backend = "memory"
path = "/tmp/x.sqlite3"

[log]
format = "JSON"
level = "debug"

[api]
listen = "0.0.0.0:8081"
enabled = true
allow_insecure_remote = true
tls_cert_file = "/etc/mss/api-cert.pem"
tls_key_file = "/etc/mss/api-key.pem"

[smtp]
host = "smtp.example.com"
port = 2525
security = "tls"
user = "mss"
password = "smtp-secret"
from_address = "voicemail@example.com"
ca_file = "/etc/mss/smtp-ca.pem"
timeout = 10
retry_min = 5
retry_max = 600
give_up_after = 86400

[media]
rtp_port_min = 30000
rtp_port_max = 30100
rtp_host = "192.0.2.5"

[voicemail]
silence_timeout = 4.5
"""


def test_toml_every_section(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL_TOML), env={})
    assert cfg.data_dir == "/var/lib/mss"
    assert cfg.sip.domain == "pbx.example.com" and cfg.sip.server_name == "mss/1.0 (test)"
    assert [str(listen) for listen in cfg.transport.listen] == [
        "udp:127.0.0.1:5070",
        "tcp:[::1]:5070",
        "tls:localhost:5071",
    ]
    assert cfg.transport.idle_timeout == 30.0 and isinstance(cfg.transport.idle_timeout, float)
    assert cfg.transport.use_uvloop is False
    assert cfg.transport.gc_threshold == 0
    assert (cfg.transport.gc_freeze_interval, cfg.transport.gc_full_interval) == (0.0, 60.0)
    assert cfg.tls.ca_file == "/etc/mss/ca.pem"
    assert (cfg.stun.enabled, cfg.stun.port, cfg.stun.host) == (False, 0, "::")
    assert cfg.timers.t2 == 2.0
    assert cfg.limits.max_via == 10
    assert cfg.registrar.min_expires == 30
    assert cfg.auth.failed_response == 403
    assert cfg.calls.max_forwards == 20
    assert cfg.security.ban_table_size == 1000
    assert cfg.storage.backend == "memory"
    assert cfg.log.format == "json"  # case-folded to the canonical choice
    assert cfg.api.host == "0.0.0.0"
    assert (cfg.smtp.security, cfg.smtp.effective_port) == ("tls", 2525)
    assert (cfg.media.rtp_port_min, cfg.media.rtp_port_max, cfg.media.rtp_host) == (
        30000,
        30100,
        "192.0.2.5",
    )
    assert cfg.voicemail.silence_timeout == 4.5
    # Everything differs from the defaults, so every key was read.
    flat = dict(flatten(config_to_dict(cfg)))
    defaults = dict(flatten(config_to_dict(DEFAULT_CONFIG)))
    assert [key for key in flat if flat[key] == defaults[key]] == ["api.enabled"]


def test_toml_partial_section_keeps_other_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[registrar]\nmin_expires = 120\n"), env={})
    assert cfg.registrar == RegistrarConfig(min_expires=120)
    assert cfg.sip == DEFAULT_CONFIG.sip


def test_toml_listener_tables(tmp_path: Path) -> None:
    text = """
[transport]
listen = [{ transport = "udp", host = "[::1]", port = 5060 }, "tcp:127.0.0.1:0"]
"""
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.transport.listen == (Listen("udp", "::1", 5060), Listen("tcp", "127.0.0.1", 0))


def test_toml_path_from_mss_config(tmp_path: Path) -> None:
    path = write(tmp_path, '[sip]\ndomain = "from-file.example"\n')
    cfg = load_config(env={"MSS_CONFIG": str(path)})
    assert cfg.sip.domain == "from-file.example"
    # An explicit path wins over MSS_CONFIG.
    other = tmp_path / "other.toml"
    other.write_text('[sip]\ndomain = "explicit.example"\n', encoding="utf-8")
    assert load_config(other, env={"MSS_CONFIG": str(path)}).sip.domain == "explicit.example"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[bogus]\nx = 1\n", "bogus: unknown section"),
        ("bogus = 1\n", "bogus: unknown key"),
        ("[sip]\nbogus = 1\n", "sip.bogus: unknown key"),
        ("sip = 5\n", "sip: expected a table [sip], got integer"),
        ("data_dir = 5\n", "data_dir: expected a string, got integer 5"),
        ('data_dir = ""\n', "data_dir: must not be empty"),
        ("[stun]\nport = true\n", "stun.port: expected an integer, got True"),
        ('[stun]\nport = "3478"\n', "stun.port: expected an integer, got '3478'"),
        ("[stun]\nport = 3478.0\n", "stun.port: expected an integer, got 3478.0"),
        ("[stun]\nport = 70000\n", "stun.port: must be <= 65535"),
        ("[stun]\nenabled = 1\n", "stun.enabled: expected a boolean, got 1"),
        ('[stun]\nenabled = "yes"\n', "stun.enabled: expected a boolean, got 'yes'"),
        (
            "[transport]\nidle_timeout = true\n",
            "transport.idle_timeout: expected a number, got True",
        ),
        ("[transport]\nidle_timeout = 0\n", "transport.idle_timeout: must be > 0"),
        (
            "[transport]\nidle_timeout = nan\n",
            "transport.idle_timeout: must be a finite number, got nan",
        ),
        (
            "[transport]\nidle_timeout = inf\n",
            "transport.idle_timeout: must be a finite number, got inf",
        ),
        ("[transport]\nlisten = 5\n", "transport.listen: expected a list, got integer"),
        ("[transport]\nlisten = []\n", "transport.listen: needs at least one listener"),
        (
            '[transport]\nlisten = ["udp:127.0.0.1:1", "udp:x"]\n',
            "transport.listen[1]: bad listener 'udp:x': expected HOST:PORT",
        ),
        (
            '[transport]\nlisten = ["udp:127.0.0.1:1", 5]\n',
            "transport.listen[1]: expected a table, got integer",
        ),
        (
            '[transport]\nlisten = [{ transport = "udp", port = 99999 }]\n',
            "transport.listen[0].port: must be <= 65535",
        ),
        (
            '[transport]\nlisten = [{ transport = "sctp" }]\n',
            "transport.listen[0].transport: must be one of 'udp', 'tcp', 'tls', got 'sctp'",
        ),
        (
            "[transport]\nlisten = [{ bogus = 1 }]\n",
            "transport.listen[0].bogus: unknown key",
        ),
        (
            '[transport]\nlisten = ["udp:127.0.0.1:5060", "tcp:1.2.3.4:1", "udp:127.0.0.1:5060"]\n',
            "transport.listen[2]: duplicate of listen[0] ('udp:127.0.0.1:5060')",
        ),
        ("[registrar]\nmin_expires = 0\n", "registrar.min_expires: must be >= 1"),
        (
            "[auth]\nfailed_response = 404\n",
            "auth.failed_response: must be one of 401, 403, got 404",
        ),
        (
            '[auth]\nfailed_response = "401"\n',
            "auth.failed_response: must be one of 401, 403, got '401'",
        ),
        ('[log]\nformat = "xml"\n', "log.format: must be one of 'auto', 'text', 'json', got 'xml'"),
        (
            '[log]\nlevel = "loud"\n',
            "log.level: must be one of 'debug', 'info', 'warning', 'error', 'critical', got 'loud'",
        ),
        (
            '[storage]\nbackend = "redis"\n',
            "storage.backend: must be one of 'sqlite', 'memory', got 'redis'",
        ),
        (
            '[sip]\ndomain = "not a host"\n',
            "sip.domain: not an IP address or host name: 'not a host'",
        ),
        (
            '[sip]\nserver_name = "a\\r\\nX-Injected: 1"\n',
            "sip.server_name: must not contain control characters",
        ),
        ('[sip]\nserver_name = ""\n', "sip.server_name: must not be empty"),
        ('[sip]\nrealm = "a\\"b"\n', "sip.realm: must not contain"),
        ('[tls]\ncert_file = ""\nkey_file = "k"\n', "tls.cert_file: must not be empty"),
        ('[api]\nlisten = "localhost"\n', "api.listen: expected HOST:PORT"),
        ('[api]\nlisten = "::1:80"\n', "api.listen: an IPv6 address must be in brackets"),
        ('[stun]\nhost = "-bad-"\n', "stun.host: not an IP address or host name: '-bad-'"),
    ],
)
def test_toml_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    error = error_of(text, tmp_path=tmp_path)
    assert str(error).startswith(message), str(error)
    assert str(error) == f"{error.field}: {error.reason}"
    assert "environment variable" not in str(error)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert info.value.field == str(missing) and info.value.reason.startswith("cannot read")
    error = error_of("[sip\n", tmp_path=tmp_path)
    assert error.field == str(tmp_path / "mss.toml")
    assert error.reason.startswith("invalid TOML")
    assert "\n" not in str(error)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[sip]\ndomain = "\xe9"\n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad, env={})


# ---------------------------------------------------------------------------------------------
# environment and overrides
# ---------------------------------------------------------------------------------------------


def test_env_examples_from_the_brief() -> None:
    cfg = load_config(
        env={
            "MSS_SIP_DOMAIN": "example.com",
            "MSS_TRANSPORT_IDLE_TIMEOUT": "30",
            "MSS_TRANSPORT_LISTEN": "udp:127.0.0.1:5070,tcp:127.0.0.1:5070",
            "MSS_DATA_DIR": "/var/lib/mss",
            "PATH": "/bin",  # not ours: ignored
            "mss_sip_domain": "lower-case names are not ours",
        }
    )
    assert cfg.sip.domain == "example.com"
    assert cfg.transport.idle_timeout == 30.0
    assert cfg.transport.listen == (
        Listen("udp", "127.0.0.1", 5070),
        Listen("tcp", "127.0.0.1", 5070),
    )
    assert cfg.data_dir == "/var/lib/mss"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[(word, True) for word in ("1", "true", "TRUE", "yes", "Yes", "on", " on ")],
        *[(word, False) for word in ("0", "false", "False", "no", "NO", "off")],
    ],
)
def test_env_booleans(text: str, value: bool) -> None:
    assert load_config(env={"MSS_TRANSPORT_USE_UVLOOP": text}).transport.use_uvloop is value


def test_env_conversions() -> None:
    cfg = load_config(
        env={
            "MSS_STUN_PORT": "off",
            "MSS_TLS_CA_FILE": "",
            "MSS_TIMERS_T1": "1e-1",
            "MSS_REGISTRAR_MAX_EXPIRES": "+9000",
            "MSS_AUTH_FAILED_RESPONSE": "403",
            "MSS_LOG_LEVEL": "WARNING",
            "MSS_TRANSPORT_LISTEN": " udp:[::1]:0 , tcp:[::1]:0 ",
        }
    )
    assert cfg.stun.port is None and cfg.tls.ca_file is None
    assert cfg.timers.t1 == 0.1
    assert cfg.registrar.max_expires == 9000
    assert cfg.auth.failed_response == 403
    assert cfg.log.level == "warning"
    assert cfg.transport.listen == (Listen("udp", "::1", 0), Listen("tcp", "::1", 0))
    assert load_config(env={"MSS_STUN_PORT": "none"}).stun.port is None
    assert load_config(env={"MSS_STUN_PORT": ""}).stun.port is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MSS_SIP_BOGUS": "1"},
            "sip.bogus: unknown key (from environment variable MSS_SIP_BOGUS)",
        ),
        ({"MSS_BOGUS": "1"}, "bogus: unknown key (from environment variable MSS_BOGUS)"),
        (
            {"MSS_BOGUS_KEY": "1"},
            "bogus_key: unknown key (from environment variable MSS_BOGUS_KEY)",
        ),
        ({"MSS_SIP": "x"}, "sip: is a section, not a key (from environment variable MSS_SIP)"),
        (
            {"MSS_SIP.DOMAIN": "x"},
            "sip.domain: unknown key (from environment variable MSS_SIP.DOMAIN)",
        ),
        (
            {"MSS_REGISTRAR_MIN_EXPIRES": "0"},
            "registrar.min_expires: must be >= 1 (from environment variable MSS_REGISTRAR_MIN_EXPIRES)",
        ),
        (
            {"MSS_TRANSPORT_IDLE_TIMEOUT": "soon"},
            "transport.idle_timeout: expected a number, got 'soon' (from environment variable "
            "MSS_TRANSPORT_IDLE_TIMEOUT)",
        ),
        (
            {"MSS_TRANSPORT_USE_UVLOOP": "maybe"},
            "transport.use_uvloop: expected a boolean, got 'maybe'",
        ),
        ({"MSS_STUN_PORT": "5060.0"}, "stun.port: expected an integer, got '5060.0'"),
        ({"MSS_STUN_PORT": "9" * 100}, "stun.port: expected an integer"),
        ({"MSS_STUN_PORT": "99999"}, "stun.port: must be <= 65535"),
        ({"MSS_TIMERS_T1": "inf"}, "timers.t1: must be a finite number, got 'inf'"),
        (
            {"MSS_TRANSPORT_LISTEN": "udp:127.0.0.1:5070,udp:x"},
            "transport.listen[1]: bad listener 'udp:x': expected HOST:PORT "
            "(from environment variable MSS_TRANSPORT_LISTEN)",
        ),
        ({"MSS_TRANSPORT_LISTEN": "udp:127.0.0.1:5070,"}, "transport.listen[1]: bad listener ''"),
        ({"MSS_TRANSPORT_LISTEN": ""}, "transport.listen: needs at least one listener"),
        (
            {"MSS_DATA_DIR": ""},
            "data_dir: must not be empty (from environment variable MSS_DATA_DIR)",
        ),
        ({"MSS_AUTH_FAILED_RESPONSE": "400"}, "auth.failed_response: must be one of 401, 403"),
    ],
)
def test_env_errors_name_the_field_and_variable(env: dict[str, str], message: str) -> None:
    error = error_of(env=env)
    assert str(error).startswith(message), str(error)
    (name,) = env
    assert str(error).endswith(f"(from environment variable {name})")


def test_mss_config_is_not_a_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_config(env={"MSS_CONFIG": str(path)}) == DEFAULT_CONFIG
    assert load_config(env={"MSS_CONFIG": ""}) == DEFAULT_CONFIG


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[sip]\ndomain = "file.example"\nserver_name = "file"\nrealm = "file-realm"\n'
        "[transport]\nidle_timeout = 10\n",
    )
    env = {"MSS_SIP_DOMAIN": "env.example", "MSS_SIP_SERVER_NAME": "env"}
    overrides: dict[str, object] = {"sip.domain": "cli.example", "transport.listen": None}
    cfg = load_config(path, env=env, overrides=overrides)
    assert cfg.sip.domain == "cli.example"  # overrides > env > file
    assert cfg.sip.server_name == "env"  # env > file
    assert cfg.sip.realm == "file-realm"  # file only
    assert cfg.transport.idle_timeout == 10.0
    assert cfg.transport.listen == DEFAULT_CONFIG.transport.listen  # None = option not given


def test_env_error_blames_env_only_when_env_set_the_key(tmp_path: Path) -> None:
    error = error_of(env={"MSS_REGISTRAR_DEFAULT_EXPIRES": "50"})
    assert str(error) == (
        "registrar.default_expires: must be >= min_expires (60) "
        "(from environment variable MSS_REGISTRAR_DEFAULT_EXPIRES)"
    )
    # The blamed key came from the file: no variable is named.
    path = write(tmp_path, "[registrar]\ndefault_expires = 30\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"MSS_REGISTRAR_MAX_EXPIRES": "8000"})
    assert str(info.value) == "registrar.default_expires: must be >= min_expires (60)"


def test_overrides() -> None:
    cfg = load_config(
        env={"MSS_SIP_DOMAIN": "env.example"},
        overrides={
            "sip.domain": "cli.example",
            "transport.listen": ["udp:127.0.0.1:0", Listen("tcp", "127.0.0.1", 0)],
            "transport.idle_timeout": "15",  # text, like the environment
            "stun.port": 0,
            "data_dir": Path("/srv/mss").as_posix(),
            "api.enabled": False,
        },
    )
    assert cfg.sip.domain == "cli.example"
    assert cfg.transport.listen == (Listen("udp", "127.0.0.1", 0), Listen("tcp", "127.0.0.1", 0))
    assert cfg.transport.idle_timeout == 15.0
    assert cfg.stun.port == 0 and cfg.stun.dedicated_port is None
    assert cfg.data_dir == "/srv/mss"
    assert cfg.api.enabled is False
    listen = load_config(env={}, overrides={"transport.listen": "udp:[::1]:5070,tcp:[::1]:5070"})
    assert len(listen.transport.listen) == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sip.bogus": 1}, "sip.bogus: unknown key"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"sip": "x"}, "sip: is a section, not a key"),
        ({"transport.listen.x": "y"}, "transport.listen.x: unknown key"),
        ({"stun.port": True}, "stun.port: expected an integer, got True"),
        ({"stun.port": "true"}, "stun.port: expected an integer, got 'true'"),
        ({"transport.use_uvloop": 1}, "transport.use_uvloop: expected a boolean, got 1"),
        (
            {"transport.listen": ["udp:127.0.0.1:1", "tcp"]},
            "transport.listen[1]: bad listener 'tcp'",
        ),
        ({"transport.idle_timeout": 10**400}, "transport.idle_timeout: out of range"),
    ],
)
def test_override_errors(overrides: dict[str, object], message: str) -> None:
    assert str(error_of(overrides=overrides)).startswith(message)


# ---------------------------------------------------------------------------------------------
# Listen.parse
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("udp:0.0.0.0:5060", Listen("udp", "0.0.0.0", 5060)),
        ("tcp:[::1]:5060", Listen("tcp", "::1", 5060)),
        ("tcp:[::]:0", Listen("tcp", "::", 0)),
        ("tls:example.com:5061", Listen("tls", "example.com", 5061)),
        ("TLS:Example.COM:5061", Listen("tls", "example.com", 5061)),
        ("udp:localhost:65535", Listen("udp", "localhost", 65535)),
        ("udp:[2001:DB8:0:0::1]:5060", Listen("udp", "2001:db8::1", 5060)),
        ("udp:[fe80::1%eth0]:5060", Listen("udp", "fe80::1%eth0", 5060)),
        (" udp:127.0.0.1:5060 ", Listen("udp", "127.0.0.1", 5060)),
        ("udp:pbx.example.com.:5060", Listen("udp", "pbx.example.com.", 5060)),
    ],
)
def test_listen_parse(text: str, expected: Listen) -> None:
    assert Listen.parse(text) == expected
    assert Listen.parse(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("udp:x", "expected HOST:PORT"),
        ("udp", "expected TRANSPORT:HOST:PORT"),
        ("", "expected TRANSPORT:HOST:PORT"),
        ("sctp:1.2.3.4:5060", "transport must be udp, tcp or tls"),
        ("ws:1.2.3.4:5060", "transport must be udp, tcp or tls"),
        ("udp:::1:5060", "an IPv6 address must be in brackets"),
        ("udp:[::1]5060", "expected [IPV6]:PORT"),
        ("udp:[::1:5060", "expected [IPV6]:PORT"),
        ("udp:[1.2.3.4]:5060", "only IPv6 addresses go in brackets"),
        ("udp:[example.com]:5060", "not an IP address or host name"),
        ("udp:1.2.3.4:65536", "port must be a number 0..65535"),
        ("udp:1.2.3.4:-1", "port must be a number 0..65535"),
        ("udp:1.2.3.4:", "port must be a number 0..65535"),
        ("udp:1.2.3.4:50 60", "port must be a number 0..65535"),
        ("udp:1.2.3.4:٥٠٦٠", "port must be a number 0..65535"),
        ("udp::5060", "not an IP address or host name: ''"),
        ("udp:256.1.1.1:5060", "not an IP address or host name"),
        ("udp:-host:5060", "not an IP address or host name"),
        ("udp:ho_st:5060", "not an IP address or host name"),
        ("udp:a..b:5060", "not an IP address or host name"),
        ("udp:" + "a" * 64 + ":5060", "not an IP address or host name"),
        ("udp:host name:5060", "not an IP address or host name"),
    ],
)
def test_listen_parse_errors(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        Listen.parse(text)
    assert info.value.field == "listen"
    reason = info.value.reason
    assert reason.startswith(f"bad listener {text[:40]!r}"[:-1]) and f": {why}" in reason, reason


def test_listen_parse_rejects_non_strings() -> None:
    with pytest.raises(ConfigError, match="expected a string"):
        Listen.parse(5060)  # type: ignore[arg-type]


@given(
    transport=st.sampled_from(["udp", "tcp", "tls"]),
    address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=st.integers(0, 65535),
)
def test_listen_round_trip(transport: str, address: Any, port: int) -> None:
    text = (
        f"{transport}:[{address}]:{port}"
        if address.version == 6
        else f"{transport}:{address}:{port}"
    )
    listen = Listen.parse(text)
    assert (listen.transport, listen.host, listen.port) == (transport, address.compressed, port)
    assert Listen.parse(str(listen)) == listen


# ---------------------------------------------------------------------------------------------
# cross-field checks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MSS_REGISTRAR_MIN_EXPIRES": "100", "MSS_REGISTRAR_MAX_EXPIRES": "50"},
            "registrar.max_expires: must be >= min_expires (100)",
        ),
        (
            {"MSS_REGISTRAR_DEFAULT_EXPIRES": "30"},
            "registrar.default_expires: must be >= min_expires (60)",
        ),
        (
            {"MSS_REGISTRAR_DEFAULT_EXPIRES": "9000"},
            "registrar.default_expires: must be <= max_expires (7200)",
        ),
        ({"MSS_TIMERS_T1": "5"}, "timers.t1: must be <= t2 (4.0)"),
        (
            {"MSS_TRANSPORT_LISTEN": "udp:0.0.0.0:5060,tls:0.0.0.0:5061"},
            "tls.cert_file: required by the tls listener transport.listen[1] ('tls:0.0.0.0:5061')",
        ),
        (
            {
                "MSS_TRANSPORT_LISTEN": "tls:0.0.0.0:5061",
                "MSS_TLS_CERT_FILE": "c",
                "MSS_TLS_KEY_FILE": "",
            },
            "tls.key_file: required when cert_file is set",
        ),
        ({"MSS_TLS_KEY_FILE": "k"}, "tls.cert_file: required when key_file is set"),
        (
            {"MSS_TRANSPORT_MAX_CONNECTIONS": "10"},
            "transport.max_connections_per_source: must be <= max_connections (10)",
        ),
        (
            {"MSS_SECURITY_F2B_MAX_BAN_TIME": "60"},
            "security.f2b_max_ban_time: must be >= f2b_ban_time (10800)",
        ),
        ({"MSS_SECURITY_F2B_MAX_FAILURES": "0"}, "security.f2b_max_failures: must be >= 1"),
        ({"MSS_SECURITY_F2B_WINDOW": "-5"}, "security.f2b_window: must be >= 1"),
        ({"MSS_SECURITY_BAN_TABLE_SIZE": "0"}, "security.ban_table_size: must be >= 1"),
        (
            {"MSS_API_LISTEN": "0.0.0.0:8080"},
            "api.listen: 0.0.0.0 is not a loopback address; set allow_insecure_remote = true",
        ),
        ({"MSS_STUN_PORT": "5060"}, "stun.port: 5060 is the SIP UDP port of transport.listen[0]"),
    ],
)
def test_cross_field_checks(env: dict[str, str], message: str) -> None:
    assert str(error_of(env=env)).startswith(message), str(error_of(env=env))


def test_cross_field_checks_pass_when_consistent() -> None:
    cfg = load_config(
        env={
            "MSS_TRANSPORT_LISTEN": "udp:0.0.0.0:5060,tls:0.0.0.0:5061",
            "MSS_TLS_CERT_FILE": "/c.pem",
            "MSS_TLS_KEY_FILE": "/k.pem",
            "MSS_API_LISTEN": "0.0.0.0:8080",
            "MSS_API_ALLOW_INSECURE_REMOTE": "yes",
            "MSS_REGISTRAR_MIN_EXPIRES": "3600",
            "MSS_REGISTRAR_MAX_EXPIRES": "3600",
            "MSS_TIMERS_T1": "4",
        }
    )
    assert cfg.tls.cert_file == "/c.pem"
    # A disabled API may point anywhere; STUN on a SIP port of another address is fine.
    load_config(env={"MSS_API_LISTEN": "0.0.0.0:8080", "MSS_API_ENABLED": "0"})
    load_config(env={"MSS_TRANSPORT_LISTEN": "udp:127.0.0.1:3478", "MSS_STUN_HOST": "127.0.0.2"})
    load_config(env={"MSS_STUN_PORT": "5060", "MSS_STUN_ENABLED": "no"})
    # Ephemeral ports may repeat.
    load_config(env={"MSS_TRANSPORT_LISTEN": "udp:127.0.0.1:0,udp:127.0.0.1:0"})


# ---------------------------------------------------------------------------------------------
# config_to_dict
# ---------------------------------------------------------------------------------------------


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            items += flatten(value, f"{dotted}.")
        else:
            items.append((dotted, value))
    return items


def test_config_to_dict_shape_and_round_trip(tmp_path: Path) -> None:
    data = config_to_dict(DEFAULT_CONFIG)
    assert data["transport"]["listen"] == ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
    assert data["tls"]["cert_file"] is None
    assert set(data) == {f.name for f in dataclasses.fields(Config)}
    cfg = load_config(write(tmp_path, FULL_TOML), env={})
    data = config_to_dict(cfg)
    assert load_config(env={}, overrides=dict(flatten(data))) == cfg


def test_config_to_dict_redacts_secrets() -> None:
    cfg = load_config(env={"MSS_AUTH_SECRET": "hunter2"})
    assert config_to_dict(cfg)["auth"]["secret"] == "hunter2"
    assert config_to_dict(cfg, redact_secrets=True)["auth"]["secret"] == "********"
    assert config_to_dict(DEFAULT_CONFIG, redact_secrets=True)["auth"]["secret"] == ""


# ---------------------------------------------------------------------------------------------
# generic over fields: every key works from the environment; names stay unambiguous
# ---------------------------------------------------------------------------------------------


def env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)


@pytest.mark.parametrize(("key", "value"), flatten(config_to_dict(DEFAULT_CONFIG)))
def test_every_key_settable_from_env(key: str, value: Any) -> None:
    assert load_config(env={env_var_name(key): env_text(value)}) == DEFAULT_CONFIG


def test_env_var_names_are_unambiguous() -> None:
    sections = section_names()
    assert all("_" not in name for name in sections)
    top_level = [key for key, _, _ in all_keys() if "." not in key]
    for key in top_level:
        assert not any(key.startswith(f"{name}_") for name in sections), key
    names = [env_var_name(key) for key, _, _ in all_keys()]
    assert len(names) == len(set(names))
    assert env_var_name("transport.idle_timeout") == "MSS_TRANSPORT_IDLE_TIMEOUT"
    assert env_var_name("data_dir") == "MSS_DATA_DIR"


def test_every_field_is_documented_in_metadata() -> None:
    for key, f, _ in all_keys():
        assert f.metadata.get("doc"), key


# ---------------------------------------------------------------------------------------------
# docs/configuration.md
# ---------------------------------------------------------------------------------------------


def test_docs_mention_every_key_and_variable() -> None:
    text = DOC.read_text(encoding="utf-8")
    for key, _, _ in all_keys():
        section, _, name = key.rpartition(".")
        if section:
            assert f"### `[{section}]`" in text, section
        assert f"| `{name}` |" in text, key
        assert f"`{env_var_name(key)}`" in text, key


def test_docs_reference_is_generated_from_the_dataclasses() -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- BEGIN GENERATED[^>]*-->\n\n(.*)<!-- END GENERATED -->", text, re.DOTALL
    )
    assert match is not None
    assert match.group(1) == config_reference_markdown(), (
        "docs/configuration.md is stale: paste the output of "
        "mss.config.config_reference_markdown() between the GENERATED markers"
    )


def test_docs_example_toml_loads(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert blocks
    for block in blocks:
        cfg = load_config(write(tmp_path, block), env={})
        assert cfg.sip.domain == "pbx.example.com"


# ---------------------------------------------------------------------------------------------
# property tests: junk never escapes as anything but ConfigError
# ---------------------------------------------------------------------------------------------

ENV_NAMES = [env_var_name(key) for key, _, _ in all_keys()]
junk_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", "0", "-1", "1e309", "nan", "true", "off", "none", "[::1]", "udp:x:1", ","]
    ),
    st.from_regex(
        r"(udp|tcp|tls|UDP|x)?:?\[?[0-9a-f:.]{0,12}\]?:?[0-9]{0,6}(,.*)?", fullmatch=True
    ),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
junk_names = st.one_of(
    st.sampled_from(ENV_NAMES),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_.0", max_size=20).map(lambda s: "MSS_" + s),
)


@settings(max_examples=300, deadline=None)
@given(env=st.dictionaries(junk_names, junk_text.filter(lambda s: "\x00" not in s), max_size=6))
def test_junk_env_loads_or_raises_config_error(env: dict[str, str]) -> None:
    try:
        cfg = load_config(env=env)
    except ConfigError as error:
        assert str(error) == f"{error.field}: {error.reason}"
        assert "\n" not in str(error)
    else:
        assert isinstance(cfg, Config)


junk_values: st.SearchStrategy[object] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        junk_text,
        st.binary(max_size=5),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)
OVERRIDE_KEYS = [key for key, _, _ in all_keys()] + [
    "sip",
    "bogus",
    "sip.bogus",
    "transport.listen.x",
]


@settings(max_examples=300, deadline=None)
@given(overrides=st.dictionaries(st.sampled_from(OVERRIDE_KEYS), junk_values, max_size=5))
def test_junk_overrides_load_or_raise_config_error(overrides: dict[str, object]) -> None:
    try:
        cfg = load_config(env={}, overrides=overrides)
    except ConfigError as error:
        assert str(error) == f"{error.field}: {error.reason}"
    else:
        assert isinstance(cfg, Config)


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from([*section_names(), "data_dir", "bogus"]), junk_values, max_size=4
    )
)
def test_junk_toml_loads_or_raises_config_error(
    tmp_path_factory: Any, data: dict[str, Any]
) -> None:
    """TOML-shaped junk: written with a tiny serializer for the value kinds TOML has."""
    path = tmp_path_factory.mktemp("junk") / "mss.toml"
    lines: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(f"[{key}]")
            tables += [
                f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items() if toml_value(v)
            ]
        elif toml_value(value):
            lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines + tables) + "\n", encoding="utf-8")
    try:
        load_config(path, env={})
    except ConfigError as error:
        assert "\n" not in str(error)


def toml_key(key: object) -> str:
    return '"' + str(key).encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def toml_value(value: object) -> str:
    """A TOML literal for value, or "" when TOML cannot express it (None, bytes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if -(2**63) <= value < 2**63 else ""
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return toml_key(value)
    if isinstance(value, list):
        items = [toml_value(item) for item in value]
        return "[" + ", ".join(items) + "]" if all(items) else ""
    if isinstance(value, dict):
        items = [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
        return "{" + ", ".join(items) + "}" if all(toml_value(v) for v in value.values()) else ""
    return ""


def test_registrar_persistence_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, '[registrar]\npersist = "later"\n'), env={})
    assert "registrar.persist" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[registrar]\nwrite_back_interval = 0\n"), env={})
    assert "registrar.write_back_interval" in str(e.value)
    cfg = load_config(
        None,
        env={"MSS_REGISTRAR_PERSIST": "write-back", "MSS_REGISTRAR_WRITE_BACK_INTERVAL": "2.5"},
    )
    assert (cfg.registrar.persist, cfg.registrar.write_back_interval) == ("write-back", 2.5)


def test_gc_intervals_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[transport]\ngc_freeze_interval = 0.001\n"), env={})
    assert "transport.gc_freeze_interval" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[transport]\ngc_full_interval = -1\n"), env={})
    assert "transport.gc_full_interval" in str(e.value)
