# Sourced by the scripts in this directory: stage headings and progress for long steps.
#
# stage NAME            prints "==> NAME" (and how long the previous stage took) on stderr
# with_progress LABEL CMD...
#                       runs CMD; while it runs, prints "    LABEL: still running (N s)" every
#                       AGENTWATCH_PROGRESS_INTERVAL seconds (default 15) on stderr, then how long
#                       it took. CMD's exit status is returned.

_stage_name=""
_stage_start=0

stage() {
  local now
  now=$(date +%s)
  if [ -n "$_stage_name" ]; then
    echo "    ($_stage_name: $((now - _stage_start)) s)" >&2
  fi
  _stage_name=$1
  _stage_start=$now
  echo "==> $1" >&2
}

with_progress() {
  local label=$1
  shift
  local start
  start=$(date +%s)
  local interval=${AGENTWATCH_PROGRESS_INTERVAL:-15}
  (
    # The ticker's own sleep goes with it: nothing is left running after the step.
    nap=""
    trap 'if [ -n "$nap" ]; then kill "$nap" 2>/dev/null; fi; exit 0' TERM
    while :; do
      sleep "$interval" &
      nap=$!
      wait "$nap"
      echo "    $label: still running ($(($(date +%s) - start)) s)" >&2
    done
  ) &
  local ticker=$!
  local status=0
  "$@" || status=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [ "$status" -eq 0 ]; then
    echo "    $label: done in $(($(date +%s) - start)) s" >&2
  else
    echo "    $label: FAILED (exit $status) after $(($(date +%s) - start)) s" >&2
  fi
  return "$status"
}
