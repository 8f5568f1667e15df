"""Clustering duplicate objects: same geometry hash, or shape descriptors closer than a threshold.

Leader clustering in a fixed order (not transitive chaining, so a chain of slightly different
boxes does not merge into one giant cluster): each object joins the first cluster whose leader is
within the threshold, else starts its own. The leader, the first object in sort order, is the
cluster's representative, so the choice never depends on database ids or insertion order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.labeler.geometry import descriptor_distance


@dataclass(frozen=True)
class Candidate:
    key: str  # sort key, unique and stable: "<asset sha256>/<object name>"
    geometry_hash: str
    descriptor: tuple[float, ...]


def cluster(candidates: list[Candidate], threshold: float) -> dict[str, str]:
    """Map every candidate key to the key of its cluster's representative."""
    ordered = sorted(candidates, key=lambda c: c.key)
    leader_of: dict[str, str] = {}
    by_hash: dict[str, str] = {}
    leaders: list[str] = []
    leader_vectors: list[np.ndarray] = []
    for candidate in ordered:
        if candidate.geometry_hash in by_hash:
            leader_of[candidate.key] = by_hash[candidate.geometry_hash]
            continue
        vector = np.asarray(candidate.descriptor, dtype=np.float64)[None, :]
        leader = candidate.key
        if leaders:
            distances = descriptor_distance(vector, np.stack(leader_vectors))[0]
            nearest = int(np.argmin(distances))
            if distances[nearest] < threshold:
                leader = leaders[nearest]
        if leader == candidate.key:
            leaders.append(leader)
            leader_vectors.append(vector[0])
        leader_of[candidate.key] = leader
        by_hash[candidate.geometry_hash] = leader
    return leader_of
