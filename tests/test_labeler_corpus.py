"""The labeller and dataset builder on files really extracted from ../shared/corpus.

One module-scoped fixture registers a small sample (furniture incl. chairs, Smooth_/Flatshaded
variants, a CC-BY Zeyu Li file, Apache and BSD files), extracts it with the ``extract.asset``
task and labels it with ``label.extraction``, all on the embedded defaults in a temporary folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from services.labeler import pipeline
from services.labeler.__main__ import main as labeler_main
from services.labeler.dataset import DatasetBuildError, build_dataset, canonical_json, load_records
from services.labeler.labeller import label_extraction
from shared import queue
from shared.blobs import get_blob_store
from shared.db import ensure_schema, session_scope
from shared.db.models import Asset, Dataset, Extraction, Job, SceneObject
from shared.ml.datasets import dataset_version
from shared.settings import get_settings
from tests.conftest import REPO

pytestmark = pytest.mark.slow

Q = "blend/quaternius"
FURNITURE = f"{Q}/Home_and_Buildings/Furniture_Pack_-_March_2019"
FRUIT = f"{Q}/Characters_and_Animals/Fruit_Characters_Animated_-_Mar_2017"
MEN = f"{Q}/Characters_and_Animals/Animated_Men_Characters_-_Feb_2019"
FOOD = f"{Q}/Miscellaneous/Food_Pack_Vol.1_-_May_2016"
ZEYU = "blend/zeyu_free_blender_models"
SAMPLE = [
    *(
        f"{FURNITURE}/{n}.blend"
        for n in ("Chair", "Desk", "Table", "BedDouble", "Bookcase", "Bookcase_Books")
    ),
    *(f"{FRUIT}/{n}.blend" for n in ("Avocado", "AvocadoFlatshaded", "Banana")),
    f"{MEN}/Male_Casual.blend",
    f"{MEN}/Smooth_Male_Casual.blend",
    *(f"{FOOD}/{n}.blend" for n in ("Apple", "Burger", "Carrot", "Donut")),
    *(f"{ZEYU}/{n}.blend" for n in ("blend_chair", "blend_vase", "blend_toy_car", "blend_bed")),
    *(f"{Q}/Medieval/Medieval_Weapons_Pack_-_Sept_2018/{n}.blend" for n in ("Axe_Double", "Sword")),
    "blend/gltf_blender_io/scenes_00_looping_animation.blend",
    "blend/assimp_testmodels/BlenderDefault_276.blend",
]


def _use(data_dir: Path) -> None:
    os.environ["BMT_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sample registered, extracted and labelled once for this module."""
    data_dir = tmp_path_factory.mktemp("labeler") / "var"
    previous = os.environ.get("BMT_DATA_DIR")
    _use(data_dir)
    ensure_schema()
    pipeline.ingest_corpus(progress=False)
    keys = pipeline.assets_at(SAMPLE)
    extraction_ids = pipeline.extract_assets(keys, progress=False)
    assert len(extraction_ids) >= len(SAMPLE) - 1, "extraction failed for the sample"
    pipeline.label_extractions(extraction_ids, progress=False)
    yield data_dir
    if previous is None:
        os.environ.pop("BMT_DATA_DIR", None)
    else:
        os.environ["BMT_DATA_DIR"] = previous
    get_settings.cache_clear()


@pytest.fixture
def labelled(corpus_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BMT_DATA_DIR", str(corpus_db))
    get_settings.cache_clear()
    return corpus_db


def _objects(asset_name: str) -> list[SceneObject]:
    with session_scope() as session:
        rows = session.scalars(
            select(SceneObject).join(Asset, Asset.id == SceneObject.asset_id).where(Asset.title == asset_name)
        ).all()
        session.expunge_all()
        return list(rows)


def _mesh(asset_name: str) -> SceneObject:
    return next(o for o in _objects(asset_name) if o.type == "MESH" and o.rejection_reason is None)


def test_chairs_are_furniture_and_labels_carry_confidences(labelled: Path) -> None:
    for title in ("Chair", "chair"):  # quaternius and Zeyu Li
        chair = _mesh(title)
        assert chair.category == "furniture", (title, chair.labels["category"])
        labels = chair.labels
        assert "chair" in labels["noun"]
        assert 0.0 <= labels["category"]["confidence"] <= 1.0
        assert all(0.0 <= n["confidence"] <= 1.0 for n in labels["names"])
        assert len(labels["captions"]) >= 3 and all(
            "chair" in c or "furniture" in c for c in labels["captions"]
        )
        assert set(labels["attribute_confidence"]) >= {"colours", "size", "low_poly", "animated", "symmetric"}
    assert _mesh("Apple").category == "food"
    assert _mesh("Sword").category == "weapon"


def test_a_test_scenes_objects_are_named_for_what_they_are(labelled: Path) -> None:
    """glTF-Blender-IO's tests/scenes/00_looping_animation.blend is named for what it tests."""
    meshes = [o for o in _objects("00_looping_animation") if o.type == "MESH"]
    assert {o.name: o.labels["noun"] for o in meshes} == {"Cube": "cube", "Suzanne": "monkey head"}
    assert all("looping" not in c and "scenes" not in c for o in meshes for c in o.labels["captions"])


def test_attributes_are_read_from_the_data(labelled: Path) -> None:
    chair = _mesh("Chair")
    attrs = chair.labels["attributes"]
    assert attrs["low_poly"] is True and chair.face_count <= get_settings().label_low_poly_faces
    assert attrs["colours"], "the chair's legacy materials have base colours"
    assert attrs["symmetric"] and "x" in attrs["mirror_axes"]
    avocado = next(o for o in _objects("Avocado") if o.type == "MESH")
    assert avocado.has_animation is False
    armature = next(o for o in _objects("Avocado") if o.type == "ARMATURE")
    assert armature.labels["attributes"]["animated"] is True
    assert armature.rejection_reason.startswith("not_mesh")


def test_labelling_again_gives_the_same_labels(labelled: Path) -> None:
    before = _mesh("Desk")
    with session_scope() as session:
        label_extraction(session, get_blob_store(), before.extraction_id, get_settings())
    after = _mesh("Desk")
    assert (after.labels, after.category, after.geometry_hash, after.quality_flags) == (
        before.labels,
        before.category,
        before.geometry_hash,
        before.quality_flags,
    )


def test_labelling_an_unknown_extraction_fails_clearly(labelled: Path) -> None:
    with session_scope() as session, pytest.raises(LookupError, match="no extraction with id 999999"):
        label_extraction(session, get_blob_store(), 999999, get_settings())
    with pytest.raises(LookupError):
        queue.submit("label.extraction", 999999)
    with session_scope() as session:
        failed = session.scalars(
            select(Job).where(Job.kind == "label.extraction", Job.state == "failed")
        ).all()
        assert any("999999" in (j.error or "") for j in failed)


def _build(specialist: str, name: str = "test", seed: int = 0):  # type: ignore[no-untyped-def]
    with session_scope() as session:
        return build_dataset(
            session, get_blob_store(), get_settings(), name=name, specialist=specialist, seed=seed
        )


def _shard_items(keys: list[str]) -> list[dict]:
    store = get_blob_store()
    items = []
    for key in keys:
        with tarfile.open(fileobj=io.BytesIO(store.get_bytes(key))) as tar:
            items += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    return items


def test_geometry_dataset_collapses_variants_and_keeps_packs_whole(labelled: Path) -> None:
    result = _build("geometry")
    manifest = result.manifest
    by_split = {s: _shard_items(manifest["splits"][s]["shards"]) for s in ("train", "val", "test")}
    items = [i for split in by_split.values() for i in split]
    assert len(items) == len(manifest["items"]) == sum(v["items"] for v in manifest["splits"].values())
    # Smooth_/Flatshaded variants and the same model under two names collapse to one item.
    for variants in (("Avocado", "AvocadoFlatshaded"), ("Male_Casual", "Smooth_Male_Casual")):
        shas = {o.asset_id for t in variants for o in _objects(t)}
        with session_scope() as session:
            wanted = {session.get(Asset, a).sha256 for a in shas}
        kept = [i for i in items if i["asset_sha256"] in wanted and i["object"] in {"Avocado", "BaseHuman"}]
        assert len(kept) == 1, (variants, [(i["object"], i["asset_sha256"][:8]) for i in kept])
    assert manifest["stats"]["duplicates_dropped"] >= 2
    # No pack (and so no asset, and no duplicate cluster) straddles two splits.
    packs: dict[str, set[str]] = {}
    for entry in manifest["items"]:
        packs.setdefault(entry["pack"], set()).add(entry["split"])
    assert all(len(splits) == 1 for splits in packs.values()), packs
    assert all(manifest["splits"][s]["items"] > 0 for s in ("train", "val", "test"))
    # Items follow the dataset format.
    item = items[0]
    assert set(item) >= {
        "id",
        "asset_sha256",
        "object",
        "category",
        "captions",
        "mesh",
        "license",
        "attribution",
        "pack",
    }
    assert item["mesh"]["faces"] and all(len(f) >= 3 for f in item["mesh"]["faces"])


def test_manifest_carries_licenses_and_attribution(labelled: Path) -> None:
    manifest = _build("geometry").manifest
    by_license = {e["license"] for e in manifest["items"]}
    assert {"CC0-1.0", "CC-BY-4.0"} <= by_license
    for entry in manifest["items"]:
        assert entry["license"] and entry["source_url"].startswith("https://github.com/")
        if entry["license"] == "CC-BY-4.0":
            assert (
                "Zeyu Li" in entry["attribution"]
                and "Creative Commons Attribution 4.0" in entry["attribution"]
            )
        if entry["license"] == "CC0-1.0":  # no credit required; the source's courtesy line may stand
            assert entry["attribution"] is None or "Quaternius" in entry["attribution"]
    assert any("Zeyu Li" in a for a in manifest["attributions"])


def test_building_twice_gives_byte_identical_manifest_and_shards(labelled: Path) -> None:
    first = _build("geometry", name="twice", seed=5)
    with session_scope() as session:  # relabel everything: labels must come out the same too
        ids = session.scalars(select(Extraction.id)).all()
    pipeline.label_extractions(list(ids), progress=False)
    second = _build("geometry", name="twice", seed=5)
    assert second.manifest_key == first.manifest_key and second.created is False
    store = get_blob_store()
    assert store.get_bytes(first.manifest_key) == store.get_bytes(second.manifest_key)
    other_seed = _build("geometry", name="twice", seed=6)
    assert other_seed.version != first.version or other_seed.manifest["seed"] == 5
    with session_scope() as session:
        rows = session.scalars(select(Dataset).where(Dataset.name == "twice", Dataset.seed == 5)).all()
        assert len(rows) == 1 and {s.split for s in rows[0].splits} == {"train", "val", "test"}


def test_every_specialist_builds(labelled: Path) -> None:
    material = _build("material").manifest
    assert material["specialist"] == "material" and material["items"]
    item = _shard_items(material["splits"]["train"]["shards"])[0]
    assert {"material", "pbr", "node_tree", "captions", "license"} <= set(item)
    modifier = _build("modifier").manifest  # the Zeyu files carry Bevel/Mirror/Solidify stacks
    item = _shard_items([k for s in modifier["splits"].values() for k in s["shards"]])[0]
    assert item["modifiers"] and all(m["type"] != "ARMATURE" for m in item["modifiers"])
    assert item["mesh_stats"]["faces"] > 0
    animation = _build("animation").manifest
    items = _shard_items([k for s in animation["splits"].values() for k in s["shards"]])
    assert any(i["actions"] and i["actions"][0]["fcurves"] for i in items)
    assert any("walk animation" in c for i in items for c in i["captions"])


def test_dataset_task_and_cli(labelled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = queue.submit("dataset.build", "viatask", "geometry", 0)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.state == "succeeded" and job.result["items"]["train"] > 0
    assert labeler_main(["dataset", "--name", "cli", "--specialist", "geometry"]) == 0
    assert labeler_main(["quality"]) == 0
    out = capsys.readouterr().out
    assert "geometry" in out and "quality filter:" in out
    folder = labelled / "datasets" / "cli" / "geometry"
    assert (folder / "stats.png").read_bytes().startswith(b"\x89PNG")
    report = json.loads((folder / "report.json").read_text())
    assert report["items"] > 0 and "CC-BY-4.0" in report["licenses"]
    quality = json.loads((labelled / "quality.json").read_text())
    assert quality["rejected"] == len(quality["rejections"]) and quality["by_reason"]
    exported = labelled / "exported"
    assert labeler_main(["export", "cli", "--out", str(exported)]) == 0
    assert dataset_version(exported)["manifest_sha256"] == dataset_version("cli")["manifest_sha256"]
    assert labeler_main(["export", "no-such-dataset", "--out", str(exported)]) == 2
    assert "export failed" in capsys.readouterr().err


def test_bad_build_requests_fail_clearly(
    labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetBuildError, match="unknown specialist"):
        _build("sound")
    monkeypatch.setenv("BMT_DATA_DIR", str(tmp_path / "empty"))
    get_settings.cache_clear()
    ensure_schema()
    with session_scope() as session:
        assert load_records(session) == []
    with pytest.raises(DatasetBuildError, match="no labelled objects"):
        _build("geometry")


def test_labelling_needs_a_scene_document_that_holds_the_objects() -> None:
    """On a fresh, empty database (the autouse fixture's): failed extractions and rows that do not
    match their document are refused with the reason."""
    ensure_schema()
    store = get_blob_store()
    with session_scope() as session:
        asset = Asset(sha256="0" * 64, size=1, format="blend", license="CC0-1.0")
        session.add(asset)
        session.flush()
        failed = Extraction(asset_id=asset.id, extractor_version="old", status="failed", error="boom")
        empty_scene = store.put_bytes(json.dumps({"objects": [], "materials": []}).encode())
        mismatched = Extraction(
            asset_id=asset.id, extractor_version="new", status="ok", scene_key=empty_scene
        )
        mismatched.objects = [SceneObject(asset_id=asset.id, name="Ghost", type="MESH")]
        session.add_all([failed, mismatched])
        session.flush()
        ids = failed.id, mismatched.id
    with session_scope() as session, pytest.raises(ValueError, match="has no scene document"):
        label_extraction(session, store, ids[0], get_settings())
    with (
        session_scope() as session,
        pytest.raises(ValueError, match=r"\['Ghost'\] are not in its scene document"),
    ):
        label_extraction(session, store, ids[1], get_settings())


def test_label_and_build_on_postgresql(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The production metadata store: labels and flags in JSONB, the same builder queries."""
    monkeypatch.setenv("BMT_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    ensure_schema()
    pipeline.ingest_corpus(progress=False)
    chosen = [f"{FURNITURE}/Chair.blend", f"{ZEYU}/blend_chair.blend", f"{FRUIT}/Avocado.blend"]
    keys = pipeline.assets_at(chosen)
    pipeline.label_extractions(pipeline.extract_assets(keys, progress=False), progress=False)
    assert _mesh("Chair").category == "furniture"
    result = _build("geometry")
    assert result.manifest["items"] and result.created
    assert _build("geometry").manifest_key == result.manifest_key


def test_sample_paths_take_the_first_files_of_each_pack_or_all_of_them():
    kits = pipeline.sample_paths(1, ("fbx",))
    assert [Path(p).parent.name for p in kits] == ["Castle_Kit", "Furniture_Pack", "Space_Kit"]
    everything = pipeline.sample_paths(0, ("fbx",))
    assert len(everything) == 256 and set(kits) <= set(everything)  # corpus README: 256 Kenney .fbx


def test_manifest_entries_carry_content_hashes_and_diff_names_what_changed(
    labelled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _build("geometry", name="diff-before")
    entries = {e["id"]: e for e in before.manifest["items"]}
    item = _shard_items(before.manifest["splits"]["train"]["shards"])[0]
    entry = entries[item["id"]]
    assert entry["sha256"] == hashlib.sha256(canonical_json(item)).hexdigest()
    assert {"mesh", "captions"} <= set(entry["hashes"])
    recaptioned, relicensed = sorted(entries.values(), key=lambda e: e["id"])[:2]
    with session_scope() as session:
        row = session.scalars(
            select(SceneObject)
            .join(Asset, Asset.id == SceneObject.asset_id)
            .where(Asset.sha256 == recaptioned["asset_sha256"], SceneObject.name == recaptioned["object"])
        ).one()
        old_labels = row.labels
        row.labels = {**row.labels, "captions": ["a different caption"]}
        asset = session.scalars(select(Asset).where(Asset.sha256 == relicensed["asset_sha256"])).one()
        old_license, asset.license = asset.license, "CC0-1.0" if asset.license != "CC0-1.0" else "MIT"
    try:
        _build("geometry", name="diff-after")
        assert labeler_main(["diff", "diff-before", "diff-after"]) == 1
    finally:
        with session_scope() as session:
            session.get(SceneObject, row.id).labels = old_labels
            session.scalars(
                select(Asset).where(Asset.sha256 == relicensed["asset_sha256"])
            ).one().license = old_license
    out = capsys.readouterr().out
    assert (
        f"changed {recaptioned['id']} ({recaptioned['asset_sha256'][:12]}/{recaptioned['object']}): captions"
        in out
    )
    assert f"changed {relicensed['id']}" in out and "license" in out.split(f"changed {relicensed['id']}")[1]
    assert labeler_main(["diff", "diff-before", "diff-before"]) == 0


# Labels every extraction (in the given order) and builds the geometry dataset in a fresh process;
# prints the version.
_LABEL_AND_BUILD = """
import sys
from sqlalchemy import select
from services.labeler import pipeline
from services.labeler.dataset import build_dataset
from shared.blobs import get_blob_store
from shared.db import session_scope
from shared.db.models import Extraction
from shared.settings import get_settings
with session_scope() as session:
    ids = sorted(session.scalars(select(Extraction.id)).all(), reverse=sys.argv[1] == "reversed")
pipeline.label_extractions(ids, progress=False)
with session_scope() as session:
    result = build_dataset(session, get_blob_store(), get_settings(), name=sys.argv[2], specialist="geometry", seed=0)
print(result.version)
"""


def test_the_same_version_whatever_the_thread_counts_cpu_kernels_and_labelling_order(labelled: Path) -> None:
    """numpy/torch reductions split by thread count, and texts embedded in one batch, once moved
    embeddings by 1e-7: enough to flip a category near a tie and build another version. The second
    run also takes other CPU kernels (issue 19: an AVX-512 machine's differ): torch's without SIMD,
    OpenBLAS's SSE3 ones (another dot-product order) and numpy's baseline loops."""
    versions = []
    other_kernels = {
        "ATEN_CPU_CAPABILITY": "default",
        "OPENBLAS_CORETYPE": "Prescott",
        "NPY_DISABLE_CPU_FEATURES": "SSSE3 SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2",
    }
    for threads, order, kernels in (("1", "forward", {}), ("2", "reversed", other_kernels)):
        env = {
            **os.environ,
            "BMT_DATA_DIR": str(labelled),
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            **kernels,
        }
        done = subprocess.run(
            [sys.executable, "-c", _LABEL_AND_BUILD, order, f"threads-{threads}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        versions.append(done.stdout.split()[-1])
    assert versions[0] == versions[1]
