"""A shape classifier over the dataset's categories: the geometry evaluation's recognisability measure.

    python -m services.trainer geometry-classifier --dataset full --input views --input features

Trained only on the real meshes of the train split (item["category"], the taxonomy of
services/labeler/taxonomy.py for real datasets), chosen on the val split, never shown the test
split, and used only to judge meshes: "would a person call this generated mesh a chair?" becomes
"does a classifier that learned chairs from real meshes call it a chair?".

Every mesh is judged in the space the generators write in: welded on the evaluation grid and
scaled into the unit cube (bounding box centred, longest side 1, Z up), then sampled as a point
cloud on its surface. Face count and topology never reach the classifier, so a generated mesh is
judged by its shape, not by how it was written. Three inputs, measured against each other:

- ``points``: a small PointNet (shared per-point MLP, max pool, MLP head) on the cloud itself;
- ``features``: an MLP on hand features of the cloud (D2 shape distribution, height, radial and
  centroid-distance histograms, A3 angles, extents);
- ``views``: depth images of the cloud from 14 directions (a numpy z-buffer of splatted surface
  points), one small CNN shared by the views, max pool over them (MVCNN).

Training augments every shape by a turn about Z by any angle and a scale per axis (then back into
the unit cube), since generated meshes sit in the unit cube at any heading; prediction averages
the logits of eight turns about Z.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from services.trainer.geometry import load_items
from services.trainer.geometry_metrics import sample_points
from shared.ml.datasets import DatasetError, dataset_version
from shared.ml.mesh_tokenizer import QuantizedMesh, quantize_mesh

INPUTS = ("points", "features", "views")
DEFAULT_PATH = Path("models/geometry/classifier/model.pt")
# Points per cloud: depth views need enough to cover every visible surface's pixels.
DEFAULT_POINTS = {"points": 512, "features": 512, "views": 4096}
_TEST_TURNS = 8  # turns about Z whose logits prediction averages


def mesh_on_grid(vertices, faces) -> QuantizedMesh:
    """The evaluation's view of any mesh: welded on the 7-bit grid, in the unit cube. Raises
    TokenizerError for a mesh that is not one (indices out of range, NaN coordinates...)."""
    return quantize_mesh(vertices, faces)


def _to_unit_cube(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(-2, keepdims=True), points.max(-2, keepdims=True)
    return (points - (lo + hi) / 2) / np.maximum((hi - lo).max(-1, keepdims=True), 1e-9)


def _turn(points: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(B, N, 3) clouds turned about Z by one angle each."""
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    x, y = points[..., 0], points[..., 1]
    return np.stack([c * x - s * y, s * x + c * y, points[..., 2]], -1)


def augment(points: np.ndarray, rng: np.random.Generator, scale: float = 0.25) -> np.ndarray:
    """(B, N, 3) clouds, each turned about Z by any angle and scaled per axis, back in the unit cube."""
    turned = _turn(points, rng.uniform(0, 2 * np.pi, len(points)))
    stretch = rng.uniform(1 - scale, 1 + scale, (len(points), 1, 3))
    return _to_unit_cube(turned * stretch)


def shape_features(points: np.ndarray, rng: np.random.Generator, pairs: int = 2048) -> np.ndarray:
    """Hand features of a (N, 3) cloud in the unit cube; unchanged by turns about Z (up to the
    sampling of pairs), which is the symmetry the classifier must not care about."""
    i, j, k = (rng.integers(len(points), size=pairs) for _ in range(3))
    d2 = np.linalg.norm(points[i] - points[j], axis=1)
    u, v = points[i] - points[k], points[j] - points[k]
    cos = (u * v).sum(1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-9)
    radial = np.linalg.norm(points[:, :2], axis=1)
    centroid = np.linalg.norm(points - points.mean(0), axis=1)
    xy = np.linalg.eigvalsh(np.cov(points[:, :2].T))  # spread along the footprint's two axes
    extent = points.max(0) - points.min(0)
    footprint = np.sort(extent[:2])

    def hist(values: np.ndarray, bins: int, top: float) -> np.ndarray:
        return np.histogram(values, bins=bins, range=(0, top))[0] / len(values)

    return np.concatenate(
        [
            hist(d2, 24, 1.8),
            hist(points[:, 2] + 0.5, 16, 1.0),
            hist(radial, 16, 0.75),
            hist(centroid, 16, 0.9),
            hist(np.arccos(np.clip(cos, -1, 1)), 12, np.pi),
            [extent[2], footprint[0], footprint[1], footprint[0] / max(footprint[1], 1e-9)],
            np.sqrt(np.maximum(xy, 0)),
            [points[:, 2].std(), radial.std(), np.abs(points[:, 2] - points[:, 2].mean()).mean()],
        ]
    ).astype(np.float32)


FEATURE_COUNT = 24 + 16 + 16 + 16 + 12 + 4 + 2 + 3

# Where the depth views look from: (azimuth, elevation) in degrees. A ring looking down at 30
# degrees, a ring looking up (offset by half a step, so the two rings see between each other's
# views), straight down and straight up. Every view frames the same square, 2 * _VIEW_RADIUS wide,
# so sizes compare across views and meshes.
VIEW_ANGLES = tuple((a, 30.0) for a in range(0, 360, 60)) + tuple((a, -30.0) for a in range(30, 390, 60))
VIEW_ANGLES += ((0.0, 90.0), (0.0, -90.0))
_VIEW_RADIUS = float(np.sqrt(3) / 2)  # half the unit cube's diagonal: no view of it crops


def view_frames(angles=VIEW_ANGLES) -> np.ndarray:
    """(V, 3, 3) camera frames: rows right, up, forward (into the scene), Z up in every side view."""
    a, e = np.radians(np.array(angles, dtype=np.float64)).T
    toward_camera = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], 1)
    right = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], 1)
    forward = -toward_camera
    return np.stack([right, np.cross(right, forward), forward], 1)


def render_views(clouds: np.ndarray, size: int, frames: np.ndarray | None = None) -> torch.Tensor:
    """(B, V, size, size) orthographic depth images of (B, N, 3) unit-cube surface clouds: each
    point splatted into its pixel, the nearest one kept (a z-buffer). Surfaces read from 0.2 (as
    far as the cube reaches) to 1 (as near); background 0, so the silhouette shows at any depth."""
    frames = view_frames() if frames is None else frames
    batch, count = clouds.shape[:2]
    views = len(frames)
    camera = clouds[:, None] @ frames.transpose(0, 2, 1)[None]  # (B, V, N, right/up/forward)
    column = ((camera[..., 0] / _VIEW_RADIUS + 1) / 2 * size).astype(np.int64)
    row = ((1 - camera[..., 1] / _VIEW_RADIUS) / 2 * size).astype(np.int64)  # row 0 at the top
    pixel = np.clip(row, 0, size - 1) * size + np.clip(column, 0, size - 1)
    pixel += (np.arange(batch * views) * size * size).reshape(batch, views, 1)
    nearness = 1 - 0.8 * (camera[..., 2] / _VIEW_RADIUS + 1) / 2
    image = torch.zeros(batch * views * size * size)
    image.scatter_reduce_(
        0, torch.from_numpy(pixel.reshape(-1)), torch.from_numpy(nearness.reshape(-1)).float(), "amax"
    )
    return image.reshape(batch, views, size, size)


class PointNet(nn.Module):
    """Per-point MLP, max pool over the points, MLP head (Qi et al. 2017, without the T-nets)."""

    def __init__(self, classes: int, width: int = 128, dropout: float = 0.3):
        super().__init__()
        self.points = nn.Sequential(
            nn.Conv1d(3, width // 2, 1),
            nn.BatchNorm1d(width // 2),
            nn.ReLU(),
            nn.Conv1d(width // 2, width, 1),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Conv1d(width, 2 * width, 1),
            nn.BatchNorm1d(2 * width),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(width, classes),
        )

    def forward(self, clouds: torch.Tensor) -> torch.Tensor:  # (B, N, 3) -> (B, classes)
        return self.head(self.points(clouds.transpose(1, 2)).amax(2))


def dense(features_in: int, features: int, dropout: float) -> list[nn.Module]:
    """Linear, batch norm, ReLU, dropout: the hidden layer of the classifiers' MLPs (a list, so the
    layers keep their indices inside nn.Sequential and saved weights load as before)."""
    return [nn.Linear(features_in, features), nn.BatchNorm1d(features), nn.ReLU(), nn.Dropout(dropout)]


class FeatureMLP(nn.Module):
    def __init__(self, classes: int, width: int = 128, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(
            *dense(FEATURE_COUNT, width, dropout), *dense(width, width, dropout), nn.Linear(width, classes)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class MultiViewCNN(nn.Module):
    """One small CNN shared by every depth view, max pool over the views, MLP head (MVCNN, Su et
    al. 2015): the pool makes the answer independent of the order of the views."""

    def __init__(self, classes: int, width: int = 128, dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        for channels_in, channels in ((1, width // 8), (width // 8, width // 4), (width // 4, width // 2),
                                      (width // 2, width)):  # fmt: skip
            layers += [
                nn.Conv2d(channels_in, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        # Channels last: a third faster on one CPU thread, the same convolutions.
        self.view = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten()).to(
            memory_format=torch.channels_last
        )
        self.head = nn.Sequential(*dense(width, width, dropout), nn.Linear(width, classes))

    def forward(self, views: torch.Tensor) -> torch.Tensor:  # (B, V, S, S) -> (B, classes)
        batch, count, size = views.shape[:3]
        images = views.reshape(batch * count, 1, size, size).contiguous(memory_format=torch.channels_last)
        per_view = self.view(images).reshape(batch, count, -1)
        return self.head(per_view.amax(1))


@dataclass
class ClassifierConfig:
    input: str = "points"
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    points: int = 0  # per cloud seen by the model; 0: the input's default (DEFAULT_POINTS)
    pool_points: int = 0  # sampled once per mesh, each epoch draws `points` of them; 0: 4 x points
    image_size: int = 32  # views: pixels a side
    width: int = 128
    label_smoothing: float = 0.1
    balanced: bool = False  # weight the loss by inverse class frequency in the train split
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ValueError(f"unknown classifier input {self.input!r}; expected one of {INPUTS}")
        self.points = self.points or DEFAULT_POINTS[self.input]
        self.pool_points = self.pool_points or 4 * self.points


def _network(config: ClassifierConfig, classes: int) -> nn.Module:
    network = {"points": PointNet, "features": FeatureMLP, "views": MultiViewCNN}[config.input]
    return network(classes, config.width)


def surface_clouds(meshes: list[QuantizedMesh], count: int, seed: int = 0) -> np.ndarray:
    """(B, count, 3) surface samples of each mesh, each drawn from the same seed."""
    clouds = [sample_points(m, count, np.random.default_rng(seed)) for m in meshes]
    return np.stack(clouds).astype(np.float32) if clouds else np.zeros((0, count, 3), np.float32)


def _inputs(clouds: np.ndarray, config: ClassifierConfig, rng: np.random.Generator | None) -> torch.Tensor:
    """The network's input for (B, N, 3) clouds: the clouds (subsampled), their features or their
    depth views. With a generator, random subsets (training); without, each cloud's first points
    and pairs drawn from a fixed seed, so a cloud gets the same input wherever it stands in a batch."""
    if rng is None:
        sub = clouds[:, : config.points]
    else:
        pick = rng.integers(clouds.shape[1], size=(len(clouds), config.points))
        sub = np.take_along_axis(clouds, pick[..., None], axis=1)
    if config.input == "points":
        return torch.from_numpy(sub.astype(np.float32))
    if config.input == "views":
        return render_views(sub, config.image_size)
    return torch.from_numpy(
        np.stack([shape_features(c, rng or np.random.default_rng(config.seed)) for c in sub])
    )


class ShapeClassifier:
    """A trained classifier: categories of meshes on the evaluation grid."""

    def __init__(self, network: nn.Module, config: ClassifierConfig, categories: list[str], meta: dict):
        self.network, self.config, self.categories, self.meta = network.eval(), config, categories, meta

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> ShapeClassifier:
        data = Path(path).read_bytes()
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        config = ClassifierConfig(**ckpt["config"])
        network = _network(config, len(ckpt["categories"]))
        network.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
        meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
        meta["version"] = hashlib.sha256(data).hexdigest()[:16]
        return cls(network, config, list(ckpt["categories"]), meta)

    @torch.no_grad()
    def logits(self, clouds: np.ndarray) -> np.ndarray:
        """(B, classes) logits of (B, N, 3) unit-cube clouds, averaged over turns about Z; each
        cloud's logits do not depend on the clouds beside it."""
        total = np.zeros((len(clouds), len(self.categories)))
        for angle in np.arange(_TEST_TURNS) * 2 * np.pi / _TEST_TURNS:
            turned = _to_unit_cube(_turn(clouds, np.full(len(clouds), angle)))
            for start in range(0, len(clouds), 256):
                total[start : start + 256] += self.network(
                    _inputs(turned[start : start + 256], self.config, None)
                ).numpy()
        return total / _TEST_TURNS

    def predict_clouds(self, clouds: np.ndarray) -> list[str]:
        return [self.categories[i] for i in self.logits(clouds).argmax(1)] if len(clouds) else []

    def predict(self, meshes: list[QuantizedMesh]) -> list[str]:
        """The category of each mesh: the same mesh, the same answer, in any list."""
        return self.predict_clouds(surface_clouds(meshes, self.config.points))


def _grid_meshes(items: list[dict]) -> list[QuantizedMesh]:
    return [mesh_on_grid(it["mesh"]["vertices"], it["mesh"]["faces"]) for it in items]


def confusion_matrix(truth: list[str], predicted: list[str], categories: list[str]) -> list[list[int]]:
    """Rows: true category, columns: predicted, in the order of categories."""
    index = {c: i for i, c in enumerate(categories)}
    matrix = np.zeros((len(categories), len(categories)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        matrix[index[t], index[p]] += 1
    return matrix.tolist()


def balanced_accuracy(matrix: list[list[int]]) -> float:
    """Mean recall over the categories present (rows with items): chance is 1 / categories, and
    answering the majority category scores no better than any other single answer."""
    rows = np.array(matrix, dtype=float)
    present = rows.sum(1) > 0
    return float((np.diag(rows)[present] / rows.sum(1)[present]).mean()) if present.any() else 0.0


def train_classifier(
    train_items: list[dict], val_items: list[dict], config: ClassifierConfig, log=print
) -> tuple[ShapeClassifier, dict]:
    """(classifier at its best val epoch, record with accuracy and confusion matrix on val)."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    categories = sorted({it["category"] for it in train_items})
    index = {c: i for i, c in enumerate(categories)}
    start = time.perf_counter()
    train_clouds = surface_clouds(_grid_meshes(train_items), config.pool_points, config.seed)
    labels = torch.tensor([index[it["category"]] for it in train_items])
    val_clouds = surface_clouds(_grid_meshes(val_items), config.points)
    val_truth = [it["category"] for it in val_items]
    labels_seen = sorted(set(categories) | set(val_truth))  # val may hold a category train lacks
    network = _network(config, len(categories))
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=1e-4)
    steps = config.epochs * -(-len(train_items) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=steps)
    counts = torch.bincount(labels, minlength=len(categories)).float()
    weights = len(labels) / (len(categories) * counts) if config.balanced else None
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    classifier = ShapeClassifier(network, config, categories, {})
    best: tuple[float, dict | None, int] = (-1.0, None, -1)
    history = []
    for epoch in range(config.epochs):
        network.train()
        order = rng.permutation(len(train_items))
        total = 0.0
        for b in range(0, len(order), config.batch_size):
            rows = order[b : b + config.batch_size]
            if len(rows) < 2:  # batch norm needs two rows
                continue
            inputs = _inputs(augment(train_clouds[rows], rng), config, rng)
            loss = loss_fn(network(inputs), labels[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(rows)
        network.eval()
        predicted = classifier.predict_clouds(val_clouds)
        accuracy = float(np.mean([p == t for p, t in zip(predicted, val_truth, strict=True)]))
        balanced = balanced_accuracy(confusion_matrix(val_truth, predicted, labels_seen))
        history.append(
            {
                "epoch": epoch + 1,
                "loss": total / len(order),
                "val_accuracy": accuracy,
                "val_balanced": balanced,
            }
        )
        log(
            f"[{config.input}] epoch {epoch + 1}/{config.epochs} loss {total / len(order):.3f} "
            f"val {accuracy:.3f} balanced {balanced:.3f}"
        )
        if accuracy > best[0]:
            best = (accuracy, {k: v.clone() for k, v in network.state_dict().items()}, epoch + 1)
    assert best[1] is not None
    network.load_state_dict(best[1])
    network.eval()
    predicted = classifier.predict_clouds(val_clouds)
    confusion = confusion_matrix(val_truth, predicted, labels_seen)
    record = {
        "input": config.input,
        "val_accuracy": best[0],
        "val_balanced_accuracy": balanced_accuracy(confusion),
        "best_epoch": best[2],
        "val_items": len(val_items),
        "train_items": len(train_items),
        "val_majority_accuracy": max((val_truth.count(c) / len(val_truth) for c in categories), default=0.0),
        "confusion_categories": labels_seen,
        "val_confusion": confusion,
        "minutes": round((time.perf_counter() - start) / 60, 2),
        "history": history,
    }
    return classifier, record


def save_classifier(classifier: ShapeClassifier, path: str | Path, record: dict) -> Path:
    """fp16 weights, the categories, the config and the training record (data version included)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model_kind": "geometry-classifier",
            "config": asdict(classifier.config),
            "categories": classifier.categories,
            "state_dict": {
                k: v.half() if v.is_floating_point() else v
                for k, v in classifier.network.state_dict().items()
            },
            **record,
        },
        out,
    )
    return out


def train_and_choose(
    dataset: str | None,
    inputs: list[str],
    out: str | Path,
    epochs: int,
    threads: int,
    seed: int = 0,
    balanced: bool = False,
    lr: float = ClassifierConfig.lr,
) -> dict:
    """Trains one classifier per input on the train split, keeps the best on val, writes it to out."""
    train_items, val_items = load_items(dataset, "train"), load_items(dataset, "val")
    if not train_items or not val_items:
        raise ValueError("the classifier needs a non-empty train and val split")
    try:
        version = dataset_version(dataset) if dataset else {"name": "synthetic-primitives"}
    except DatasetError:
        version = {"ref": dataset}
    results = []
    for kind in inputs:
        config = ClassifierConfig(
            input=kind, epochs=epochs, threads=threads, seed=seed, balanced=balanced, lr=lr
        )
        classifier, record = train_classifier(train_items, val_items, config)
        results.append((record["val_accuracy"], kind, classifier, record))
    _, _, best, record = max(results, key=lambda r: r[0])
    summary = {
        "dataset": version,
        "splits_seen": ["train", "val (model choice)"],
        "compared": {
            r[1]: {k: r[3][k] for k in ("val_accuracy", "val_balanced_accuracy", "best_epoch", "minutes")}
            for r in results
        },
    }
    save_classifier(best, out, {**record, **summary})
    return {
        "out": str(out),
        "chosen": record["input"],
        **summary,
        **{k: record[k] for k in ("val_majority_accuracy", "confusion_categories", "val_confusion")},
    }


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "geometry-classifier", help="train the shape classifier the geometry evaluation judges meshes with"
    )
    parser.add_argument(
        "--dataset", help="manifest sha256, file or folder, or name; default: synthetic primitives"
    )
    parser.add_argument(
        "--input",
        action="append",
        choices=INPUTS,
        help="measure this input on val (repeatable); default: all",
    )
    parser.add_argument("--out", default=str(DEFAULT_PATH))
    parser.add_argument("--epochs", type=int, default=ClassifierConfig.epochs)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lr", type=float, default=ClassifierConfig.lr, help="peak of the one-cycle schedule"
    )
    parser.add_argument(
        "--balanced", action="store_true", help="weight the loss by inverse class frequency in train"
    )
    parser.set_defaults(handler=_run_cli)


def format_confusion(categories: list[str], matrix: list[list[int]]) -> str:
    """The confusion matrix as text: a row per true category, a column per predicted one."""
    short = [c[:5] for c in categories]
    lines = ["true/predicted".ljust(16) + "".join(f"{c:>6}" for c in short)]
    lines += [f"{c:<16}" + "".join(f"{n:>6}" for n in row) for c, row in zip(categories, matrix, strict=True)]
    return "\n".join(lines)


def _run_cli(args) -> None:
    result = train_and_choose(
        args.dataset,
        args.input or list(INPUTS),
        args.out,
        args.epochs,
        args.threads,
        args.seed,
        args.balanced,
        args.lr,
    )
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("val_confusion", "confusion_categories")}, indent=2
        )
    )
    print(format_confusion(result["confusion_categories"], result["val_confusion"]))
