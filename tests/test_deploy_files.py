"""The deployment files pass their static checks, and the checks do catch broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO
from tools.lint_deploy import check


def copy_deploy_files(tmp_path: Path) -> Path:
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "k8s", tmp_path / "k8s")
    return tmp_path


def test_repository_deploy_files_pass():
    assert check(REPO) == []


def test_broken_files_are_reported(tmp_path: Path):
    root = copy_deploy_files(tmp_path)
    compose = (root / "docker-compose.yml").read_text()
    compose = compose.replace("target: trainer", "target: trainr").replace(
        "restart: unless-stopped\n", "restart: 7\n", 1
    )
    (root / "docker-compose.yml").write_text(compose)
    (root / "Dockerfile").write_text(
        (root / "Dockerfile").read_text().replace('"-Q", "train"', '"-Q", "trains"')
        + "MAINTAINER someone@example.org\n"
    )
    (root / "k8s" / "gateway.yaml").write_text(
        (root / "k8s" / "gateway.yaml").read_text().replace("replicas: 2", "replicas: two")
    )
    problems = "\n".join(check(root))
    assert "check-jsonschema" in problems
    assert "service trainer builds target 'trainr', not a Dockerfile stage" in problems
    assert "hadolint" in problems and "DL4000" in problems
    assert "kubernetes-validate" in problems
    assert "docker-compose.yml: no worker consumes the 'train' queue" in problems
