"""Bugs mypy found (issue 9, point 5): each one is pinned here by the behaviour it fixed."""

from __future__ import annotations

import pytest
from PIL import Image as PILImage

from pxlite.catalog import ColumnMeta, TableMeta
from pxlite.config import resolve
from pxlite.errors import ConfigError, SchemaError
from pxlite.exprs import ColumnRef, RowContext
from pxlite.types import Image

META = TableMeta(id=1, uid="u", path="t", columns=[ColumnMeta(1, "image", 0, Image)])
REF = ColumnRef(META, META.columns[0])
IMG = PILImage.new("RGB", (8, 6), (10, 20, 30))


class _Resolver:
    def value(self, col: ColumnMeta, uri: str) -> PILImage.Image:
        return IMG

    def fileurl(self, uri: str) -> str:
        return uri

    def localpath(self, uri: str) -> str:
        return uri


def _row() -> RowContext:
    return RowContext({1: "img"}, None, _Resolver())


@pytest.mark.parametrize("build, match", [
    (lambda: REF.convert("P", palette=None), r"convert\(\): palette must be an int .* got None"),
    (lambda: REF.quantize(4, dither=None), r"quantize\(\): dither must be an int .* got None"),
])
def test_none_for_an_enum_option_is_a_schema_error(build, match) -> None:
    """convert(palette=None) and quantize(dither=None) reached Pillow's enum constructors and
    failed with a bare ValueError ("None is not a valid Palette"), unlike every other bad option
    value, which is a SchemaError naming the function and the parameter."""
    with pytest.raises(SchemaError, match=match):
        build().eval(_row())


def test_options_that_take_none_still_do() -> None:
    assert REF.convert("P", dither=None).eval(_row()).mode == "P"
    assert REF.resize((4, 3), resample=None).eval(_row()).size == (4, 3)
    assert REF.quantize(4, method=None).eval(_row()).mode == "P"


class _TokenCredential:
    """An Entra ID credential that must not be asked for a token."""

    def get_token(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the credential was used: presign went on without an account name")


def test_azure_presign_without_an_account_name_says_so() -> None:
    """An https account_url on a custom domain does not tell the SDK the account name, which a
    user delegation SAS signs. presign() fetched a delegation key over the network and then failed
    in the SDK with "can only concatenate str (not NoneType)"; it now refuses up front."""
    pytest.importorskip("azure.storage.blob")
    from pxlite.storage.azure import AzureBackend

    settings = resolve(db_config={"azure": {"account_url": "https://blobs.example.com",
                                            "credential": _TokenCredential()}})
    backend = AzureBackend(settings, "az://photos/")
    assert backend.account is None
    with pytest.raises(ConfigError, match="does not name the storage account") as info:
        backend.presign("az://photos/a.jpg", 60)
    assert "https://<account>.blob.core.windows.net" in str(info.value)
