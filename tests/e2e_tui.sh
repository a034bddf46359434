#!/usr/bin/env bash
# e2e_tui.sh KVCHAT - drives the real chat screen in tmux with the default
# model on the CPU: start, send a message and watch the reply stream and the
# meters change, cancel a reply with Esc, resize mid-reply, run commands, quit
# and find the terminal restored, then restart with --resume and see the old
# conversation. Everything lives in a temp dir (--db, XDG_CONFIG_HOME,
# XDG_STATE_HOME): the user's own data is never touched.
# Exit 77 (skipped) without tmux or without the model.
set -u
BIN=${1:?usage: e2e_tui.sh path/to/kvchat}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
command -v tmux >/dev/null || { echo "SKIPPED: tmux not installed"; exit 77; }
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
MODEL=${KVCHAT_MODEL_DIR:-$DATA/kvchat/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -r "$MODEL" ] || { echo "SKIPPED: model $MODEL not found (scripts/run fetches it)"; exit 77; }
# kvchat finds the default model itself; only a relocated models folder
# (KVCHAT_MODEL_DIR, as in CI) needs naming.
MODEL_ARG=
[ -n "${KVCHAT_MODEL_DIR:-}" ] && MODEL_ARG="-m '$MODEL'"

T=$(mktemp -d "${TMPDIR:-/tmp}/kvchat-e2e-tui.XXXXXX")
S=kvchat-e2e-$$
export TMUX_TMPDIR=$T  # a private tmux server
cleanup() { tmux kill-server 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
mkdir -p "$T/config" "$T/state"
FAILS=0
fail() { echo "FAIL: $*"; echo "---- screen ----"; tmux capture-pane -p -t $S 2>/dev/null; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
screen() { tmux capture-pane -p -t $S; }
# wait_for PATTERN SECONDS: until the screen matches (extended regex).
wait_for() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        screen | grep -Eq -- "$1" && return 0
        sleep 0.1
    done
    return 1
}

# The command runs in a shell that prints the tty modes after kvchat exits,
# so the test can see the terminal was put back (echo and canonical mode on).
run_kvchat() {
    tmux new-session -d -s $S -x 100 -y 30 \
        "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' \
         '$BIN' $MODEL_ARG --backend cpu --db '$T/history.db' --seed 7 --max-tokens 2000 $*; \
         echo EXIT=\$?; stty -a | tr ' ;' '\n\n' | grep -Ex -- '-?(echo|icanon)' | tr '\n' ' '; echo; sleep 600"
}

run_kvchat
wait_for '^>' 120 && pass "started, prompt shown" || fail "no prompt after start"
screen | grep -q 'RAM' && pass "memory meter shown" || fail "no memory meter"
screen | grep -q 'KV cache 0 /' && pass "KV meter at 0" || fail "KV meter not at 0 before the first turn"

# 1. A message: the reply streams, the meters move.
tmux send-keys -t $S 'Write one sentence about the sea.' Enter
wait_for 'Assistant' 10 && pass "reply started" || fail "no assistant header"
wait_for 'KV cache [1-9][0-9]* /' 60 && pass "KV meter moved" || fail "KV meter did not move"
wait_for 'decode +[0-9.]+ tok/s' 60 && pass "decode rate shown live" || fail "no decode rate"
wait_for '^> *$' 120 && pass "reply finished" || fail "reply did not finish"
screen | grep -Eq 'TTFT +[0-9]' && pass "TTFT shown" || fail "no TTFT"
screen | grep -q 'GPU util n/a' && pass "GPU readings n/a on the CPU" || fail "GPU readings not n/a"

# 2. A long reply: resize mid-reply, then cancel with Esc.
tmux send-keys -t $S 'Tell me a very long story about a lighthouse keeper, in many paragraphs.' Enter
wait_for 'generating' 20 || fail "second reply did not start"
sleep 1
tmux resize-window -t $S -x 60 -y 20
sleep 0.5
wait_for 'decode [0-9.]+ tok/s' 10 && pass "narrow meters after resize" || fail "meters not redrawn after resize"
W=$(screen | LC_ALL=C.UTF-8 wc -L)
[ "$W" -le 60 ] && pass "nothing drawn past the new width" || fail "lines wider than 60 after resize ($W)"
tmux send-keys -t $S Escape
wait_for '\[cancelled\]' 15 && pass "Esc cancelled the reply, text kept" || fail "no [cancelled] marker"

# 3. Too small, then back.
tmux resize-window -t $S -x 30 -y 10
wait_for 'terminal too small' 5 && pass "too-small notice" || fail "no too-small notice at 30x10"
tmux resize-window -t $S -x 100 -y 30
wait_for 'RAM' 5 && pass "redrawn when enlarged" || fail "not redrawn after enlarging"

# 4. Commands.
tmux send-keys -t $S '/help' Enter
wait_for '/resume ID' 5 && pass "/help" || fail "/help did not list commands"
tmux send-keys -t $S '/set temp 0' Enter
wait_for 'temperature = 0' 5 && pass "/set temp" || fail "/set temp not acknowledged"
tmux send-keys -t $S '/set temp hot' Enter
wait_for "temperature: 'hot' is not a number" 5 && pass "/set rejects bad values" || fail "/set accepted 'hot'"
tmux send-keys -t $S '/rename Sea and lighthouse' Enter
wait_for 'renamed to' 5 && pass "/rename" || fail "/rename"
tmux send-keys -t $S '/sessions' Enter
wait_for 'Sea and lighthouse' 5 && pass "/sessions lists the session" || fail "/sessions"
tmux send-keys -t $S '/export md '"$T"'/out.md' Enter
wait_for 'exported session' 5 && [ -s "$T/out.md" ] && pass "/export md" || fail "/export md"
tmux send-keys -t $S '/frobnicate' Enter
wait_for 'unknown command /frobnicate' 5 && pass "unknown command reported" || fail "unknown command"
tmux send-keys -t $S '/the' Tab
wait_for '/theme ' 5 && pass "Tab completes /theme" || fail "Tab completion"
tmux send-keys -t $S 'light' Enter
wait_for 'theme light' 5 && pass "/theme light" || fail "/theme light"
tmux send-keys -t $S C-c
wait_for 'to leave, press Ctrl-D' 5 && pass "Ctrl-C at an empty prompt explains" || fail "Ctrl-C hint"
tmux send-keys -t $S F2
wait_for 'Sessions \(F2' 5 && pass "F2 sidebar" || fail "F2 sidebar"
tmux send-keys -t $S F2

# 5. Quit: exit status 0 and the terminal restored.
tmux send-keys -t $S '/quit' Enter
wait_for 'EXIT=' 10 && pass "quit" || fail "did not quit"
screen | grep -q 'EXIT=0' && pass "exit status 0" || fail "exit status not 0"
screen | grep -Eq '(^| )echo( |$)' && screen | grep -Eq '(^| )icanon( |$)' &&
    pass "terminal restored (echo, icanon)" || fail "terminal modes not restored"
tmux kill-session -t $S

# 6. --resume shows the old conversation.
run_kvchat --resume
wait_for '^>' 120 || fail "no prompt after --resume"
screen | grep -q 'one sentence about the sea' && pass "--resume shows the old messages" || fail "--resume did not show the conversation"
screen | grep -q '\[cancelled\]' && pass "--resume keeps the cancelled marker" || fail "no cancelled marker after resume"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 && pass "Ctrl-D leaves" || fail "Ctrl-D did not leave"
tmux kill-session -t $S

# 7. A missing model is a clear message on screen, exit status 1.
tmux new-session -d -s $S -x 80 -y 24 \
    "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' '$BIN' -m '$T/nope.gguf' --db '$T/history.db'; echo EXIT=\$?; sleep 600"
wait_for 'could not be loaded' 20 && pass "load error shown in the UI" || fail "no load error screen"
tmux send-keys -t $S q
wait_for 'EXIT=1' 10 && pass "exit status 1 after a load error" || fail "load error exit status"

[ $FAILS -eq 0 ] && echo "e2e_tui: all passed" || echo "e2e_tui: $FAILS failed"
exit $((FAILS > 0))
