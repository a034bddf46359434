#!/usr/bin/env bash
# e2e_remote.sh - kvchat -p against tests/fault_server.py on the loopback:
# the reply on stdout, a server's failure as one line naming the server with
# exit status 1 and the partial reply kept in the history, the API key never
# in a message or the database, the options that clash with a server, the
# config keys, and the --insecure warning. Skips (77) without python3.
#
# usage: e2e_remote.sh PATH/TO/kvchat PATH/TO/fault_server.py
set -uo pipefail

kvchat=$1 server=$2
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }

tmp=$(mktemp -d)
export XDG_CONFIG_HOME=$tmp/config XDG_DATA_HOME=$tmp/data
mkdir -p "$XDG_CONFIG_HOME/kvchat"
# the server lives while fd 3 is open
exec 3> >(python3 "$server" --lifetime 300 >"$tmp/ports")
trap 'exec 3>&-; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -s "$tmp/ports" ] && break; sleep 0.1; done
port=$(cut -d' ' -f1 "$tmp/ports")
url=http://127.0.0.1:$port/v1 origin=http://127.0.0.1:$port
unset KVCHAT_API_KEY OPENAI_API_KEY

pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$1"; [ -n "${2:-}" ] && printf '     %s\n' "$2"; }
expect_exit() {
  local want=$1 name=$2; shift 2
  out=$("$@" 2>"$tmp/stderr"); local rc=$?
  errout=$(cat "$tmp/stderr")
  if [ "$rc" -eq "$want" ]; then ok "$name"; else bad "$name" "exit $rc, wanted $want; stderr: $errout"; fi
}
one_line_error() {
  if [ "$(printf '%s\n' "$errout" | grep -c .)" -eq 1 ] && [[ $errout == kvchat:* ]]; then
    ok "$1: one-line error"
  else
    bad "$1: one-line error" "$errout"
  fi
}

# --- a good server ---------------------------------------------------------
expect_exit 0 "-p --server" "$kvchat" --server "$url" -p "good day"
[ "$out" = "Hello, world é!" ] && ok "... the reply on stdout" || bad "... the reply on stdout" "$out"
[ -z "$errout" ] && ok "... nothing on stderr" || bad "... nothing on stderr" "$errout"
expect_exit 0 "-m names the model on the server" "$kvchat" --server "$url" -m other-model -p "echo hi" --no-history
[[ $out == *'"model":"other-model"'* ]] && ok "... and it is sent" || bad "... and it is sent" "$out"
expect_exit 0 "without -m the server's first model" "$kvchat" --server "$url" -p "echo hi" --no-history
[[ $out == *'"model":"fault-model"'* ]] && ok "... is sent" || bad "... is sent" "$out"
echo "hi from stdin" | expect_exit 0 "-p - --server" "$kvchat" --server "$url" -p - --no-history

# --- a failing one ----------------------------------------------------------
expect_exit 1 "a server error mid-reply" "$kvchat" --server "$url" -p "midstream now"
one_line_error "a server error mid-reply"
[[ $errout == *"$origin"* ]] && ok "... names the server" || bad "... names the server" "$errout"
[ "$out" = "partial text" ] && ok "... the partial reply on stdout" || bad "... the partial reply on stdout" "$out"
expect_exit 0 "export the failed session" "$kvchat" --export 2
[[ $out == *"midstream now"*"partial text"* ]] && ok "... the partial reply is in the history" \
  || bad "... the partial reply is in the history" "$out"
expect_exit 1 "HTTP 500" "$kvchat" --server "$url" -p "e500json" --no-history
one_line_error "HTTP 500"
[[ $errout == *"$origin"*"HTTP 500"* ]] && ok "... names the server and the status" || bad "... names the server and the status" "$errout"
expect_exit 1 "nothing listens" "$kvchat" --server "http://127.0.0.1:1/v1" -m x -p hi --no-history
one_line_error "nothing listens"
[[ $errout == *"127.0.0.1:1"* ]] && ok "... names the server" || bad "... names the server" "$errout"

# --- the API key --------------------------------------------------------------
key=sk-e2e-SECRET-777
KVCHAT_API_KEY=$key expect_exit 1 "a refused key" "$kvchat" --server "$url" -p "e401"
one_line_error "a refused key"
[[ $errout != *"$key"* && $errout == *KVCHAT_API_KEY* ]] && ok "... names the variable, never the key" \
  || bad "... names the variable, never the key" "$errout"
OPENAI_API_KEY=$key expect_exit 1 "OPENAI_API_KEY when KVCHAT_API_KEY is unset" "$kvchat" --server "$url" -p "e401" --no-history
[[ $errout == *OPENAI_API_KEY* ]] && ok "... is the one used" || bad "... is the one used" "$errout"
expect_exit 1 "--api-key-env naming an unset variable" "$kvchat" --server "$url" --api-key-env NO_SUCH_KEY_VAR -p hi
one_line_error "--api-key-env naming an unset variable"
! grep -q -a "$key" "$XDG_DATA_HOME/kvchat/history.db" && ok "the key is not in the database" || bad "the key is not in the database"

# --- options that make no sense with a server -------------------------------
for args in "-c 512" "-t 4" "--backend cuda" "--chat-template chatml"; do
  # shellcheck disable=SC2086
  expect_exit 2 "--server with $args" "$kvchat" --server "$url" $args -p hi
  one_line_error "--server with $args"
done
expect_exit 2 "tokenize --server" "$kvchat" tokenize --server "$url" hi
expect_exit 2 "bench --server" "$kvchat" bench --server "$url"
expect_exit 2 "--insecure without a server" "$kvchat" --insecure -p hi
one_line_error "--insecure without a server"

# --- --insecure and the config file ------------------------------------------
expect_exit 0 "--insecure" "$kvchat" --server "$url" --insecure -p "good" --no-history
[[ $errout == *"warning: --insecure"* ]] && ok "... warns on stderr" || bad "... warns on stderr" "$errout"
[ "$out" = "Hello, world é!" ] && ok "... and stdout keeps only the reply" || bad "... and stdout keeps only the reply" "$out"
cat >"$XDG_CONFIG_HOME/kvchat/config" <<CONF
server = $url
server_model = other-model
connect_timeout = 2
idle_timeout = 5
threads = 4
CONF
expect_exit 0 "server from the config file (its threads ignored)" "$kvchat" -p "echo hi" --no-history
[[ $out == *'"model":"other-model"'* ]] && ok "... with its model" || bad "... with its model" "$out"
expect_exit 2 "a bad timeout in the config file" env XDG_CONFIG_HOME="$tmp/bad" sh -c \
  'mkdir -p "$XDG_CONFIG_HOME/kvchat" && echo "idle_timeout = soon" >"$XDG_CONFIG_HOME/kvchat/config" && exec "$0" -p hi' "$kvchat"
one_line_error "a bad timeout in the config file"

# --- --list-models --server --------------------------------------------------
expect_exit 0 "--list-models --server" "$kvchat" --list-models --server "$url"
[ "$out" = "$(printf 'fault-model\nother-model')" ] && ok "... the server's models, one a line" \
  || bad "... the server's models, one a line" "$out"
expect_exit 0 "--list-models on a server with none" "$kvchat" --list-models --server "http://127.0.0.1:$port/empty/v1"
[ -z "$out" ] && [[ $errout == *"no models"* ]] && ok "... says so on stderr" || bad "... says so on stderr" "$out / $errout"
expect_exit 1 "--list-models with an unset API key variable" \
  "$kvchat" --list-models --server "$url" --api-key-env KVCHAT_TEST_NO_SUCH_KEY
one_line_error "--list-models with an unset API key variable"
[[ $errout == *"$origin"*KVCHAT_TEST_NO_SUCH_KEY* ]] && ok "... names the server and the variable" \
  || bad "... names the server and the variable" "$errout"
expect_exit 1 "--list-models on a path that is not a server's" "$kvchat" --list-models --server "$origin/nothing/here"
one_line_error "--list-models on a path that is not a server's"
[[ $errout == *"$origin"*404* ]] && ok "... names the server and the status" || bad "... names the server and the status" "$errout"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
