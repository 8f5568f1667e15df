"""Name normalisation: Blender and file names into words."""

from __future__ import annotations

import pytest

from services.labeler.names import pack_phrase, path_parts, phrase, words


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
