"""Settings: precedence (connect config > configure > env > config.toml > defaults), sources,
validation when set, and clear errors for malformed input."""

from __future__ import annotations

import pytest

import pxlite as pxl
from pxlite import config
from pxlite.errors import ConfigError


def _toml(home, text):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def test_precedence_and_sources(pxlite_home, monkeypatch, tmp_path):
    assert config.resolve()["file_cache_size_g"] == 10.0
    assert config.resolve().sources["file_cache_size_g"] == "default"
    _toml(pxlite_home, "[pxlite]\nfile_cache_size_g = 3\ninput_media_dest = '/toml/in/'\n"
                       "[s3]\nregion = 'eu-west-1'\n")
    s = config.resolve()
    assert s["file_cache_size_g"] == 3.0 and s.sources["file_cache_size_g"].endswith("config.toml")
    assert s.provider("s3") == {"region": "eu-west-1"}
    monkeypatch.setenv("PXLITE_FILE_CACHE_SIZE_G", "4.5")
    monkeypatch.setenv("PXLITE_S3_REGION", "us-west-2")
    s = config.resolve()
    assert s["file_cache_size_g"] == 4.5 and s.sources["file_cache_size_g"] == "environment"
    assert s.provider("s3")["region"] == "us-west-2"
    pxl.configure(file_cache_size_g=5, s3={"endpoint_url": "http://127.0.0.1:1"})
    s = config.resolve()
    assert s["file_cache_size_g"] == 5.0 and s.sources["file_cache_size_g"] == "configure()"
    assert s.provider("s3") == {"region": "us-west-2", "endpoint_url": "http://127.0.0.1:1"}
    s = config.resolve({"file_cache_size_g": 6, "s3": {"region": "ap-south-1"}})
    assert s["file_cache_size_g"] == 6.0 and s.sources["file_cache_size_g"] == "connect(config=)"
    assert s.provider("s3")["region"] == "ap-south-1"
    assert s["input_media_dest"] == "/toml/in/"  # untouched layers still show through
    pxl.configure(file_cache_size_g=None)
    assert config.resolve()["file_cache_size_g"] == 4.5


def test_connect_config_applies_to_that_database(tmp_path):
    out = tmp_path / "out"
    db = pxl.connect(tmp_path / "a.pxl", config={"output_media_dest": str(out)})
    other = pxl.connect(tmp_path / "b.pxl")
    assert db.settings()["output_media_dest"] == str(out) and out.is_dir()  # created when set
    assert other.settings()["output_media_dest"] is None
    nested = pxl.connect(tmp_path / "c.pxl", config={"pxlite": {"file_cache_size_g": 2}})
    assert nested.settings()["file_cache_size_g"] == 2.0


@pytest.mark.parametrize("bad,msg", [
    ({"file_cache_size_g": -1}, "positive"),
    ({"file_cache_size_g": "lots"}, "number"),
    ({"output_media_dir": "/x"}, "unknown setting 'output_media_dir'"),
    ({"s3": {"endpoint": "x"}}, r"unknown setting\(s\) \['endpoint'\] in \[s3\]"),
    ({"s3": "http://x"}, "must be a table"),
    ({"progress": "maybe"}, "true or false"),
    ({"storage_retries": -1}, "storage_retries: expected a whole number >= 0, got -1"),
    ({"max_image_pixels": "many"}, "max_image_pixels: expected a whole number, got 'many'"),
    ({"max_download_bytes": 0}, "max_download_bytes: expected a whole number >= 1, got 0"),
])
def test_bad_settings(bad, msg, tmp_path):
    with pytest.raises(ConfigError, match=msg):
        pxl.configure(**bad)
    with pytest.raises(ConfigError, match=msg):
        pxl.connect(tmp_path / "x.pxl", config=bad)


def test_malformed_toml_names_the_line(pxlite_home, tmp_path):
    _toml(pxlite_home, "[pxlite]\nfile_cache_size_g = 3\ninput_media_dest = \n")
    with pytest.raises(ConfigError, match=r"config.toml is not valid TOML.*line 3"):
        config.resolve()
    with pytest.raises(ConfigError, match="not valid TOML"):
        pxl.connect(tmp_path / "x.pxl")
    _toml(pxlite_home, "[pxlite]\nfile_cache_size = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'file_cache_size'"):
        config.resolve()


def test_bad_env_value(monkeypatch):
    monkeypatch.setenv("PXLITE_FILE_CACHE_SIZE_G", "ten")
    with pytest.raises(ConfigError, match="environment: file_cache_size_g"):
        config.resolve()


@pytest.mark.parametrize("dest", ["ftp://host/x/", "s3://", "s3:///key", "gs://Bad_Bucket/x"])
def test_destinations_validated_when_set(dest, tmp_path):
    with pytest.raises(ConfigError):
        pxl.configure(output_media_dest=dest)
    assert config.resolve()["output_media_dest"] is None  # a failed destination is not kept
    with pytest.raises(ConfigError):
        pxl.connect(tmp_path / "x.pxl", config={"input_media_dest": dest})


def test_local_destination_created_when_set(tmp_path):
    d = tmp_path / "new" / "out"
    pxl.configure(output_media_dest=str(d))
    assert d.is_dir()


def test_secrets_masked_in_describe():
    s = config.resolve({"s3": {"aws_secret_access_key": "abcdefghijkl", "region": "x"},
                        "azure": {"connection_string": "AccountKey=verysecret;"}})
    text = repr(s.describe())
    assert "abcdefghijkl" not in text and "verysecret" not in text and "'x'" in text


def test_configure_is_all_or_nothing(moto_server, tmp_path):
    """A destination that fails validation leaves every setting of that call unapplied, and
    the settings made before it untouched (issue 12, point 18)."""
    from fixtures_storage import s3_config

    kept = tmp_path / "kept"
    pxl.configure(output_media_dest=str(kept), file_cache_size_g=2)
    with pytest.raises(ConfigError, match="nonexistent"):
        pxl.configure(output_media_dest="s3://nonexistent/",
                      s3=s3_config("s3", moto_server.endpoint), file_cache_size_g=3)
    s = config.resolve()
    assert s.provider("s3") == {}  # the s3={...} part was not applied
    assert s["output_media_dest"] == str(kept) and s["file_cache_size_g"] == 2.0
    # a local destination that cannot be created, and a bad key: the same, nothing applied
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError):
        pxl.configure(output_media_dest=str(tmp_path / "afile" / "out"), s3={"region": "x"})
    with pytest.raises(ConfigError, match=r"configure\(\): file_cache_size_g"):
        pxl.configure(output_media_dest=str(tmp_path / "o2"), file_cache_size_g="lots")
    s = config.resolve()
    assert s.provider("s3") == {} and s["output_media_dest"] == str(kept)
    assert s["file_cache_size_g"] == 2.0 and not (tmp_path / "o2").exists()
