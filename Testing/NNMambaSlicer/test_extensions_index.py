"""The Extensions Index's own description checks (Slicer/ExtensionsIndex scripts/check_description_files.py)
run on our NNMamba.json and top-level CMakeLists.txt, as the index's CI runs them on a submission.

The script is not copied into this repository: it is read from $NNMAMBA_EXTENSIONS_INDEX_SCRIPT (a
checked-out copy), else from the user's cache folder, where it is downloaded at the pinned commit
the first time (CI has the network; a machine without it needs one of the two). Checks that look at the *published* repository
through the network (its GitHub topics, fetching the image URLs, downloading the JSON schema) are
replaced by what can be checked here: each image URL must name a PNG file of this checkout.
"""

from __future__ import annotations

import os
import re
import types
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INDEX_COMMIT = "07f1d1b2781c7dd9f6e2a9f5521b3ed43631724c"
SCRIPT_URL = f"https://raw.githubusercontent.com/Slicer/ExtensionsIndex/{INDEX_COMMIT}/scripts/check_description_files.py"
DESCRIPTION = REPO_ROOT / "NNMamba.json"
RAW_PREFIX = re.compile(r"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/main/(?P<path>.+)$")


def cachedScript() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nnmamba-tests" / f"ExtensionsIndex-{INDEX_COMMIT[:12]}" / "check_description_files.py"


@pytest.fixture(scope="module")
def index():
    """The index's check module, from $NNMAMBA_EXTENSIONS_INDEX_SCRIPT or the cache (downloaded once)."""
    path = Path(os.environ.get("NNMAMBA_EXTENSIONS_INDEX_SCRIPT") or cachedScript())
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(SCRIPT_URL, timeout=30) as response:
                text = response.read()
        except OSError as error:
            # CI reaches only the package registries: the check cannot run there, and says so
            pytest.skip(f"could not download the Extensions Index's checks ({error}); without network, put "
                        f"scripts/check_description_files.py of commit {INDEX_COMMIT} at {path} or set "
                        "NNMAMBA_EXTENSIONS_INDEX_SCRIPT to it")
        path.write_bytes(text)
    source = path.read_text(encoding="utf-8")
    # print_categories (which lists the index's own categories) uses a Python 3.12 f-string; it is
    # the one function dropped so that the checks load on Python 3.10/3.11 as well.
    source = re.sub(r"\ndef print_categories\(.*?(?=\ndef )", "\n", source, flags=re.S)
    module = types.ModuleType("check_description_files")
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def extensionName() -> str:
    return DESCRIPTION.stem


def metadata(index) -> dict:
    return index.parse_json(str(DESCRIPTION))


def localImage(url: str, urlType: str, extensionName: str, checkName: str, index) -> None:
    """The index's validate_image_url, offline: the URL must be a literal https URL of a PNG in this checkout."""
    match = RAW_PREFIX.match(url)
    if not match:
        raise index.ExtensionCheckError(extensionName, checkName, f"{urlType} '{url}' is not a raw GitHub URL")
    path = REPO_ROOT / match.group("path")
    if not path.is_file() or path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise index.ExtensionCheckError(extensionName, checkName, f"{urlType} '{url}' names no PNG of this checkout")


@pytest.mark.parametrize("checkName", ["check_json_file_format", "check_extension_name", "check_category",
                                       "check_git_repository_name", "check_scm_url_syntax"])
def test_the_description_file_passes_the_index_check(index, checkName):
    check = getattr(index, checkName)
    extra = {"extension_file_path": str(DESCRIPTION)} if checkName == "check_json_file_format" else {}
    check(extensionName(), metadata(index), **extra)


def test_the_top_level_cmake_lists_and_licence_pass_the_index_checks_with_local_images(index, monkeypatch):
    monkeypatch.setattr(index, "validate_image_url",
                        lambda url, urlType, name, checkName: localImage(url, urlType, name, checkName, index))
    index.check_cmakelists_content(extensionName(), metadata(index), cloned_repository_folder=str(REPO_ROOT))
    index.check_license_file(extensionName(), metadata(index), cloned_repository_folder=str(REPO_ROOT))


def test_the_index_check_rejects_what_we_had_before(index, monkeypatch, tmp_path):
    """The checks can fail: the old repository name and ${...} image URLs are refused."""
    with pytest.raises(index.ExtensionCheckError, match="should\\* start with 'Slicer'"):
        index.check_git_repository_name("NNMambaSlicer", {"scm_url": "https://github.com/x/NNMambaSlicer.git"})
    (tmp_path / "CMakeLists.txt").write_text('project(NNMamba)\nset(EXTENSION_ICONURL "${URL}/icon.png")\n'
                                             'set(EXTENSION_SCREENSHOTURLS "${URL}/a.png")\n')
    monkeypatch.setattr(index, "validate_image_url",
                        lambda url, urlType, name, checkName: localImage(url, urlType, name, checkName, index))
    with pytest.raises(index.ExtensionCheckError, match="is not a raw GitHub URL"):
        index.check_cmakelists_content("NNMamba", {}, cloned_repository_folder=str(tmp_path))


def test_the_repository_urls_of_the_two_files_name_one_repository():
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    scm = re.search(r'"scm_url": "https://github.com/([^"]+?)(\.git)?"', DESCRIPTION.read_text()).group(1)
    owners = set(re.findall(r"https://(?:raw\.githubusercontent|github)\.com/([^/\"#]+/[^/\"#]+)", cmake))
    assert owners == {scm}
