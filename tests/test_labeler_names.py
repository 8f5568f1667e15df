"""Name normalisation: Blender and file names into words."""

from __future__ import annotations

import pytest

from shared.names import is_test_fixture, pack_phrase, path_parts, phrase, words


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Smooth_Male_Casual.001", ["male", "casual"]),
        ("BedDouble_02", ["bed", "double"]),
        ("BookCase_LeftDoor", ["book", "case", "left", "door"]),
        ("Cube.004", []),
        ("LowPoly_Final_Mesh", []),
        ("AvocadoFlatshaded", ["avocado"]),
        ("blend_low_poly_tree", ["tree"]),
        ("Table2", ["table"]),
        ("Potion5HalfFull", ["potion", "half", "full"]),
        ("Rock3D", ["rock"]),
        ("flower_2", ["flower"]),
        ("P90", ["p90"]),
        ("HTMLParser", ["html", "parser"]),
        ("chairDesk", ["chair", "desk"]),
        ("", []),
        (None, []),
    ],
)
def test_words(name: str | None, expected: list[str]) -> None:
    assert words(name) == expected


def test_a_test_scenes_objects_keep_their_primitive_names() -> None:
    assert is_test_fixture("tests/scenes/25_drivers_disable_viewport.blend")
    assert not is_test_fixture("FreeModels by Quaternius/Furniture Pack/Blends/Chair.blend")
    assert not is_test_fixture("tests.blend") and not is_test_fixture(None)
    assert words("Cube.001", primitives=True) == ["cube"] and words("Cube.001") == []
    assert phrase("UV_Sphere_Mat", primitives=True) == "uv sphere"
    assert phrase("Suzanne.002") == "monkey head"  # Blender's monkey, in words an encoder knows


def test_phrase_and_pack_phrase() -> None:
    assert phrase("Sofa_individual") == "sofa individual"
    assert pack_phrase("Furniture Pack - March 2019") == "furniture"
    assert pack_phrase("Animal_Pack_Vol.2_-_Jul_2017") == "animal"


def test_path_parts_without_metadata() -> None:
    quaternius = path_parts(
        "blend/quaternius/Home_and_Buildings/Furniture_Pack_-_March_2019/BedDouble.blend", None
    )
    assert quaternius == {
        "category": "Home and Buildings",
        "pack": "Furniture Pack - March 2019",
        "asset_name": "BedDouble",
    }
    zeyu = path_parts(None, "blend/zeyu_free_blender_models/blend_chair.blend")
    assert zeyu == {"category": "", "pack": "zeyu free blender models", "asset_name": "blend_chair"}


def test_asset_rows_from_the_scraper_local_source() -> None:
    """The scraper's local source keeps the corpus path as meta.local_path and writes its own
    attribution; the labeller reads the path and the builder uses the README's attribution text."""
    from services.labeler.dataset import attribution_for
    from services.labeler.labeller import asset_names
    from shared.db.models import Asset

    zeyu = Asset(
        sha256="1" * 64,
        license="CC-BY-4.0",
        source_url="https://github.com/Zeyu-Li/free-blender-models/blob/7d9d2f3/blend/chair.blend",
        attribution="chair from Zeyu-Li/free-blender-models, CC-BY-4.0",
        meta={"format": "blend", "local_path": "blend/zeyu_free_blender_models/blend_chair.blend"},
    )
    assert asset_names(zeyu) == {
        "category": "",
        "pack": "zeyu free blender models",
        "asset_name": "blend_chair",
    }
    assert "Zeyu Li" in attribution_for(zeyu) and "Attribution 4.0 International" in attribution_for(zeyu)
    cc0 = Asset(sha256="2" * 64, license="CC0-1.0", source_url="https://github.com/a/b", meta={"pack": "P"})
    assert attribution_for(cc0) is None and asset_names(cc0)["pack"] == "P"
    apache = Asset(
        sha256="3" * 64, license="Apache-2.0", source_url="https://github.com/KhronosGroup/x", title="cube"
    )
    assert attribution_for(apache) == "cube, from https://github.com/KhronosGroup/x, Apache-2.0"
