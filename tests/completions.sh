#!/usr/bin/env bash
# completions.sh DIR - the shell completions generated in DIR (kvchat for
# bash, _kvchat for zsh, kvchat.fish): each parses in its shell where that
# shell is installed, and the bash one completes an option, a subcommand and
# a model name (from a stand-in kvchat whose --list-models prints a table).
set -u
D=$(cd "${1:?usage: completions.sh BUILD/completions}" && pwd)
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

bash -n "$D/kvchat" && pass "bash: parses" || fail "bash -n $D/kvchat"
if command -v zsh >/dev/null; then
    zsh -n "$D/_kvchat" && pass "zsh: parses" || fail "zsh -n $D/_kvchat"
else
    echo "skipped: zsh not installed"
fi
if command -v fish >/dev/null; then
    fish -n "$D/kvchat.fish" && pass "fish: parses" || fail "fish -n $D/kvchat.fish"
else
    echo "skipped: fish not installed"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/kvchat-compl.XXXXXX")
trap 'rm -rf "$T"' EXIT
cat >"$T/kvchat" <<'SH'
#!/bin/sh
[ "$1" = --list-models ] || exit 1
printf 'FILE                      SIZE  ARCH\nSmolLM2-135M.gguf    93.8 MiB  llama\ngemma-3.gguf   241 MiB  gemma3\n'
SH
chmod +x "$T/kvchat"
# complete WORDS...: what _kvchat offers for the last word
complete_words() {
    bash -c '
        source "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
        _kvchat
        printf "%s\n" "${COMPREPLY[@]}"' _ "$D/kvchat" "$@"
}
out=$(complete_words "$T/kvchat" --ser)
[ "$out" = "--server" ] && pass "bash: --ser completes to --server" || fail "bash: --ser gave '$out'"
out=$(complete_words "$T/kvchat" --list-m)
[ "$out" = "--list-models" ] && pass "bash: --list-m completes" || fail "bash: --list-m gave '$out'"
out=$(complete_words "$T/kvchat" be)
[ "$out" = "bench" ] && pass "bash: a subcommand" || fail "bash: 'be' gave '$out'"
out=$(cd "$T" && complete_words "$T/kvchat" -m gem)
[ "$out" = "gemma-3.gguf" ] && pass "bash: -m completes a model name" || fail "bash: -m gem gave '$out'"
out=$(complete_words "$T/kvchat" --backend c)
[ "$(echo $out)" = "cpu cuda" ] && pass "bash: --backend's values" || fail "bash: --backend c gave '$out'"
out=$(complete_words "$T/kvchat" --seed "")
[ -z "$out" ] && pass "bash: nothing offered for --seed's value" || fail "bash: --seed offered '$out'"

[ $FAILS -eq 0 ] && echo "completions: all passed" || echo "completions: $FAILS failed"
exit $((FAILS > 0))
