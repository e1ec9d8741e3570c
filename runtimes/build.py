"""Build self-contained runtimes from the recipes in runtimes/<name>/ (docs/runtimes.md).

    .venv/bin/python runtimes/build.py [--cache DIR] NAME... | --all

Each runtime is a minimal Debian tree (debootstrap --variant=minbase of the recipe's suite plus
its packages, and a venv of PyPI wheels where the recipe asks), of which only /usr, the /etc
entries the recipe keeps and /opt are shipped, stripped of docs and apt's caches. A job then sees
that /usr instead of the host's: it needs nothing of the host's languages or its libc.

Builds are cached outside the checkout, keyed by the recipe's content (recipe.yml, runtime.yml,
this builder's BUILDER_VERSION and the architecture): an unchanged recipe is not built again.
The result is an archive plus an entry in <cache>/registry.json, the registry `rnx runtime
install --registry` reads. Needs root, debootstrap and the network (deb.debian.org, PyPI).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from joblet_agent.domain.runtime import parse_runtime

RECIPES = Path(__file__).resolve().parent
DEFAULT_CACHE = Path(os.environ.get("JOBLET_RUNTIME_CACHE", "/var/cache/joblet-runtimes"))
MIRROR = "http://deb.debian.org/debian"
# Bump when the build method changes the result: every recipe's key changes with it.
BUILDER_VERSION = "3"
# In every runtime, whatever its recipe: the programs Joblet's own privileged unit steps run
# inside a job's root, whose /usr is the runtime's (units/network.py: ip, nft, and unshare and
# nsenter from util-linux, which minbase has; the exit recorder's sh and grep are in minbase).
PLUMBING = ("iproute2", "nftables")
# Not shipped: documentation (copyright files stay), translations, lintian's and bug's data.
STRIP = ("share/doc", "share/man", "share/info", "share/locale", "share/lintian", "share/bug")
_RECIPE_KEYS = {"suite", "packages", "etc", "venv"}


def log(message: str) -> None:
    print(f"[runtimes] {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], check=True, text=True, **kwargs)


def architecture() -> str:
    return run("dpkg", "--print-architecture", capture_output=True).stdout.strip()


def load_recipe(name: str) -> tuple[dict[str, Any], str, str]:
    folder = RECIPES / name
    recipe_text = (folder / "recipe.yml").read_text()
    runtime_text = (folder / "runtime.yml").read_text()
    recipe = yaml.safe_load(recipe_text)
    unknown = set(recipe) - _RECIPE_KEYS
    if unknown:
        raise SystemExit(f"{folder}/recipe.yml: unknown keys {sorted(unknown)}")
    return recipe, recipe_text, runtime_text


def recipe_key(name: str, arch: str) -> str:
    _, recipe_text, runtime_text = load_recipe(name)
    material = "\0".join((BUILDER_VERSION, arch, name, recipe_text, runtime_text))
    return hashlib.sha256(material.encode()).hexdigest()


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (two working trees may run `make runtimes` at once)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(name: str, cache: Path, arch: str) -> dict[str, Any]:
    """The index entry of `name`'s archive, built now or found in the cache."""
    recipe, _, runtime_text = load_recipe(name)
    template = yaml.safe_load(runtime_text)
    spec = parse_runtime(template, f"runtimes/{name}/runtime.yml")
    key = recipe_key(name, arch)
    archives = cache / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    archive = archives / f"{name}-{spec.release}-{arch}-{key[:16]}.tar.gz"
    entry_file = archive.with_suffix(".json")
    if archive.exists() and entry_file.exists():
        log(f"{name}: cached ({archive.name})")
        entry: dict[str, Any] = json.loads(entry_file.read_text())
        return entry
    started = time.monotonic()
    work = cache / "work" / name
    if work.exists():  # a build cut short; it fails loudly if something still holds it
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        rootfs = work / "rootfs"
        debootstrap(recipe, rootfs, cache)
        if "venv" in recipe:
            make_venv(recipe["venv"], rootfs, cache)
        packages = package_list(recipe, rootfs)
        tree = work / "tree"
        assemble(recipe, rootfs, tree)
        template["packages"] = packages
        template["architectures"] = [arch]
        parse_runtime(template, f"runtimes/{name}/runtime.yml (as built)")
        (tree / "runtime.yml").write_text(
            f"# Built by runtimes/build.py from runtimes/{name}/ (key {key[:16]}).\n"
            + yaml.safe_dump(template, sort_keys=False)
        )
        partial = archive.with_suffix(".partial")
        pack(tree, partial)
        partial.rename(archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    entry = {
        "name": name,
        "version": spec.release,
        "language": spec.language,
        "language_version": spec.version,
        "description": spec.description,
        "url": f"archives/{archive.name}",
        "sha256": sha256_of(archive),
        "size": archive.stat().st_size,
        "architecture": arch,
        "platforms": [f"linux/{arch}"],
        "key": key,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    entry_file.write_text(json.dumps(entry, indent=2) + "\n")
    prune(archives, name, keep=archive)
    log(f"{name}: built in {entry['build_seconds']}s, {entry['size'] / 1e6:.0f} MB")
    return entry


def prune(archives: Path, name: str, *, keep: Path) -> None:
    """Earlier builds of a recipe go once a new one is made: the cache holds one per recipe."""
    for entry_file in archives.glob("*.json"):
        old = archives / Path(json.loads(entry_file.read_text())["url"]).name
        if json.loads(entry_file.read_text())["name"] == name and old != keep:
            old.unlink(missing_ok=True)
            entry_file.unlink()
            log(f"{name}: removed the earlier build {old.name}")


def debootstrap(recipe: dict[str, Any], rootfs: Path, cache: Path) -> None:
    suite = recipe["suite"]
    debs = cache / "debs" / suite
    debs.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap {suite}: {' '.join(recipe['packages'])}")
    # A private mount namespace: debootstrap mounts /proc and /sys into the tree, and a build
    # that dies must not leave them mounted on the host.
    try:
        _debootstrap(suite, debs, recipe["packages"], rootfs)
    except subprocess.CalledProcessError:
        log_file = rootfs / "debootstrap" / "debootstrap.log"
        if log_file.exists():
            sys.stderr.write("".join(log_file.read_text().splitlines(True)[-30:]))
        raise


def _debootstrap(suite: str, debs: Path, packages: list[str], rootfs: Path) -> None:
    run(
        "unshare",
        "--mount",
        "--propagation=private",
        "debootstrap",
        "--variant=minbase",
        f"--cache-dir={debs}",
        "--include=" + ",".join([*packages, *PLUMBING]),
        suite,
        rootfs,
        MIRROR,
        stdout=subprocess.DEVNULL,
    )


def make_venv(venv: dict[str, Any], rootfs: Path, cache: Path) -> None:
    """A venv made by the runtime's own python, inside its tree, from PyPI wheels only."""
    path = venv["path"]
    pip_cache = cache / "pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    inside_cache = rootfs / "var/cache/pip"
    inside_cache.mkdir(parents=True, exist_ok=True)
    log(f"venv {path}: {' '.join(venv['packages'])}")
    # The host's CA bundle, bound over the tree's for the build only: egress proxies with their
    # own CA (as on this project's machines) are trusted by the host, not by Debian's bundle.
    # env -i: the host's PIP_* settings (find-links, certs) name host paths.
    script = (
        'set -e; mount -t proc proc "$1/proc"; mount --bind "$2" "$1/var/cache/pip"; '
        'mount --bind /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"; '
        'chroot "$1" python3 -m venv "$3"; '
        'chroot "$1" env -i PATH=/usr/bin:/bin HOME=/root PIP_CACHE_DIR=/var/cache/pip '
        "PIP_CERT=/etc/ssl/certs/ca-certificates.crt ${https_proxy:+https_proxy=$https_proxy} "
        '"$3/bin/pip" install -q --disable-pip-version-check --only-binary=:all: "${@:4}"'
    )
    run(
        "unshare",
        "--mount",
        "--propagation=private",
        "bash",
        "-c",
        script,
        "make-venv",
        rootfs,
        pip_cache,
        path,
        *venv["packages"],
    )


def package_list(recipe: dict[str, Any], rootfs: Path) -> list[str]:
    """The recipe's packages with the versions installed, then the venv's: `runtime info`."""
    out = run(
        "dpkg-query",
        f"--admindir={rootfs}/var/lib/dpkg",
        "-W",
        "-f=${Package} ${Version}\n",
        *recipe["packages"],
        capture_output=True,
    ).stdout
    packages = [f"deb:{line}" for line in out.splitlines() if line.strip()]
    if "venv" in recipe:
        pip = run(
            "chroot",
            rootfs,
            "env",
            "-i",
            recipe["venv"]["path"] + "/bin/python",
            "-m",
            "pip",
            "list",
            "--format=freeze",
            "--disable-pip-version-check",
            capture_output=True,
        ).stdout
        packages += [f"pypi:{line.replace('==', ' ')}" for line in pip.splitlines() if line]
    return packages


def assemble(recipe: dict[str, Any], rootfs: Path, tree: Path) -> None:
    """tree/rootfs: the built tree's /usr, the kept /etc entries and /opt, nothing else."""
    shipped = tree / "rootfs"
    (shipped / "etc").mkdir(parents=True)
    os.rename(rootfs / "usr", shipped / "usr")
    for entry in recipe.get("etc", []):
        os.rename(rootfs / "etc" / entry, shipped / "etc" / entry)
    if any((rootfs / "opt").iterdir()):
        os.rename(rootfs / "opt", shipped / "opt")
    for strip in STRIP:
        target = shipped / "usr" / strip
        if strip == "share/doc" and target.is_dir():
            for path in target.rglob("*"):  # copyright files stay with what they cover
                if path.name != "copyright" and not path.is_dir():
                    path.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)
    relativize_links(shipped)


def relativize_links(top: Path) -> None:
    """/usr/bin/java -> /etc/alternatives/java becomes ../../etc/alternatives/java: the same
    file in the job's root (where /etc/alternatives is the runtime's, bound) and inside the
    runtime's own directory, so nothing in an archive points outside it."""
    for path in top.rglob("*"):
        if not path.is_symlink():
            continue
        target = os.readlink(path)
        # Where it points in the runtime's own root ('..' stops at /, as the kernel's does).
        where = "/" + str(path.parent.relative_to(top))
        absolute = os.path.normpath(os.path.join(where, target))
        relative = os.path.relpath(top / absolute.lstrip("/"), path.parent)
        if relative != target:
            path.unlink()
            path.symlink_to(relative)


def pack(tree: Path, archive: Path) -> None:
    """gzip (the agent's extractor reads it with the standard library), owned by root, sorted,
    hard links stored as plain files (each member stands alone)."""

    def members() -> Iterator[Path]:
        yield from sorted(tree.rglob("*"), key=lambda p: p.relative_to(tree).parts)

    with tarfile.open(archive, "w:gz", compresslevel=6) as out:
        for path in members():
            info = out.gettarinfo(str(path), arcname=str(path.relative_to(tree)))
            if info.islnk():
                info.type = tarfile.REGTYPE
                info.linkname = ""
                info.size = path.stat().st_size
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with path.open("rb") as data:
                    out.addfile(info, data)
            else:
                out.addfile(info)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_registry(cache: Path, entries: list[dict[str, Any]]) -> Path:
    """<cache>/registry.json: name -> versions -> archive (URLs relative to the index)."""
    index = cache / "registry.json"
    data: dict[str, Any] = {"format": 1, "runtimes": {}}
    if index.exists():
        data = json.loads(index.read_text())
    for entry in entries:
        versions = data["runtimes"].setdefault(entry["name"], {})
        versions[entry["version"]] = {
            k: entry[k]
            for k in ("url", "sha256", "size", "platforms", "description", "language")
            if k in entry
        }
    partial = index.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    partial.rename(index)
    return index


def all_recipes() -> list[str]:
    return sorted(p.parent.name for p in RECIPES.glob("*/recipe.yml"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="recipes to build (runtimes/<name>/)")
    parser.add_argument("--all", action="store_true", help="every recipe")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    names = all_recipes() if args.all else args.names
    if not names:
        parser.error(f"name recipes, or --all: {', '.join(all_recipes())}")
    missing = [n for n in names if not (RECIPES / n / "recipe.yml").exists()]
    if missing:
        parser.error(f"no recipe for {', '.join(missing)}; recipes: {', '.join(all_recipes())}")
    arch = architecture()
    with locked(args.cache):
        entries = [build(name, args.cache, arch) for name in names]
        index = write_registry(args.cache, entries)
    for entry in entries:
        print(f"{entry['name']}\t{entry['version']}\t{entry['size']}\t{entry['sha256']}")
    log(f"registry: {index}")


if __name__ == "__main__":
    main()
