"""Config: file lookup, precedence, and clear errors for every way a file can be wrong."""
import re
from dataclasses import fields
from pathlib import Path

import pytest

from gaitcam.config import PARSERS, Config, load_config
from gaitcam.errors import FormatError, GaitcamError

EXAMPLE = Path(__file__).resolve().parents[1] / "gaitcam.example.toml"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real config of the developer's may leak in: empty cwd, XDG folders inside tmp."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path):
    c = load_config(None, {})
    assert c == Config() and c.source is None
    assert (c.threshold, c.f, c.stride, c.threads, c.queue_size) == (None, 6, 3, 1, 64)
    assert c.gallery == tmp_path / "xdg-data" / "gaitcam" / "gallery.db"


def test_xdg_falls_back_to_home_when_unset_or_relative(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    write(tmp_path / "home" / ".config" / "gaitcam" / "config.toml", "stride = 5\n")
    c = load_config(None, {})
    assert c.gallery == tmp_path / "home" / ".local" / "share" / "gaitcam" / "gallery.db"
    assert c.stride == 5


def test_lookup_order_cwd_then_xdg(tmp_path):
    user = write(tmp_path / "xdg-config" / "gaitcam" / "config.toml", "threads = 2\n")
    assert load_config(None, {}).source == user
    write(tmp_path / "gaitcam.toml", "threads = 3\n")
    c = load_config(None, {})
    assert (c.threads, c.source) == (3, Path("gaitcam.toml"))
    assert load_config(user, {}).threads == 2  # a named file wins over both


def test_overrides_win_and_none_means_not_given(tmp_path):
    path = write(tmp_path / "c.toml", 'threshold = 1\nstride = 4\nlog_level = "debug"\nweights = "~/w/m"\n')
    c = load_config(path, {"stride": 2, "threshold": None, "gallery": "elsewhere.db"})
    assert (c.stride, c.threshold, c.log_level) == (2, 1.0, "DEBUG")
    assert isinstance(c.threshold, float)
    assert c.gallery == Path("elsewhere.db") and c.weights == Path("~/w/m").expanduser()
    with pytest.raises(GaitcamError, match=r"^--queue-size: expected an integer >= 1, got 0$"):
        load_config(path, {"queue_size": 0})
    with pytest.raises(ValueError, match="unknown config override"):
        load_config(path, {"sensor": "kinect"})


@pytest.mark.parametrize("text, message", [
    ("stride = ", "invalid TOML"),
    ("treshold = 0.4", "unknown key 'treshold' (did you mean 'threshold'?)"),
    ("[live]\nstride = 3", "unknown key 'live'"),
    ('stride = "3"', "stride: expected an integer >= 1, got '3'"),
    ("f = 1", "f: expected an integer >= 2"),
    ("threads = true", "threads: expected an integer >= 1, got True"),
    ('threshold = "high"', "threshold: expected a number"),
    ("threshold = nan", "threshold: expected a number"),
    ('device = "gpu"', "device: expected auto, cpu"),
    ('log_level = "LOUD"', "log_level: expected one of"),
    ("gallery = 3", "gallery: expected a path"),
])
def test_bad_files_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path / "bad.toml", text + "\n")
    with pytest.raises(FormatError) as e:
        load_config(path, {})
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_named_file_must_exist(tmp_path):
    with pytest.raises(FormatError, match="missing.toml: config file not found"):
        load_config(tmp_path / "missing.toml", {})
    with pytest.raises(FormatError, match="cannot read config"):
        load_config(tmp_path, {})


def test_every_field_has_a_parser():
    assert set(PARSERS) == {f.name for f in fields(Config)} - {"source"}


def test_example_documents_every_key_and_loads_as_the_defaults():
    lines = EXAMPLE.read_text().splitlines()
    key = re.compile(r"#? ?(\w+) = ")
    keys = [m[1] for line in lines if (m := key.match(line))]
    assert sorted(keys) == sorted(PARSERS)
    documented = [m[1] for above, line in zip(lines, lines[1:])
                  if (m := key.match(line)) and above.startswith("#") and not key.match(above)]
    assert sorted(documented) == sorted(PARSERS)  # a comment right above every key
    assert load_config(EXAMPLE, {}) == Config()


def test_example_commented_values_are_valid_when_uncommented(tmp_path):
    keys = "|".join(PARSERS)
    text = re.sub(rf"^# ((?:{keys}) = )", r"\1", EXAMPLE.read_text(), flags=re.M)
    c = load_config(write(tmp_path / "all.toml", text), {})
    assert c.threshold == 0.5
    assert c.gallery == Path.home() / ".local" / "share" / "gaitcam" / "gallery.db"
