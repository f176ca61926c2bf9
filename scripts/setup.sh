# shellcheck shell=bash
# Shared set-up for scripts/run and scripts/test; source it, don't run it.
#
# fl_install PACKAGE...  installs the Debian packages that are missing.
# fl_build BUILDDIR [MESON_OPTION]...  configures (once) and builds.

FL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# What building and testing flitzi needs on a fresh Debian 12, down to a
# minimal root (debootstrap --variant=minbase; scripts/check-fresh proves
# it). gcc only recommends libc6-dev, which --no-install-recommends skips, so
# it is named. The tests also run jackd and jack_lsp/jack_wait (jackd2),
# oscsend (liblo-tools), valgrind, objdump (binutils), python3 and tmux (a
# terminal for flitzictl top); setpriv and sh come with every Debian. Lint
# (clang-format, cppcheck), scripts/fuzz (clang) and scripts/plot-bench
# (gnuplot) install their own.
# shellcheck disable=SC2034 # read by the scripts that source this file
FL_PACKAGES=(
  gcc libc6-dev binutils meson ninja-build pkg-config python3
  libjack-jackd2-dev liblo-dev libsndfile1-dev libsamplerate0-dev
  libcmocka-dev jackd2 liblo-tools valgrind tmux
  # For the next features: time-stretching, onset detection, JSON sessions.
  librubberband-dev libaubio-dev libjansson-dev
)

fl_install() {
  local missing=()
  local package
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null |
      grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0

  echo "flitzi: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  # jackd2 asks about real-time priority; the default answer is fine.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

fl_build() {
  local builddir=$1
  shift
  if [ -f "$builddir/build.ninja" ]; then
    meson configure "$builddir" "$@" >/dev/null
  else
    meson setup "$builddir" "$FL_ROOT" "$@" >&2
  fi
  meson compile -C "$builddir" >&2
}
