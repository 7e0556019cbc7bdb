#!/usr/bin/env bash
# Install the Debian packages that `learn2diss data synth` (the demo corpus builder) needs:
# speech synthesisers (espeak-ng + MBROLA, flite, festival), sox and WordNet.
#
# Idempotent: when every package is already installed it only checks (dpkg-query) and exits.
# As root: runs apt-get update, enables Debian's contrib + non-free components for MBROLA in a
# separate file (/etc/apt/sources.list.d/learn2diss-contrib-nonfree.*; the user's own sources are
# never rewritten), then installs the list. A package that cannot be installed (e.g. MBROLA on a
# system without non-free) is reported and skipped: the corpus builder then uses fewer voices.
# Not root: prints the exact commands to run and exits 0 with a warning.
#
# Usage: bash scripts/install-demo-debs.sh
set -euo pipefail

# Debian main.
MAIN_PKGS=(
    espeak-ng espeak-ng-data flite sox libsox-fmt-all wordnet-base
    festival festlex-cmu festlex-poslex festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
)
# Debian contrib (mbrola, festvox-rablpc16k) and non-free (the MBROLA voice databases).
NONFREE_PKGS=(mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 festvox-rablpc16k)
SOURCES_FILE_DEB822=/etc/apt/sources.list.d/learn2diss-contrib-nonfree.sources
SOURCES_FILE_LIST=/etc/apt/sources.list.d/learn2diss-contrib-nonfree.list

missing_packages() {
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            echo "$pkg"
        fi
    done
}

mapfile -t MISSING_MAIN < <(missing_packages "${MAIN_PKGS[@]}")
mapfile -t MISSING_NONFREE < <(missing_packages "${NONFREE_PKGS[@]}")
if [[ ${#MISSING_MAIN[@]} -eq 0 && ${#MISSING_NONFREE[@]} -eq 0 ]]; then
    echo "install-demo-debs: all ${#MAIN_PKGS[@]}+${#NONFREE_PKGS[@]} packages already installed."
    exit 0
fi

. /etc/os-release 2>/dev/null || true
CODENAME="${VERSION_CODENAME:-bookworm}"

# True when some apt source already enables both contrib and non-free.
contrib_nonfree_enabled() {
    local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    local f
    for f in "${files[@]}"; do
        [[ -f "$f" ]] || continue
        if grep -Eq '^[[:space:]]*(Components:|deb[[:space:]]).*[[:space:]]contrib([[:space:]]|$)' "$f" \
            && grep -Eq '^[[:space:]]*(Components:|deb[[:space:]]).*[[:space:]]non-free([[:space:]]|$)' "$f"; then
            return 0
        fi
    done
    return 1
}

# The Debian archive URI the user already uses (a mirror stays a mirror), else deb.debian.org.
debian_archive_uri() {
    local uri=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources)
    elif [[ -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file|ftp):/) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

enable_contrib_nonfree() {
    local uri
    uri=$(debian_archive_uri)
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        cat > "$SOURCES_FILE_DEB822" <<EOF
# Added by learn2diss scripts/install-demo-debs.sh: Debian contrib + non-free, for MBROLA voices.
Types: deb
URIs: $uri
Suites: $CODENAME $CODENAME-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        echo "install-demo-debs: wrote $SOURCES_FILE_DEB822"
    else
        cat > "$SOURCES_FILE_LIST" <<EOF
# Added by learn2diss scripts/install-demo-debs.sh: Debian contrib + non-free, for MBROLA voices.
deb $uri $CODENAME contrib non-free
deb $uri $CODENAME-updates contrib non-free
EOF
        echo "install-demo-debs: wrote $SOURCES_FILE_LIST"
    fi
}

if [[ $(id -u) -ne 0 ]]; then
    echo "WARNING: install-demo-debs: not root; the demo corpus needs these Debian packages:" >&2
    echo "  missing: ${MISSING_MAIN[*]} ${MISSING_NONFREE[*]}" >&2
    echo "Run as root (MBROLA needs Debian's contrib and non-free components):" >&2
    if ! contrib_nonfree_enabled; then
        echo "  printf 'Types: deb\\nURIs: $(debian_archive_uri)\\nSuites: $CODENAME $CODENAME-updates\\nComponents: contrib non-free\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' | sudo tee $SOURCES_FILE_DEB822" >&2
    fi
    echo "  sudo apt-get update" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${MAIN_PKGS[*]} ${NONFREE_PKGS[*]}" >&2
    echo "Without them, 'learn2diss data synth' uses the voices present, and its tests skip." >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [[ ${#MISSING_NONFREE[@]} -gt 0 && "${ID:-debian}" == debian ]] && ! contrib_nonfree_enabled; then
    enable_contrib_nonfree
fi
apt-get update -q
if [[ ${#MISSING_MAIN[@]} -gt 0 ]]; then
    apt-get install -y -q --no-install-recommends "${MISSING_MAIN[@]}"
fi
if [[ ${#MISSING_NONFREE[@]} -gt 0 ]]; then
    if ! apt-get install -y -q --no-install-recommends "${MISSING_NONFREE[@]}"; then
        # One at a time, so that one unavailable voice does not block the others.
        for pkg in "${MISSING_NONFREE[@]}"; do
            apt-get install -y -q --no-install-recommends "$pkg" \
                || echo "WARNING: install-demo-debs: could not install $pkg; its voices are left out." >&2
        done
    fi
fi
mapfile -t STILL_MISSING < <(missing_packages "${MAIN_PKGS[@]}" "${NONFREE_PKGS[@]}")
if [[ ${#STILL_MISSING[@]} -gt 0 ]]; then
    echo "WARNING: install-demo-debs: still missing: ${STILL_MISSING[*]}" >&2
else
    echo "install-demo-debs: all packages installed."
fi
