# Sourced by the scripts: ensure_packages PKG... installs the Debian packages that are missing.
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
BNORM_BUILD_PACKAGES=(cmake g++ make libeigen3-dev libgtest-dev libbenchmark-dev libopenmpi-dev openmpi-bin pkg-config doxygen)
# scripts/test's sanitizer, valgrind and libFuzzer runs: clang with its sanitizer and libFuzzer
# runtimes (libclang-rt-dev), valgrind.
BNORM_HARDENING_PACKAGES=(clang libclang-rt-dev valgrind)
