#!/usr/bin/env bash
# Idempotent set-up for SORL Lab: system packages, .venv, Python packages.
#
# Every `make` target runs this first. The first run takes a few minutes;
# later runs only check (apt packages present, stamp matches) and exit in
# well under two seconds. Safe for CI: non-interactive, works as root with
# no stdin.
#
# Knobs (environment variables):
#   PYTHON=python3.11        interpreter used to create .venv (default python3)
#   SORL_TORCH_SPEC=...      torch requirement installed before the project
#                            (default torch==2.13.0, see below)
#   SORL_SKIP_APT=1          never touch system packages
#   SORL_FORCE_BOOTSTRAP=1   reinstall Python packages even if the stamp matches
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
# torch goes in first and pinned: an unpinned `torch>=2.4` on a machine
# without a local CPU wheel pulls the newest CUDA build (several GB).
# pip's find-links on the dev/CI machines holds the 2.13.0 CPU wheel.
TORCH_SPEC="${SORL_TORCH_SPEC:-torch==2.13.0}"
STAMP="$VENV/.sorl-bootstrap-stamp"

# chromium: the browser the end-to-end tests drive (Playwright uses
#   /usr/bin/chromium; Playwright's own browser download is not possible here).
# libegl1 libgl1 libosmesa6: headless MuJoCo rendering (MUJOCO_GL=egl / osmesa).
# g++: compiles the fused CPU kernels (sorl_core/cpu.py; without it eager PyTorch runs).
APT_PACKAGES=(chromium libegl1 libgl1 libosmesa6 g++)

log() { printf '[bootstrap] %s\n' "$*"; }
warn() { printf '[bootstrap] WARNING: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- system ---
ensure_apt_packages() {
    if [[ "${SORL_SKIP_APT:-0}" == 1 ]]; then
        return 0
    fi
    if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        warn "no dpkg/apt-get here; install these yourself if you need browser" \
             "tests or MuJoCo rendering: ${APT_PACKAGES[*]}"
        return 0
    fi
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        # The status line, not mere presence: dpkg also knows removed packages.
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi

    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            # With no terminal (CI), sudo must fail rather than wait for a password.
            if [[ -t 0 ]]; then sudo=(sudo); else sudo=(sudo -n); fi
        else
            warn "not root and no sudo: cannot install ${missing[*]}; continuing without them"
            return 0
        fi
    fi
    log "installing system packages: ${missing[*]}"
    # A failed apt step is not fatal: everything but the browser tests and
    # MuJoCo rendering still works without these packages.
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq; then
        warn "apt-get update failed; continuing without ${missing[*]}"
        return 0
    fi
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        warn "apt-get install failed; continuing without ${missing[*]}"
        return 0
    fi
    log "system packages installed"
}

# ---------------------------------------------------------------- python ---
stamp_value() {
    # Anything that changes what gets installed must be part of this hash.
    { cat pyproject.toml scripts/bootstrap.sh; printf '%s\n' "$TORCH_SPEC"; } |
        if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi |
        cut -d' ' -f1
}

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'pass' 2>/dev/null; then
        return 0
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || { echo "[bootstrap] ERROR: $PYTHON not found" >&2; exit 1; }
    "$PYTHON" - <<'EOF' || { echo "[bootstrap] ERROR: Python >= 3.10 is required" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
EOF
    log "creating $VENV with $("$PYTHON" --version 2>&1)"
    # --clear: a .venv that exists but cannot run (e.g. the checkout moved) is rebuilt.
    "$PYTHON" -m venv --clear "$VENV"
}

pip_install() {
    # pip's config on some machines lists index folders that do not exist;
    # drop the one warning line per package that this causes. setuptools'
    # boxed "Editable installation !!" warning says only that folders named
    # like the package shadow it when Python runs from this directory: true of
    # every editable install, and here intended (sorl_core/ IS the package);
    # one plain line replaces it. pipefail keeps pip's exit status.
    "$VENV/bin/python" -m pip --no-input --disable-pip-version-check install -q "$@" 2>&1 |
        sed '/^WARNING: Location .* is ignored: it is neither a file nor a directory\.$/d' |
        awk '/BuildBackendWarning: Editable installation\./ {
                 print "[bootstrap] editable install: sorl_core/ in this folder is the installed package"
                 box = 1; bangs = 0; next }
             box && /^[[:space:]]*!![[:space:]]*$/ { if (++bangs == 2) { box = 0; after = 1 }; next }
             box { next }
             after && /with strategy, WheelFile/ { after = 0; next }
             { after = 0; print }'
}

installed_torch() {
    # Read the version from metadata: importing torch before numpy is there warns.
    "$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))'
}

install_python_packages() {
    log "upgrading pip"
    pip_install --upgrade pip
    log "installing $TORCH_SPEC (before the project, so nothing pulls a CUDA build)"
    pip_install "$TORCH_SPEC"
    # The constraint keeps the torch just installed: no later requirement may
    # swap it for another build.
    local constraints="$VENV/.sorl-constraints.txt"
    echo "torch==$(installed_torch)" >"$constraints"
    log "installing sorl-lab in editable mode with all extras (pip install -e \".[all]\")"
    pip_install -c "$constraints" -e ".[all]"
    # Compile the fused CPU kernels now (about 20 s) rather than in the first training iteration.
    # Not fatal: without them training runs eager PyTorch, only slower.
    log "building the fused CPU kernels (python -m sorl_core.cpu)"
    "$VENV/bin/python" -m sorl_core.cpu || warn "fused CPU kernels not built; training runs eager PyTorch (slower)"
}

main() {
    ensure_apt_packages
    ensure_venv

    local want
    want="$(stamp_value)"
    if [[ "${SORL_FORCE_BOOTSTRAP:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
        log "up to date (.venv matches pyproject.toml and bootstrap.sh)"
        return 0
    fi

    local start=$SECONDS
    rm -f "$STAMP"  # a run that fails half-way must not leave a valid stamp
    install_python_packages
    echo "$want" >"$STAMP"
    log "done in $((SECONDS - start)) s (torch $(installed_torch))"
}

main "$@"
