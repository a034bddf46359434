#!/usr/bin/env bash
# run_e2e.sh - runs one end-to-end script (tests/e2e_*.sh) for ctest and
# fails it when any program it started wrote a sanitizer report.
#
# usage: run_e2e.sh SCRIPT ARGS...
# The e2e scripts expect some runs to fail (exit 1 on a bad model file, 2 on
# a usage error), so a sanitizer's own exit status could pass for an expected
# one. Here ASan and UBSan write their reports to files in a private folder
# instead of stderr: the test fails when one appears, whatever the script
# said. In a build without sanitizers the options are ignored.
set -uo pipefail

script=$1
shift
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$logs/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$logs/ubsan"

bash "$script" "$@"
rc=$?

reports=("$logs"/*)
if [ -e "${reports[0]}" ]; then
  for r in "${reports[@]}"; do
    printf '=== sanitizer report %s\n' "${r##*/}"
    cat "$r"
  done
  printf 'FAIL %s: %d sanitizer report(s)\n' "${script##*/}" "${#reports[@]}"
  exit 1
fi
exit "$rc"
