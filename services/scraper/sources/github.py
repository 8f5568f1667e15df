"""GitHub: repositories found by the search API, each repository's license read from the license API,
files listed by the trees API at one commit, fetched from raw URLs at that commit or by a shallow
``git clone`` (with ``git lfs pull`` when git-lfs is installed).

Like Objaverse-XL, every file is keyed by its content (sha256) and by its URL at a commit
(``https://github.com/OWNER/REPO/blob/COMMIT/PATH``), so a moved branch never changes what a key means.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from services.scraper.http import HttpError
from services.scraper.items import Batch, Candidate, Provenance, scratch_dir
from services.scraper.sources import Source, wanted_file
from shared.settings import Settings

log = logging.getLogger(__name__)

_LINK_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
DEFAULT_QUERY = {"code": "extension:blend", "repositories": "blender in:name,description,topics"}


class GitHubSource(Source):
    name = "github"

    @classmethod
    def missing_configuration(cls, settings: Settings) -> str | None:
        return None if settings.scraper_github_token else "BMT_SCRAPER_GITHUB_TOKEN is not set"

    @property
    def api(self) -> str:
        return self.settings.scraper_github_api_url.rstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Authorization": f"Bearer {self.settings.scraper_github_token}",
        }

    async def _search_page(self, page: int) -> tuple[list[str], bool]:
        """Repository full names on one search results page, and whether a next page exists."""
        mode = self.options.get("mode") or "code"
        query = self.options.get("query") or DEFAULT_QUERY[mode]
        result = await self.client.get(
            f"{self.api}/search/{mode}",
            params={"q": query, "per_page": self.options.get("per_page", 100), "page": page},
            headers=self.headers,
        )
        items = result.json().get("items", [])
        names = [item["repository"]["full_name"] if mode == "code" else item["full_name"] for item in items]
        unique = list(dict.fromkeys(names))  # code search repeats a repository once per matching file
        return unique, bool(_LINK_NEXT.search(result.headers.get("Link", "")))

    async def batches(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        page, index = cursor.get("page", 1), cursor.get("index", 0)
        while True:
            repos, has_next = await self._search_page(page)
            for i in range(index, len(repos)):
                if i + 1 < len(repos):
                    after: dict[str, Any] | None = {"page": page, "index": i + 1}
                else:
                    after = {"page": page + 1, "index": 0} if has_next else None
                yield await self.guarded(repos[i], after, self._repository_batch(repos[i], after))
            if not has_next:
                return
            page, index = page + 1, 0

    async def _repository_batch(self, full_name: str, after: dict[str, Any] | None) -> Batch:
        repo = await self.client.get_json(f"{self.api}/repos/{full_name}", headers=self.headers)
        try:
            license_info = await self.client.get_json(
                f"{self.api}/repos/{full_name}/license", headers=self.headers
            )
            license_text = (license_info.get("license") or {}).get("spdx_id") or ""
        except HttpError as error:
            if error.status != 404:
                raise
            license_text = ""  # no license file: all rights reserved
        decision = self.license(license_text)
        if not decision.allowed:
            log.info("skipping %s: %s", full_name, decision.reason)
            return Batch([], after, rejected=[(full_name, decision.reason or "license")])
        branch = repo.get("default_branch") or "main"
        commit = (
            await self.client.get_json(f"{self.api}/repos/{full_name}/commits/{branch}", headers=self.headers)
        )["sha"]
        if self.options.get("via") == "git":
            return await self._clone_batch(repo, commit, license_text, after)
        tree = await self.client.get_json(
            f"{self.api}/repos/{full_name}/git/trees/{commit}",
            params={"recursive": "1"},
            headers=self.headers,
        )
        if tree.get("truncated"):
            log.warning("tree of %s is truncated by the API; use --via git for the complete list", full_name)
        candidates, rejected = [], []
        for entry in tree.get("tree", []):
            if entry.get("type") != "blob" or not wanted_file(entry["path"]):
                continue
            if entry.get("size", 0) > self.settings.scraper_max_file_bytes:
                rejected.append((entry["path"], "file larger than the size cap"))
                continue
            at_commit = f"{full_name}/{commit}/{quote(entry['path'])}"
            raw = f"{self.settings.scraper_github_raw_url.rstrip('/')}/{at_commit}"
            lfs = f"{self.settings.scraper_github_media_url.rstrip('/')}/{at_commit}"
            candidates.append(
                Candidate(
                    name=entry["path"].rsplit("/", 1)[-1],
                    url=raw,
                    lfs_url=lfs,
                    provenance=self._provenance(repo, commit, entry["path"], license_text),
                )
            )
        return Batch(candidates, after, rejected)

    def _provenance(self, repo: dict[str, Any], commit: str, path: str, license_text: str) -> Provenance:
        html = repo["html_url"].rstrip("/")
        return Provenance(
            source=self.name,
            source_url=f"{html}/blob/{commit}/{quote(path)}",
            license_text=license_text,
            page_url=html,
            source_commit=commit,
            source_path=path,
            author=(repo.get("owner") or {}).get("login"),
            attribution=f"{repo['full_name']} ({html}), {license_text}",
            title=Path(path).stem,
            meta={"repository": repo["full_name"]},
        )

    async def _clone_batch(
        self, repo: dict[str, Any], commit: str, license_text: str, after: dict[str, Any] | None
    ) -> Batch:
        """Shallow-clone the repository; files are read from the clone, which the crawler removes."""
        workdir = Path(tempfile.mkdtemp(prefix="clone-", dir=scratch_dir(self.settings)))
        clone = workdir / "repo"
        try:
            await _git("clone", "--quiet", "--depth", "1", repo["clone_url"], str(clone))
            if shutil.which("git-lfs"):
                await _git("-C", str(clone), "lfs", "pull")
            head = (await _git("-C", str(clone), "rev-parse", "HEAD")).strip()
        except GitError as error:
            shutil.rmtree(workdir, ignore_errors=True)
            log.warning("%s: %s", repo["full_name"], error)
            return Batch([], after, rejected=[(repo["full_name"], "git clone failed")])
        if head != commit:
            log.info(
                "%s moved from %s to %s while crawling; keying files by the cloned commit",
                repo["full_name"],
                commit,
                head,
            )
        candidates = []
        for path in sorted(clone.rglob("*")):
            relative = path.relative_to(clone).as_posix()
            if (
                relative.startswith(".git/")
                or path.is_symlink()
                or not path.is_file()
                or not wanted_file(path.name)
            ):
                continue
            candidates.append(
                Candidate(
                    name=path.name, path=path, provenance=self._provenance(repo, head, relative, license_text)
                )
            )
        return Batch(candidates, after, cleanup=workdir)


class GitError(Exception):
    pass


async def _git(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "git", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {err.decode().strip()}")
    return out.decode()
