# Sourced by the scripts in this directory: create or refresh a virtual environment.
#
# ensure_venv DIR [--unpin "NAME ..."] PIP_ARGS...
#   installs PIP_ARGS into DIR under requirements/constraints.txt (every transitive dependency
#   pinned to the set CI was last green with), minus the packages named by --unpin, and does it
#   again only when pyproject.toml, the constraints or the arguments changed. An install says
#   what it does and shows that it is still running (pip itself is kept quiet).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo_root/scripts/_progress.sh"

ensure_venv() {
  local dir=$1
  shift
  local unpin=""
  if [ "${1:-}" = "--unpin" ]; then
    unpin=$2
    shift 2
  fi
  local stamp="$dir/.agentwatch-installed"
  local want
  want="$(cat "$repo_root/pyproject.toml" "$repo_root/requirements/constraints.txt" | sha256sum | cut -d' ' -f1) $unpin $*"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$dir/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$dir"
  fi
  local constraints="$dir/constraints.txt"
  cp "$repo_root/requirements/constraints.txt" "$constraints"
  for name in $unpin; do
    sed -i "/^${name}==/d" "$constraints"
  done
  echo "    installing into $dir: $* (first time about 1-2 min; later runs skip this)" >&2
  with_progress "pip install into $dir" "$dir/bin/python" -m pip install --quiet --constraint "$constraints" "$@"
  echo "$want" >"$stamp"
}
