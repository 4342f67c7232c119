# Installing what a script needs, in one place: sourced by scripts/test-deps.sh,
# scripts/deploy-check.sh and scripts/image.sh (not run on its own). Idempotent and quiet
# when everything is there already.

# ensure_venv VENV REQUIREMENTS: a project-local virtualenv with the pinned packages of
# REQUIREMENTS, so nothing touches the machine's Python. A stamp holding the
# requirements' text skips pip when they have not changed.
ensure_venv() {
    local venv=$1 requirements=$2
    if ! cmp -s "$requirements" "$venv/.installed" 2>/dev/null; then
        echo "== installing $requirements into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$venv/.installed"
    fi
}

# ensure_debian_packages PACKAGE...: installs the packages that are missing with apt-get
# (through sudo when not root). A fresh machine has no package lists yet; they are
# refreshed only when the install cannot find the packages, so a warm machine never
# touches the network.
ensure_debian_packages() {
    local missing=() package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "${missing[*]} missing and apt-get is not available; install them by hand" >&2
        return 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "== installing ${missing[*]}"
    if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}
