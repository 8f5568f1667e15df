"""Static checks of the deployment files, since no Docker engine or cluster runs here.

- docker-compose.yml against the Compose Specification schema (check-jsonschema);
- the Dockerfile with hadolint;
- k8s/*.yaml against the Kubernetes OpenAPI schemas (kubernetes-validate, strict);
- consistency: every compose build target is a Dockerfile stage, and every queue in shared.queue
  has a worker consuming it in compose and in k8s, and no worker consumes an unknown queue.

Usage: python -m tools.lint_deploy [--root DIR]; exit 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from shared.queue import QUEUES

BIN = Path(sys.executable).parent
HADOLINT_IGNORED = ["DL3008"]  # apt packages unpinned: Debian's security updates should flow in


def run_tool(args: list[str]) -> list[str]:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode == 0:
        return []
    output = (result.stdout + result.stderr).strip().splitlines()
    return [f"{Path(args[0]).name}: {line}" for line in output if line.strip()] or [f"{args[0]} failed"]


def consumed_queues(commands: list[list[str]]) -> set[str]:
    queues: set[str] = set()
    for command in commands:
        if "-Q" in command:
            queues.update(command[command.index("-Q") + 1].split(","))
    return queues


def check(root: Path) -> list[str]:
    compose_file, dockerfile, k8s_files = (
        root / "docker-compose.yml",
        root / "Dockerfile",
        sorted((root / "k8s").glob("*.yaml")),
    )
    problems = run_tool(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose_file)]
    )
    problems += run_tool(
        [str(BIN / "hadolint"), *[f"--ignore={rule}" for rule in HADOLINT_IGNORED], str(dockerfile)]
    )
    problems += run_tool([str(BIN / "kubernetes-validate"), "--strict", "--quiet", *map(str, k8s_files)])

    stages = set(
        re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE | re.IGNORECASE)
    )
    stage_commands = {
        stage: json.loads(cmd)
        for stage, cmd in re.findall(
            r"^FROM\s+\S+\s+AS\s+(\S+)(?:(?!^FROM).)*?^CMD\s+(\[.*?\])$",
            dockerfile.read_text(),
            flags=re.MULTILINE | re.DOTALL | re.IGNORECASE,
        )
    }
    compose = yaml.safe_load(compose_file.read_text())
    compose_commands = []
    for name, service in compose.get("services", {}).items():
        build = service.get("build")
        if isinstance(build, dict):
            target = build.get("target")
            if target not in stages:
                problems.append(
                    f"docker-compose.yml: service {name} builds target {target!r}, not a Dockerfile stage"
                )
            compose_commands.append(service.get("command") or stage_commands.get(target, []))
    k8s_commands = [
        container.get("args", [])
        for path in k8s_files
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]
    for where, commands in (("docker-compose.yml", compose_commands), ("k8s", k8s_commands)):
        consumed = consumed_queues(commands)
        for queue in sorted(set(QUEUES) - consumed):
            problems.append(f"{where}: no worker consumes the {queue!r} queue")
        for queue in sorted(consumed - set(QUEUES)):
            problems.append(
                f"{where}: a worker consumes {queue!r}, which is not a queue in shared.queue.QUEUES"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    problems = check(parser.parse_args(argv).root)
    for problem in problems:
        print(problem)
    print("deployment files: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
