# Sourced by the scripts that install Debian packages: the one place they are installed.
#   apt_install WHO PKG...   installs PKG... (as root, or through sudo), quietly, saying WHO
#                            wants them; nothing when no package is named.
# Each script decides what is missing (a command, a library) and names the packages.
apt_install() {
  local who=$1
  shift
  [ $# -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "$who: installing $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
