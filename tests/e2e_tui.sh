#!/usr/bin/env bash
# e2e_tui.sh KVCHAT - drives the real chat screen in tmux with the default
# model on the CPU: start, send a message and watch the reply stream and the
# meters change, cancel a reply with Esc, resize mid-reply, run commands, quit
# and find the terminal restored, then restart with --resume and see the old
# conversation. Then multi-line input (Alt-Enter, bracketed paste) and
# /retry and /edit, checked in the saved history and after --resume; and
# small terminals (hints, Tab's matches, the too-small notice); a long
# prompt's progress, and a tiny context filling up. Everything lives in a temp dir (--db, XDG_CONFIG_HOME,
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
# A session that outlives the test's own: killing the last session makes the
# tmux server exit, and a new-session issued while it is exiting fails with
# "server exited unexpectedly" (seen on a loaded machine).
tmux new-session -d -s keep "sleep 3600" || { echo "FAIL: cannot start tmux"; exit 1; }
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
DB=$T/history.db
ROWS=30
run_kvchat() {
    tmux new-session -d -s $S -x 100 -y $ROWS \
        "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
         '$BIN' $MODEL_ARG --backend cpu --db '$DB' --seed 7 --max-tokens 2000 $*; \
         echo EXIT=\$?; stty -a | tr ' ;' '\n\n' | grep -Ex -- '-?(echo|icanon)' | tr '\n' ' '; echo; sleep 600"
}

run_kvchat
wait_for '^>' 120 && pass "started, prompt shown" || fail "no prompt after start"
screen | grep -q 'RAM' && pass "memory meter shown" || fail "no memory meter"
screen | grep -q 'context 0 /' && pass "context meter at 0" || fail "context meter not at 0 before the first turn"
# kv_label_names_one_thing: "KV memory" is the cache's bytes, "context" its tokens.
screen | grep -q 'KV memory' && ! screen | grep -q 'KV cache' &&
    pass "kv_label_names_one_thing: KV memory and context apart" || fail "kv_label_names_one_thing: a label says KV cache"
# empty_bar_draws_track: at 0 tokens the context bar still shows its track.
screen | grep -A1 'context 0 /' | tail -1 | grep -q '░░░░' && pass "empty_bar_draws_track: the empty context bar has a track" ||
    fail "empty_bar_draws_track: no track under the empty context meter"
# mem_headline_agrees_with_legend: used = total - free of the legend.
python3 - "$(screen)" <<'PY' && pass "mem_headline_agrees_with_legend" || fail "mem_headline_agrees_with_legend: the RAM headline and its legend disagree"
import re, sys
s = sys.argv[1]
u = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
def b(v, unit): return float(v) * u[unit]
m = re.search(r"RAM ([0-9.]+) (\w+) / ([0-9.]+) (\w+)", s)
f = re.search(r"free ([0-9.]+) (\w+)", s)
used, total, free = b(m[1], m[2]), b(m[3], m[4]), b(f[1], f[2])
sys.exit(0 if abs(total - free - used) <= 0.02 * total else 1)
PY

# 1. A message: the reply streams, the meters move.
tmux send-keys -t $S 'Write one sentence about the sea.' Enter
wait_for 'Assistant' 10 && pass "reply started" || fail "no assistant header"
wait_for 'context [1-9][0-9]* /' 60 && pass "context meter moved" || fail "context meter did not move"
wait_for 'decode +[0-9.]+ tok/s' 60 && pass "decode rate shown live" || fail "no decode rate"
wait_for '^> *$' 120 && pass "reply finished" || fail "reply did not finish"
screen | grep -Eq 'TTFT +[0-9]' && pass "TTFT shown" || fail "no TTFT"
# gpu_rows_hidden_on_cpu: rows that could only read n/a are not drawn.
! screen | grep -Eq 'GPU util|power  |energy  ' && pass "gpu_rows_hidden_on_cpu: no GPU rows on the CPU" ||
    fail "gpu_rows_hidden_on_cpu: GPU rows drawn on the CPU backend"
# The host's bandwidth is measured once the engine has been idle a second.
wait_for 'roofline +[0-9]+% of [0-9]+ GB/s' 20 && pass "roofline against the measured bandwidth" ||
    fail "roofline not shown on the CPU"

# 2. A long reply: resize mid-reply, then cancel with Esc. How long a reply
# runs is the model's choice, so sample from the whole distribution, where the
# end-of-turn token is one choice among 49152 and the reply outlasts the test.
for set in 'temp 1.5' 'top_k 0' 'top_p 1' 'min_p 0'; do
    tmux send-keys -t $S "/set $set" Enter
done
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
wait_for '/resume ID' 5 && screen | grep -q 'Help ·' && pass "/help opens the help overlay" ||
    fail "/help did not list commands"
tmux send-keys -t $S Escape
sleep 0.5
! screen | grep -q 'Help ·' && pass "Esc closes the help" || fail "Esc did not close the help"
tmux send-keys -t $S '/set temp 0' Enter
wait_for 'temperature = 0' 5 && pass "/set temp" || fail "/set temp not acknowledged"
tmux send-keys -t $S '/set temp hot' Enter
wait_for "temperature: 'hot' is not a number" 5 && pass "/set rejects bad values" || fail "/set accepted 'hot'"
tmux send-keys -t $S '/rename Sea and lighthouse' Enter
wait_for 'renamed session [0-9]+ to "Sea and lighthouse"' 5 && pass "/rename" || fail "/rename"
tmux send-keys -t $S '/sessions' Enter
wait_for 'Sea and lighthouse' 5 && pass "/sessions lists the session" || fail "/sessions"
tmux send-keys -t $S '/export md '"$T"'/out.md' Enter
wait_for 'exported session' 5 && [ -s "$T/out.md" ] && pass "/export md" || fail "/export md"
tmux send-keys -t $S '/frobnicate' Enter
wait_for 'unknown command /frobnicate' 5 && pass "unknown command reported" || fail "unknown command"
tmux send-keys -t $S '/the' Tab
wait_for '^> /theme *$' 5 && pass "Tab completes /theme" || fail "Tab completion"
tmux send-keys -t $S 'light' Enter
wait_for 'theme light' 5 && pass "/theme light" || fail "/theme light"
tmux send-keys -t $S C-c
wait_for 'to leave, press Ctrl-D' 5 && pass "Ctrl-C at an empty prompt explains" || fail "Ctrl-C hint"
tmux send-keys -t $S F2
wait_for 'Sessions \(Esc/F2' 5 && pass "F2 sidebar" || fail "F2 sidebar"
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
screen | grep -q '\[cancelled\]' && pass "--resume keeps the cancelled marker" || fail "no cancelled marker after resume"
# the first exchange is above the long cancelled reply: scroll back to it
for _ in 1 2 3 4 5 6; do
    screen | grep -q 'one sentence about the sea' && break
    tmux send-keys -t $S PPage
    sleep 0.3
done
screen | grep -q 'one sentence about the sea' && pass "--resume shows the old messages (PgUp scrolls back)" ||
    fail "--resume did not show the conversation"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 && pass "Ctrl-D leaves" || fail "Ctrl-D did not leave"
tmux kill-session -t $S

# 7. Multi-line input, /retry and /edit, in a history of their own so the
# counts are exact. The saved session is read with --export (one message per
# line of JSON, newlines escaped); a reply still streaming shows as such.
DB=$T/multi.db
ROWS=50
export_json() { "$BIN" --export 1 --format json --db "$DB" 2>/dev/null; }
roles() { export_json | grep -o '"role": "[a-z]*"' | cut -d'"' -f4 | tr '\n' ' '; }
# wait_saved ROLES SECONDS: until the session holds exactly ROLES ("user
# assistant ...") with no reply streaming and the content differs from
# $BEFORE (so a /retry that reuses the row ids is seen to have happened).
wait_saved() {
    local i j
    for ((i = 0; i < $2 * 10; i++)); do
        j=$(export_json)
        if [ "$(roles)" = "$1" ] && ! grep -q '"end": "streaming"' <<<"$j" && [ "$j" != "${BEFORE:-}" ]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
BEFORE=
run_kvchat -n 12 --mem-bandwidth 1000
wait_for '^>' 120 || fail "no prompt (multi-line run)"
tmux send-keys -t $S -l 'first line'
tmux send-keys -t $S M-Enter
tmux send-keys -t $S -l 'second line'
wait_for '^  second line' 5 && pass "Alt-Enter starts a second input line" || fail "no second input line after Alt-Enter"
sleep 0.5
screen | grep -q 'Assistant' && fail "Alt-Enter sent the message" || pass "Alt-Enter did not send"
tmux send-keys -t $S Enter
wait_saved "user assistant " 60 && pass "two lines sent as one message" || fail "first turn not saved as one user message and one reply"
export_json | grep -qF '"content": "first line\nsecond line"' && pass "Alt-Enter newline kept in the message" ||
    fail "message text is not 'first line\nsecond line'"
wait_for '^> *$' 60 || fail "prompt not back after the first reply"
screen | grep -Eq 'roofline +[0-9]+% of 1000 GB/s' && pass "--mem-bandwidth sets the roofline's bandwidth" ||
    fail "roofline not against --mem-bandwidth 1000"

# A pasted block (line breaks as CR, as terminals send them, and one CR LF)
# is one message, sent only by the Enter after it.
tmux send-keys -t $S -l $'\e[200~pasted one\rpasted two\r\npasted three\e[201~'
wait_for '^  pasted three' 5 && pass "paste shown as three input lines" || fail "pasted lines not in the input"
sleep 0.5
[ "$(roles)" = "user assistant " ] && pass "paste did not send anything" || fail "the paste sent a message: $(roles)"
tmux send-keys -t $S Enter
wait_saved "user assistant user assistant " 60 && pass "pasted block sent as one message" ||
    fail "paste not saved as one user message: $(roles)"
export_json | grep -qF '"content": "pasted one\npasted two\npasted three"' && pass "pasted text kept whole" ||
    fail "pasted message text wrong"
wait_for '^> *$' 60 || fail "prompt not back after the paste reply"

# /retry: the user message is kept once, the earlier reply kept as a variant.
BEFORE=$(export_json)
tmux send-keys -t $S '/retry' Enter
wait_saved "user assistant user assistant assistant " 60 && pass "/retry keeps the old reply as a variant" ||
    fail "/retry: history holds $(roles)"
export_json | grep -qF '"variant": 2, "variants": 2, "chosen": true' && pass "/retry: the new reply is chosen" ||
    fail "/retry: the new reply is not the chosen variant"
[ "$(export_json | grep -cF '"content": "pasted one\npasted two')" = 1 ] && pass "/retry: the user message saved once" ||
    fail "/retry: the user message is not saved exactly once"
wait_for '^> *$' 60 || fail "prompt not back after /retry"

# /edit: the last message comes back into the input line and out of the
# history; Enter sends it again.
BEFORE=$(export_json)
tmux send-keys -t $S '/edit' Enter
wait_for '^> pasted one' 5 && pass "/edit puts the message in the input line" || fail "/edit: input line empty"
wait_saved "user assistant " 10 && pass "/edit removes the exchange from the history" || fail "/edit: history holds $(roles)"
BEFORE=$(export_json)
tmux send-keys -t $S Enter
wait_saved "user assistant user assistant " 60 && pass "/edit resends as one exchange" || fail "/edit resend: history holds $(roles)"
wait_for '^> *$' 60 || fail "prompt not back after /edit"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (multi-line run)"
tmux kill-session -t $S

# --resume shows exactly the saved transcript: two exchanges, not the
# attempts /retry and /edit replaced.
run_kvchat --resume -n 12
wait_for '^>' 120 || fail "no prompt after --resume (multi-line run)"
N=$(screen | grep -c '^ Assistant')
[ "$N" = 2 ] && pass "--resume shows only the latest replies" || fail "--resume shows $N replies, expected 2"
N=$(screen | grep -c '^   pasted one')
[ "$N" = 1 ] && pass "--resume shows the retried message once" || fail "--resume shows the retried message $N times"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (resumed multi-line run)"
tmux kill-session -t $S

# 8. A missing model is a clear message on screen, exit status 1.
tmux new-session -d -s $S -x 80 -y 24 \
    "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' '$BIN' -m '$T/nope.gguf' --db '$T/history.db'; echo EXIT=\$?; sleep 600"
wait_for 'could not be loaded' 20 && pass "load error shown in the UI" || fail "no load error screen"
tmux send-keys -t $S q
wait_for 'EXIT=1' 10 && pass "exit status 1 after a load error" || fail "load error exit status"
tmux kill-session -t $S

# 9. The terminal goes away without a hang-up signal (its pty closed by
# someone else): kvchat runs in a session of its own on the pane's tty, so
# closing the pane sends it no SIGHUP and it sees only end of input. It must
# leave within seconds, not spin, with the reply so far saved.
DB=$T/hup.db
tmux new-session -d -s $S -x 100 -y 30 "sleep 600"
TTY=$(tmux display-message -p -t $S '#{pane_tty}')
setsid env TERM=screen XDG_CONFIG_HOME="$T/config" XDG_STATE_HOME="$T/state" XDG_CACHE_HOME="$T/cache" \
    "$BIN" ${KVCHAT_MODEL_DIR:+-m "$MODEL"} --backend cpu --db "$DB" --seed 7 --max-tokens 2000 \
    <"$TTY" >"$TTY" 2>&1 &
KPID=$!
wait_for '^>' 120 || fail "no prompt (kvchat on the pane's tty)"
for set in 'temp 1.5' 'top_k 0' 'top_p 1' 'min_p 0'; do
    tmux send-keys -t $S "/set $set" Enter
done
tmux send-keys -t $S 'Tell me a very long story about a lighthouse keeper, in many paragraphs.' Enter
wait_for 'generating' 20 || fail "long reply did not start (pane's tty)"
sleep 2
tmux kill-session -t $S
for ((i = 0; i < 50; i++)); do
    kill -0 $KPID 2>/dev/null || break
    sleep 0.1
done
if kill -0 $KPID 2>/dev/null; then
    fail "terminal_gone_without_sighup: kvchat still running 5 s after its terminal closed"
    kill $KPID
else
    pass "terminal_gone_without_sighup: kvchat left when its terminal closed"
fi
wait $KPID 2>/dev/null
J=$(export_json)
grep -q '"role": "assistant"' <<<"$J" && ! grep -q '"end": "streaming"' <<<"$J" &&
    ! grep -q '"role": "assistant", "content": ""' <<<"$J" &&
    pass "terminal_gone_without_sighup: the partial reply saved" ||
    fail "terminal_gone_without_sighup: reply not saved: $J"

# 10. A line that exactly fills the pane keeps its last character: at 100
# columns the conversation is 66 wide and a message line gets 63 columns
# (one in, two of indent). Then, scrolled up while a long reply streams, the
# view holds still until PgDn brings it back.
DB=$T/width.db
ROWS=14
# a reply limit of 16000 in a context of 16384: the long reply must still be
# streaming ~15 s later on a fast machine (2000 tokens take under 10 s)
run_kvchat -c 16384 --max-tokens 16000
wait_for '^>' 120 || fail "no prompt (width run)"
LINE="$(printf 'w%.0s' {1..58}) XYZQ"
tmux send-keys -t $S -l "$LINE"
tmux send-keys -t $S Enter
wait_for 'Assistant' 10 || fail "no reply (width run)"
tmux send-keys -t $S Escape
wait_for '^> *$' 30 || fail "prompt not back (width run)"
screen | grep -q "^   $LINE" && pass "exact_width_line_keeps_last_char: a 63-column line shown whole" ||
    fail "exact_width_line_keeps_last_char: the line that fills the pane lost its end"
for set in 'temp 1.5' 'top_k 0' 'top_p 1' 'min_p 0'; do
    tmux send-keys -t $S "/set $set" Enter
done
tmux send-keys -t $S 'Tell me a very long story about a lighthouse keeper, in many paragraphs.' Enter
wait_for 'generating' 20 || fail "long reply did not start (scroll run)"
# PgUp as soon as the reply is taller than the pane; the checks below take
# a few seconds whatever the machine's speed, well before this seed's reply
# ends by itself (about 2300 tokens in)
for _ in $(seq 100); do
    tmux send-keys -t $S PPage
    sleep 0.2
    screen | grep -q 'more lines (PgDn)' && break
done
wait_for 'more lines \(PgDn\)' 5 || fail "scrolled_view_holds_while_streaming: no more-lines hint after PgUp"
conv_rows() { screen | sed -n '2,10p' | cut -c1-60; }
A=$(conv_rows)
sleep 1
B=$(conv_rows)
[ -n "$A" ] && [ "$A" = "$B" ] && pass "scrolled_view_holds_while_streaming: the view held still" ||
    fail "scrolled_view_holds_while_streaming: the view moved while scrolled up"
N1=$(screen | grep -o '[0-9]* more lines' | cut -d' ' -f1)
sleep 2
N2=$(screen | grep -o '[0-9]* more lines' | cut -d' ' -f1)
[ -n "$N1" ] && [ -n "$N2" ] && [ "$N2" -gt "$N1" ] && pass "scrolled_view_holds_while_streaming: the count of lines below grows" ||
    fail "scrolled_view_holds_while_streaming: more-lines count $N1 -> $N2"
tmux send-keys -t $S End
for _ in 1 2 3 4 5 6 7 8 9 10; do tmux send-keys -t $S NPage; done
sleep 0.5
screen | grep -q 'more lines' && fail "scrolled_view_holds_while_streaming: PgDn did not return to the bottom" ||
    pass "scrolled_view_holds_while_streaming: PgDn back at the bottom follows the reply"
tmux send-keys -t $S Escape
# the first reply's [cancelled] may still be on screen when this one is
# short (a slow build), so the reply has ended only once the status line
# no longer says it is generating or stopping
for _ in $(seq 150); do
    screen | grep -Eq 'generating|stopping' || break
    sleep 0.1
done
screen | grep -q '\[cancelled\]' || fail "long reply not cancelled (scroll run)"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (width run)"
tmux kill-session -t $S

# 11. A terminal that cannot move the cursor (TERM=dumb, an Emacs shell):
# a one-line message that suggests -p, exit status 1, no broken screen.
tmux new-session -d -s $S -x 80 -y 24 \
    "env TERM=dumb XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' '$BIN' $MODEL_ARG --backend cpu --db '$T/dumb.db'; echo EXIT=\$?; sleep 600"
wait_for 'EXIT=' 20 || fail "dumb_terminal_refused: kvchat did not end under TERM=dumb"
screen | grep -q 'EXIT=1' && screen | grep -q 'cannot move the cursor' && screen | grep -q -- '-p TEXT' &&
    pass "dumb_terminal_refused: a clear message and exit status 1" || fail "dumb_terminal_refused: no clear refusal"
tmux kill-session -t $S

# 12. Small things: /editor starts from the input without "/editor" in the
# file, /set alone shows the values, /export expands ~, and a key brings the
# status line's hints back after a notice such as /stats'.
DB=$T/small.db
ROWS=30
printf '#!/bin/sh\ncp "$1" "%s/editor-saw"\nprintf "from the editor" > "$1"\n' "$T" >"$T/ed.sh"
chmod +x "$T/ed.sh"
tmux new-session -d -s $S -x 100 -y 30 \
    "env HOME='$T' VISUAL='$T/ed.sh' XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
     '$BIN' -m '$MODEL' --backend cpu --db '$DB' --seed 7 -n 4; echo EXIT=\$?; sleep 600"
wait_for '^>' 120 || fail "no prompt (small-things run)"
tmux send-keys -t $S '/editor' Enter
wait_for '^> from the editor' 10 && [ -f "$T/editor-saw" ] && [ ! -s "$T/editor-saw" ] &&
    pass "editor_file_without_command: /editor opened an empty file" ||
    fail "editor_file_without_command: the editor saw '$(cat "$T/editor-saw" 2>/dev/null)'"
tmux send-keys -t $S Enter
wait_for '^> *$' 60 || fail "prompt not back after the editor's message"
tmux send-keys -t $S '/set' Enter
wait_for 'temp [0-9.]+ top_k [0-9]+ .*max_tokens 4' 5 && pass "set_alone_shows_values" ||
    fail "set_alone_shows_values: /set alone did not show the values"
tmux send-keys -t $S '/export md ~/tilde.md' Enter
wait_for 'exported session' 5 && [ -s "$T/tilde.md" ] && pass "export_expands_tilde" ||
    fail "export_expands_tilde: ~/tilde.md not written"
tmux send-keys -t $S '/stats' Enter
wait_for 'Last turn' 5 || fail "/stats (small-things run)"
tmux send-keys -t $S -l 'x'
sleep 0.5
screen | grep -q 'Enter send' && pass "status_hints_back_after_key: hints back after a key" ||
    fail "status_hints_back_after_key: the notice stayed on the status line"
tmux send-keys -t $S C-u C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (small-things run)"

# 13. /model: the picker lists the models folder (here a private one: the
# default model linked in and a junk .gguf), Esc closes it, a file that does
# not load keeps the old engine, and /model by name (Tab-completed) reloads
# the same model with the conversation kept: the next reply continues the
# same session.
MD=$T/data/kvchat/models
mkdir -p "$MD"
ln -s "$MODEL" "$MD/SmolLM2-135M-Instruct.Q4_1.gguf"
printf 'not a model' >"$MD/junk.gguf"
DB=$T/models.db
tmux kill-session -t $S 2>/dev/null # the small-things run's, still sleeping
tmux new-session -d -s $S -x 120 -y $ROWS \
    "env XDG_DATA_HOME='$T/data' XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
     '$BIN' --backend cpu --db '$DB' --seed 7 -n 12; echo EXIT=\$?; sleep 600"
wait_for '^>' 120 || fail "no prompt (/model run)"
tmux send-keys -t $S 'Say hi.' Enter
wait_saved "user assistant " 60 || fail "/model run: first reply not saved: $(roles)"
wait_for '^> *$' 60 || fail "/model run: prompt not back"
tmux send-keys -t $S '/model' Enter
wait_for 'Choose a model' 10 && pass "/model opens the picker" || fail "/model: no picker"
screen | grep -q '● SmolLM2-135M-Instruct.Q4_1.gguf .*MiB  llama *Q4_1' && pass "/model: the model with its quantisation, in use" ||
    fail "/model: the default model not listed with its quantisation"
screen | grep -q 'junk.gguf.*error' && pass "/model: the junk file with its error" || fail "/model: junk file not listed"
tmux send-keys -t $S Escape
sleep 0.5
! screen | grep -q 'Choose a model' && pass "Esc closes the picker" || fail "Esc did not close the picker"
tmux send-keys -t $S '/model' Enter
wait_for 'Choose a model' 10 || fail "/model: no picker the second time"
tmux send-keys -t $S Down Enter
# The status line cuts the long error at a word; the notice in the
# conversation has all of it.
wait_for 'cannot switch to junk.gguf' 20 && screen | tr -d '\n' | grep -q '(still Smollm2' &&
    pass "a model that does not load keeps the old one" || fail "no one-line error for the junk model"
tmux send-keys -t $S '/model Smo' Tab
wait_for '^> /model SmolLM2-135M-Instruct.Q4_1.gguf' 5 && pass "Tab completes the model's name" ||
    fail "Tab did not complete the model's name"
tmux send-keys -t $S Enter
wait_for 'now chatting with' 60 && pass "/model NAME switches" || fail "/model NAME did not switch"
screen | grep -q 'Say hi' && pass "the conversation stays on screen" || fail "the conversation is gone after /model"
tmux send-keys -t $S 'And again.' Enter
wait_saved "user assistant user assistant " 60 && pass "the next reply continues the same session" ||
    fail "after /model the session holds $(roles)"
wait_for '^> *$' 60 || fail "prompt not back after the reply on the new engine"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (/model run)"
tmux kill-session -t $S

# 14. Small terminals, from 80x24 down to the minimum: the key hints cut at
# a word with an ellipsis, Tab's list of matches as many as fit plus "+N
# more", the too-small notice wrapped at words, and Enter while the screen
# is too small sends nothing unseen (the text waits in the input).
DB=$T/tiny.db
tmux new-session -d -s $S -x 80 -y 24 \
    "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
     '$BIN' $MODEL_ARG --backend cpu --db '$DB' --seed 7 -n 4; echo EXIT=\$?; sleep 600"
wait_for '^>' 120 || fail "no prompt (small-terminal run)"
HINTS=' Enter send · Alt-Enter newline · Esc stop · PgUp/PgDn scroll · Tab complete · Ctrl-D quit'
for size in 80x24 60x20 40x12; do
    tmux resize-window -t $S -x "${size%x*}" -y "${size#*x}"
    sleep 0.5
    L=$(screen | grep -m1 '^ Enter send' | sed 's/ *$//')
    case "$L" in
    *…) K=${L%…}
        [[ "$HINTS" == "$K "* ]] && [[ "$K" != *' ·' ]] &&
            pass "hints_cut_at_word: $size: \"$L\"" || fail "hints_cut_at_word: $size: cut mid-word: \"$L\"" ;;
    *) fail "hints_cut_at_word: $size: no ellipsis on the cut hints: \"$L\"" ;;
    esac
done
tmux resize-window -t $S -x 80 -y 24
sleep 0.3
tmux send-keys -t $S '/' Tab
wait_for 'matches:' 5 || fail "completion_list_more: no list of matches after / Tab"
L=$(screen | grep -m1 'matches:' | sed 's/ *$//')
[[ "$L" =~ [0-9]+\ matches:(\ /[a-z]+)+\ \+[0-9]+\ more$ ]] && [ "${#L}" -le 80 ] &&
    pass "completion_list_more: \"$L\"" || fail "completion_list_more: \"$L\""
tmux send-keys -t $S C-u
tmux resize-window -t $S -x 30 -y 10
wait_for 'terminal too small' 5 || fail "too_small_notice_wraps: no notice at 30x10"
screen | grep -qx 'terminal too small: 30x10, *' && screen | grep -qx 'kvchat needs at least 40x12 *' &&
    pass "too_small_notice_wraps: wrapped at words" || fail "too_small_notice_wraps: the notice is cut mid-word"
tmux send-keys -t $S -l 'typed unseen'
tmux send-keys -t $S Enter
sleep 1
tmux resize-window -t $S -x 80 -y 24
wait_for '^> typed unseen' 5 && ! screen | grep -q '^   typed unseen' &&
    pass "too_small_enter_waits: the text waits in the input, nothing sent" ||
    fail "too_small_enter_waits: Enter sent what the screen could not show"
tmux send-keys -t $S C-u C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (small-terminal run)"
# 15. Sessions: the sidebar, /delete's question, titles, ids never reused.
DB=$T/sessions.db
for q in 'alpha topic one' 'héllo 你好 wide title' 'gamma about lighthouses'; do
    eval "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
        '$BIN' $MODEL_ARG --backend cpu --db '$DB' --seed 7 -n 2 -p '$q'" >/dev/null 2>&1 ||
        fail "kvchat -p '$q' failed"
done
tmux kill-session -t $S 2>/dev/null
tmux new-session -d -s $S -x 100 -y $ROWS \
    "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
     '$BIN' $MODEL_ARG --backend cpu --db '$DB' --seed 7 -n 4; echo EXIT=\$?; sleep 600"
wait_for '^>' 120 || fail "no prompt (sessions run)"
screen | grep -Eq 'kvchat · [^·]+ Q4_1 · ctx [0-9]+ ·' && pass "title line: model, quantisation, context" ||
    fail "title line lacks the quantisation or the context"
screen | grep -q 'Smollm2 135M 8k' && fail "title line shows the mangled general.name" ||
    pass "title line_model_name_not_mangled"
tmux send-keys -t $S F2
wait_for '^  3 gamma about ligh…│' 5 && pass "sidebar: ids right-aligned, titles cut with an ellipsis" ||
    fail "sidebar rows"
# 你好 is four columns: the row ends at the same border as the others
screen | grep -q '^  2 héllo 你好 wide …│' && pass "sidebar: a wide-character title cut by display width" ||
    fail "sidebar: wide title"
tmux send-keys -t $S 'gam'
sleep 0.5
screen | grep -q 'filter: gam' && screen | grep -q '3 gamma' && ! screen | grep -q '1 alpha topic' &&
    pass "sidebar_typing_filters" || fail "typing did not filter the sidebar"
tmux send-keys -t $S Escape
sleep 0.5
screen | grep -q '1 alpha topic' && pass "Esc clears the filter" || fail "Esc did not clear the filter"
tmux send-keys -t $S End Enter
wait_for 'session 1: alpha topic one' 20 && pass "sidebar_enter_opens_session (title on the top line)" ||
    fail "Enter did not open session 1"
tmux send-keys -t $S '/rename Renamed here' Enter
wait_for 'session 1: Renamed here' 5 && pass "title line follows /rename" || fail "title line not updated after /rename"
# title_keeps_session_name: narrower, the device, backend and context go
# before the session's name is cut (a long CPU name filled 100 columns).
tmux resize-window -t $S -x 72
wait_for 'kvchat · [^·]+ Q4_1 · session 1: Renamed here' 5 && ! screen | grep -q 'ctx [0-9]' &&
    pass "title_keeps_session_name at 72 columns" || fail "title_keeps_session_name: the session's name cut at 72 columns"
tmux resize-window -t $S -x 100
wait_for 'Q4_1 · ctx [0-9]+ ·' 5 || fail "the context size not back in the title at 100 columns"
tmux send-keys -t $S '/delete 3' Enter
wait_for 'delete session 3 "gamma about lighthouses" \(2 messages\)\? y/N' 5 &&
    pass "delete_asks_confirmation naming title and messages" || fail "/delete did not ask"
tmux send-keys -t $S n
wait_for 'nothing deleted' 5 || fail "n did not cancel the delete"
[ "$("$BIN" --list-sessions --db "$DB" | grep -c 'gamma')" = 1 ] && pass "n keeps the session" ||
    fail "session 3 gone after n"
tmux send-keys -t $S '/delete 3' Enter
wait_for 'y/N' 5 || fail "/delete asked nothing the second time"
tmux send-keys -t $S y
wait_for 'deleted session 3' 5 && pass "y deletes" || fail "y did not delete"
tmux send-keys -t $S '/delete 1' Enter
wait_for 'the one on screen\? y/N' 5 || fail "/delete of the conversation on screen did not ask"
tmux send-keys -t $S y
wait_for 'new conversation' 5 && ! screen | grep -q 'alpha topic' && pass "deleting the session on screen starts a fresh one" ||
    fail "deleting the session on screen left it shown"
tmux send-keys -t $S 'delta new one' Enter
wait_for 'session 4: delta new one' 60 && pass "session_ids_never_reused (3 deleted, next is 4)" ||
    fail "the new session did not get id 4"
wait_for '^> *$' 60 || fail "prompt not back (sessions run)"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (sessions run)"
tmux kill-session -t $S 2>/dev/null
# 16. The help and /show overlays, timestamps (on from the config file),
# the input's token count, a message queued while a reply streams, and the
# warning for a context longer than the model was trained for (8192).
DB=$T/extras.db
mkdir -p "$T/config14/kvchat"
printf 'timestamps = on\n' >"$T/config14/kvchat/config"
tmux new-session -d -s $S -x 100 -y 30 \
    "env XDG_CONFIG_HOME='$T/config14' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
     '$BIN' $MODEL_ARG --backend cpu --db '$DB' --seed 7 -c 9000 -n 300; echo EXIT=\$?; sleep 600"
wait_for '^>' 120 || fail "no prompt (extras run)"
screen | grep -q 'past the trained 8192 tok' && pass "ctx_past_trained_warning: shown in the meters" ||
    fail "ctx_past_trained_warning: no warning on screen for -c 9000"
tmux send-keys -t $S F1
wait_for 'Help ·' 5 && screen | grep -q 'Commands' && pass "F1 opens the help" || fail "F1 did not open the help"
screen | grep -q 'more below' && pass "help: more below than fits" || fail "help: no 'more below' at 30 rows"
tmux send-keys -t $S NPage NPage
wait_for '//text' 5 && pass "help scrolls to the keys' end" || fail "help did not scroll with PgDn"
tmux send-keys -t $S q
sleep 0.5
! screen | grep -q 'Help ·' && pass "q closes the help" || fail "q did not close the help"
tmux send-keys -t $S -l '?'
wait_for 'Help ·' 5 && pass "? on an empty line opens the help" || fail "? did not open the help"
tmux send-keys -t $S F1
sleep 0.5
! screen | grep -q 'Help ·' && pass "F1 closes the help" || fail "F1 did not close the help"
tmux send-keys -t $S -l 'why?'
wait_for '^> why\?' 5 && pass "? inside a line is typed" || fail "? inside a line not typed"
# input_token_count: the live count and what it leaves of the context.
wait_for '[0-9]+ tok · [0-9]+ left' 5 && pass "input_token_count: shown while typing" ||
    fail "input_token_count: no token count for the input"
tmux send-keys -t $S C-c
sleep 0.3
! screen | grep -Eq 'tok · [0-9]+ left' && pass "input_token_count: gone with the input" ||
    fail "input_token_count: stayed after the input was cleared"
tmux send-keys -t $S '/show' Enter
wait_for 'Settings in use' 5 && screen | grep -q 'seed  *7' && screen | grep -q 'KV type  *f16' &&
    screen | grep -q 'size  *9000 tokens' && pass "/show lists the settings in use" || fail "/show: settings missing"
tmux send-keys -t $S Escape
sleep 0.5
# queued_while_streaming: a long reply, a message sent meanwhile waits.
for set in 'temp 1.5' 'top_k 0' 'top_p 1' 'min_p 0'; do
    tmux send-keys -t $S "/set $set" Enter
done
tmux send-keys -t $S 'Tell me a very long story about a lighthouse keeper.' Enter
wait_for 'Assistant' 10 || fail "extras: no reply"
screen | grep -Eq 'You · [0-9]{2}:[0-9]{2}' && pass "timestamps_from_config: the header has the time" ||
    fail "timestamps_from_config: no time on the header"
tmux send-keys -t $S 'First queued.' Enter
wait_for 'queued: First queued' 5 && pass "queued_while_streaming: shown above the input" ||
    fail "queued_while_streaming: not queued"
tmux send-keys -t $S Escape
wait_for '^(>|…) First queued\.' 5 && ! screen | grep -q 'queued: First' && pass "queued: Esc takes it back to edit" ||
    fail "queued: Esc did not unqueue"
tmux send-keys -t $S Enter
wait_for 'queued: First queued' 5 || fail "queued: Enter did not queue it again"
tmux send-keys -t $S 'Second queued.' Enter
wait_for 'queued: First queued.*…' 5 && pass "queued: a second Enter appends" || fail "queued: second message not appended"
tmux send-keys -t $S C-c
for ((i = 0; i < 100; i++)); do screen | grep -q 'queued:' || break; sleep 0.1; done
tmux send-keys -t $S C-c
wait_saved "user assistant user assistant " 120 && export_json | grep -q 'First queued.\\nSecond queued.' &&
    pass "queued_while_streaming: sent as one message when the reply ended" ||
    fail "queued_while_streaming: the history holds $(roles)"
wait_for '^> *$' 120 || fail "extras: prompt not back"
tmux send-keys -t $S F4
wait_for 'timestamps off' 5 && ! screen | grep -Eq 'You · [0-9]{2}:' && pass "F4 turns timestamps off" ||
    fail "F4 did not turn timestamps off"
tmux send-keys -t $S '/timestamps on' Enter
wait_for 'You · [0-9]{2}:[0-9]{2}' 5 && pass "/timestamps on" || fail "/timestamps on: no times"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (extras run)"
tmux kill-session -t $S

# 17. no_color_legend_glyphs_differ and eight_colour_border_visible: without
# colour the legend's swatches are the bar's own distinct glyphs; under
# TERM=xterm (8 colours) the screen still comes up.
tmux new-session -d -s $S -x 100 -y 30 \
    "env NO_COLOR=1 XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
     '$BIN' $MODEL_ARG --backend cpu --no-history; echo EXIT=\$?; sleep 600"
wait_for '^>' 120 || fail "no prompt (NO_COLOR run)"
screen | grep -q '█ weights' && screen | grep -q '▓ KV memory' && screen | grep -q '▒ scratch' &&
    screen | grep -q '░ free' && pass "no_color_legend_glyphs_differ" || fail "no_color_legend_glyphs_differ: legend glyphs alike"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (NO_COLOR run)"
tmux kill-session -t $S

# 18. prompt_progress_shown: a long message shows on the status line how much
# of it has been read in ("reading the prompt N/M tok · R tok/s · T left"),
# and prefill_rate_never_zero: the prefill meter reads n/a until the first
# chunk, never "0.00 tok/s". After /system the whole conversation is read
# again and the progress says why.
DB=$T/progress.db
tmux new-session -d -s $S -x 120 -y 30 \
    "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
     '$BIN' $MODEL_ARG --backend cpu --db '$DB' --seed 7 -n 4; echo EXIT=\$?; sleep 600"
wait_for '^>' 120 || fail "no prompt (progress run)"
python3 -c "print('apples and pears ' * 400, end='')" >"$T/long.txt"
tmux load-buffer -b long "$T/long.txt"
tmux paste-buffer -p -b long -t $S
sleep 0.5
tmux send-keys -t $S Enter
# watch_prefill PATTERN ROLES: samples the screen until the session holds
# ROLES with no reply streaming (the history says when a reply is done; the
# screen's empty prompt also flashes as Enter clears the line); PROGRESS
# gets the first progress line with tokens read, ZERO any prefill meter at 0.
watch_prefill() {
    local i s
    PROGRESS= ZERO=
    for ((i = 0; i < 1200; i++)); do
        s=$(screen)
        [ -z "$PROGRESS" ] && PROGRESS=$(grep -Eo "$1 [1-9][0-9]*/[0-9]+ tok · [0-9.]+ tok/s · [^·]+ left" <<<"$s" | head -1)
        grep -Eq 'prefill +0\.00? tok/s' <<<"$s" && ZERO=$(grep -E 'prefill +0' <<<"$s" | head -1)
        if ((i % 5 == 4)) && [ "$(roles)" = "$2" ] && ! export_json | grep -q '"end": "streaming"'; then
            wait_for '^> *$' 10
            return
        fi
        sleep 0.1
    done
    return 1
}
BEFORE=
watch_prefill 'reading the prompt' "user assistant " || fail "prompt_progress_shown: the long message's reply did not end"
[ -n "$PROGRESS" ] && pass "prompt_progress_shown: \"$PROGRESS\"" ||
    fail "prompt_progress_shown: no 'reading the prompt N/M tok · rate · time left' while it was read"
[ -z "$ZERO" ] && pass "prefill_rate_never_zero" || fail "prefill_rate_never_zero: \"$ZERO\""
tmux send-keys -t $S '/system Answer in one word.' Enter
sleep 0.3
tmux send-keys -t $S 'And now?' Enter
watch_prefill 're-reading the conversation \(system prompt changed\)' "user assistant user assistant " ||
    fail "reread_progress: the reply did not end"
[ -n "$PROGRESS" ] && pass "reread_progress_says_why: \"$PROGRESS\"" ||
    fail "reread_progress_says_why: no 're-reading the conversation (system prompt changed)' after /system"
[ -z "$ZERO" ] && pass "prefill_rate_never_zero (re-read)" || fail "prefill_rate_never_zero (re-read): \"$ZERO\""
tmux send-keys -t $S 'Once more.' Enter
watch_prefill 're-reading' "user assistant user assistant user assistant " ||
    fail "reread_progress: the third reply did not end"
[ -z "$PROGRESS" ] && pass "reread_said_once: the next turn reads only what is new" ||
    fail "reread_said_once: still re-reading after the conversation was read in: \"$PROGRESS\""
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (progress run)"
tmux kill-session -t $S

# 19. A tiny context (-c 256) on the real model. context_full_said_once: the
# notice reads "context full: ..." once, never "context full: context
# full: ..."; dropped_turns_boundary: one "earlier turns no longer in
# context" line where the dropped turns end; cut_names_the_limit: the marker
# and /stats say which limit cut a reply (the full context, then
# max_tokens). think_notice_once: --think on a template without a switch
# is one notice, and the chat runs on.
DB=$T/tiny-ctx.db
# Tall, so the boundary stays in sight above the second reply and /stats.
tmux new-session -d -s $S -x 100 -y 70 \
    "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' \
     '$BIN' $MODEL_ARG --backend cpu --db '$DB' --seed 7 -c 256 --think on; echo EXIT=\$?; sleep 600"
wait_for '^>' 120 || fail "no prompt (tiny context run)"
tmux send-keys -t $S -l 'x' # a key takes the notice off the status line
tmux send-keys -t $S C-u
sleep 0.5
[ "$(screen | grep -c -- '--think on is ignored: the chatml chat template')" = 1 ] && pass "think_notice_once" ||
    fail "think_notice_once: not one notice for --think on"
tmux send-keys -t $S 'Tell me a very long story about a lighthouse keeper, in many paragraphs.' Enter
wait_for 'Assistant' 10 || fail "tiny context: no reply"
wait_for '\[cut: the context is full\]' 120 && pass "cut_names_the_limit: the full context" ||
    fail "cut_names_the_limit: no '[cut: the context is full]' on a reply that filled 256 tokens"
wait_for '^> *$' 10 || fail "tiny context: the first reply did not end"
tmux send-keys -t $S '/stats' Enter
wait_for 'stop: length \(the context is full\)' 5 && pass "cut_names_the_limit: /stats says the context" ||
    fail "cut_names_the_limit: /stats does not say the context was full"
tmux send-keys -t $S 'Now a short one about a cat.' Enter
wait_for 'context full: dropped the [0-9]+ oldest turn' 30 || fail "context_full_said_once: no notice of dropped turns"
# the turns are marked dropped when the reply ends
wait_for 'earlier turns no longer in context' 120 || fail "tiny context: the second reply did not end"
wait_for '^> *$' 10 || fail "tiny context: no prompt after the second reply"
! screen | grep -q 'context full: context full' && [ "$(screen | grep -c '^ context full: dropped')" -ge 1 ] &&
    pass "context_full_said_once" || fail "context_full_said_once: the notice repeats its prefix"
[ "$(screen | grep -c 'earlier turns no longer in context')" = 1 ] &&
    screen | grep -A2 'earlier turns no longer in context' | grep -q '^ You' &&
    pass "dropped_turns_boundary: one line, the kept turn below it" ||
    fail "dropped_turns_boundary: not one boundary line above the turn the model sees"
tmux send-keys -t $S '/set max_tokens 4' Enter
tmux send-keys -t $S 'And a dog?' Enter
wait_for '\[cut: reply length limit \(max_tokens\)\]' 60 && pass "cut_names_the_limit: max_tokens" ||
    fail "cut_names_the_limit: no '[cut: reply length limit (max_tokens)]' with max_tokens 4"
wait_for '^> *$' 60 || fail "tiny context: the third reply did not end"
tmux send-keys -t $S '/stats' Enter
wait_for 'stop: length \(the reply limit, max_tokens\)' 5 && pass "cut_names_the_limit: /stats says max_tokens" ||
    fail "cut_names_the_limit: /stats does not name max_tokens"
tmux send-keys -t $S C-d
wait_for 'EXIT=0' 10 || fail "Ctrl-D did not leave (tiny context run)"
tmux kill-session -t $S

[ $FAILS -eq 0 ] && echo "e2e_tui: all passed" || echo "e2e_tui: $FAILS failed"
exit $((FAILS > 0))
