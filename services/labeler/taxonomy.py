"""The object taxonomy and choosing a category with the offline sentence-embedding model.

Each category is described in words; an object's names are embedded with all-MiniLM-L6-v2
(``shared.ml.text_embedding``, offline) and the category whose description is nearest by cosine
similarity wins. The confidence is the margin between the best and the second-best similarity,
mapped to 0..1, so an object whose names fit two categories equally gets a low confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from shared.ml.text_embedding import embed

# name -> description (what the embedding model compares names against). Keep descriptions
# concrete: lists of typical objects work better than abstract definitions.
TAXONOMY: dict[str, str] = {
    "furniture": "furniture: chair, table, desk, bed, sofa, couch, stool, bench, shelf, bookcase, "
    "closet, wardrobe, cabinet, drawer, dresser, nightstand",
    "building": "building or architecture: house, tower, castle, wall, door, window, roof, stairs, "
    "floor tile, fence, gate, bridge, shop, temple, modular dungeon piece",
    "vehicle": "vehicle: car, truck, bus, tank, train, boat, ship, airplane, helicopter, "
    "spaceship, bicycle, motorbike, cart, wheel",
    "weapon": "weapon: sword, axe, bow, arrow, spear, shield, gun, pistol, rifle, shotgun, "
    "dagger, hammer of war, grenade, ammunition",
    "food": "food and drink: fruit, vegetable, apple, banana, bread, burger, cheese, meat, "
    "cake, donut, soup, bottle of beer, cup of coffee",
    "plant": "plant or vegetation: tree, pine, palm, shrub, bush plant, hedge, grass, flower, leaf, "
    "mushroom, cactus, "
    "log, branch, crop, wheat",
    "terrain": "terrain and landscape: rock, stone, cliff, ground, hill, mountain, cloud, "
    "water, sand, path, platform, island",
    "character": "character: person, man, woman, human, knight, soldier, warrior, zombie, "
    "robot, alien, goblin, monster, body, head, hair, clothes",
    "animal": "animal: dog, cat, horse, cow, pig, sheep, chicken, bird, fish, deer, fox, "
    "zebra, bear, wolf, insect",
    "tool": "tool: wrench, hammer, saw, shovel, pickaxe, screwdriver, pencil, key, "
    "fishing rod, telescope, scissors",
    "container": "container: box, crate, barrel, chest, bag, basket, bucket, jar, vase, pot, "
    "bowl, cup, plate, coffin, potion bottle",
    "lighting": "lighting: lamp, lantern, torch, candle, chandelier, street light, light bulb, "
    "fire, campfire",
    "electronics": "electronics and machines: television, computer, monitor, phone, radio, "
    "camera, satellite, antenna, engine, machine, console",
    "prop": "decorative or miscellaneous prop: sign, flag, statue, trophy, coin, gem, "
    "book, toy, gift, ornament, bone, skull, pipe, sink, shower, rug",
    "primitive": "abstract test geometry: primitive shape, cube, sphere, cylinder, cone, torus, "
    "suzanne monkey head, test scene, sample, node setup",
}

CATEGORIES: tuple[str, ...] = tuple(TAXONOMY)


@dataclass(frozen=True)
class CategoryChoice:
    category: str
    confidence: float
    similarity: float
    runner_up: str


def _embed(texts: list[str]) -> np.ndarray:
    # A few short texts per scene: one thread, scoped to this call, avoids oversubscribing shared
    # cores (measured on the loaded 2-core machine: 0.41-0.54 s per call with 2 threads, 0.01-0.02 s
    # with 1); the process's thread settings are restored afterwards.
    with threadpool_limits(limits=1):
        return embed(texts)


def _description_vectors() -> np.ndarray:
    return _embed([TAXONOMY[c] for c in CATEGORIES])


def choose_categories(queries: list[list[tuple[str, float]]]) -> list[CategoryChoice]:
    """For each object, its weighted texts [(text, weight)...] -> the nearest category.

    Similarities of the texts are averaged with their weights (the asset's own name counts more
    than the pack it came from), so one misleading name does not decide alone.
    """
    descriptions = _description_vectors()
    texts = sorted({t for q in queries for t, _ in q if t})
    vectors = dict(zip(texts, _embed(texts), strict=True)) if texts else {}
    choices = []
    for query in queries:
        weighted = [(vectors[t], w) for t, w in query if t]
        if not weighted:
            choices.append(CategoryChoice("primitive", 0.0, 0.0, "primitive"))
            continue
        total = sum(w for _, w in weighted)
        sims = sum(w * (descriptions @ v) for v, w in weighted) / total
        order = np.argsort(-sims, kind="stable")
        best, second = int(order[0]), int(order[1])
        margin = float(sims[best] - sims[second])
        # A margin of 0.1 in cosine similarity is already a clear decision for MiniLM.
        confidence = round(min(1.0, margin / 0.1), 3)
        choices.append(
            CategoryChoice(CATEGORIES[best], confidence, round(float(sims[best]), 4), CATEGORIES[second])
        )
    return choices
