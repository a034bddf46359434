#!/usr/bin/env bash
# e2e_inspect.sh KVCHAT TRACE - the memory and speed inspector in the real
# chat screen (tmux, the default model on the CPU): F3 opens it beside the
# chat, it keeps redrawing while a reply streams, Esc and /inspect close and
# open it; then again with a recorded H200 trace as the GPU (KVCHAT_GPU_TRACE)
# and --monitor-log, whose JSON lines are read back. Last, -p mode writes a
# CSV log. Everything lives in a temp dir. Exit 77 without tmux or the model.
set -u
BIN=${1:?usage: e2e_inspect.sh path/to/kvchat trace.jsonl}
TRACE=${2:?usage: e2e_inspect.sh path/to/kvchat trace.jsonl}
command -v tmux >/dev/null || { echo "SKIPPED: tmux not installed"; exit 77; }
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
MODEL=${KVCHAT_MODEL_DIR:-$DATA/kvchat/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -r "$MODEL" ] || { echo "SKIPPED: model $MODEL not found"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/kvchat-e2e-insp.XXXXXX")
S=kvchat-insp-$$
export TMUX_TMPDIR=$T
cleanup() { tmux kill-server 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
tmux new-session -d -s keep "sleep 3600" || { echo "FAIL: cannot start tmux"; exit 1; }
FAILS=0
fail() { echo "FAIL: $*"; echo "---- screen ----"; tmux capture-pane -p -t $S 2>/dev/null; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
screen() { tmux capture-pane -p -t $S; }
wait_for() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        screen | grep -Eq -- "$1" && return 0
        sleep 0.1
    done
    return 1
}
run_kvchat() { # ENV ARGS...
    local envs=$1
    shift
    tmux new-session -d -s $S -x 140 -y 40 \
        "env XDG_CONFIG_HOME='$T/config' XDG_STATE_HOME='$T/state' XDG_CACHE_HOME='$T/cache' $envs \
         '$BIN' -m '$MODEL' --backend cpu --no-history --seed 7 --max-tokens 400 $*; echo EXIT=\$?; sleep 600"
}

# ---- CPU backend: the process's resident memory ----
run_kvchat ""
wait_for '^>' 120 && pass "started" || fail "no prompt"
tmux send-keys -t $S F3
wait_for 'Inspector' 5 && pass "F3 opens the inspector" || fail "F3 did not open it"
screen | grep -q 'process resident (kernel)' && pass "CPU breakdown from the kernel" || fail "no resident breakdown"
screen | grep -q 'weights (file-backed)' && pass "file-backed weights shown" || fail "no file-backed row"
screen | grep -Eq 'KV f16: .* reserved \(0/[0-9]+ tok\)' && pass "KV reserved against used" || fail "no KV row"
screen | grep -Eq 'f32 KV: --ctx-size up to [0-9]+' && pass "headroom per KV type" || fail "no headroom"
screen | grep -Eq 'KV layers +( {30}|[▁▂▃▄▅▆▇█]{30}) *│' && pass "one cell per layer's KV cache (30 layers)" ||
    fail "no per-layer KV row"
screen | grep -q 'GPU util .*n/a' && pass "no GPU: util n/a" || fail "GPU util not n/a on the CPU"
# a line longer than the pane ends whole or with an ellipsis, never mid-figure
screen | grep -Eq 'weights by type: .*([KMG]iB|…) *│' && screen | grep -Eq 'by layers: .*([KMG]iB|…) *│' &&
    pass "long lines end whole or with an ellipsis" || fail "a long line is cut without an ellipsis"
tmux send-keys -t $S "Write a long story about a lighthouse keeper." Enter
# a live figure, or (a short reply may end between two looks) a column
# drawn from a reading taken while it streamed
wait_for 'decode .*([0-9.]+/[0-9]+ tok/s|[▁▂▃▄▅▆▇█])' 60 && pass "decode graph has a reading while streaming" ||
    fail "no decode reading"
screen | grep -Eq 'KV layers +[▁▂▃▄▅▆▇█]{30} *│' && pass "the layers fill as the reply streams" ||
    fail "the per-layer KV row stayed empty while a reply streamed"
A=$(screen | grep 'mem used' | head -1)
sleep 2.5
B=$(screen | grep 'mem used' | head -1)
[ "$A" != "$B" ] && pass "graphs advance while the reply streams" || fail "the graph did not move in 2.5 s"
screen | grep -Eq 'kvchat +[▁▂▃▄▅▆▇█ ]*[0-9.]+/[0-9.]+ GiB' && pass "this process's memory has its own graph" ||
    fail "no graph of this process's memory"
screen | grep -Eq '^ +[[:alpha:]][^│]*│ ' && pass "the chat stays beside it" || fail "the chat is hidden"
tmux send-keys -t $S Escape
sleep 1
screen | grep -q 'Inspector' && fail "Esc did not close it" || pass "Esc closes the inspector"
tmux send-keys -t $S C-c
sleep 1
tmux send-keys -t $S "/inspect" Enter
wait_for 'Inspector' 5 && pass "/inspect opens it" || fail "/inspect did not open it"
tmux send-keys -t $S F3
sleep 0.5
screen | grep -q 'Inspector' && fail "F3 did not close it" || pass "F3 closes it"
tmux send-keys -t $S "/quit" Enter
wait_for 'EXIT=0' 10 && pass "quit" || fail "no clean exit"
tmux kill-session -t $S

# ---- a recorded H200 as the GPU, with --monitor-log ----
LOG=$T/mon.jsonl
run_kvchat "KVCHAT_GPU_TRACE='$TRACE'" --monitor-log "'$LOG'"
wait_for '^>' 120 && pass "started with a trace" || fail "no prompt with a trace"
tmux send-keys -t $S F3
wait_for 'GPU memory in use \(driver\): 22.1 GiB of 140.4 GiB' 5 && pass "the trace's H200 memory" \
    || fail "no GPU breakdown from the trace"
wait_for 'power .*[0-9.]+/100 W' 5 && pass "power graph from the trace" || fail "no power reading"
screen | grep -q 'this process' && pass "this process from the driver's list" || fail "no process row"
sleep 3
tmux send-keys -t $S "/quit" Enter
wait_for 'EXIT=0' 10 && pass "quit" || fail "no clean exit"
N=$(grep -c '^{"time":' "$LOG")
[ "$N" -ge 3 ] && pass "monitor log: $N lines" || fail "monitor log has $N lines"
grep -q '"mem_total":150754820096' "$LOG" && pass "log carries the trace's readings" || fail "no trace readings in the log"
python3 - "$LOG" <<'PY' && pass "log lines parse as JSON, one a second" || fail "log does not parse"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ts = [r["time"] for r in rows]
assert all(0.5 < b - a < 2.5 for a, b in zip(ts, ts[1:])), ts
assert all(r["weights"] > 0 and r["n_ctx"] > 0 for r in rows)
PY
tmux kill-session -t $S

# ---- -p mode: a CSV log ----
CSV=$T/mon.csv
env XDG_CONFIG_HOME="$T/config" XDG_STATE_HOME="$T/state" XDG_CACHE_HOME="$T/cache" \
    "$BIN" -m "$MODEL" --backend cpu --no-history --seed 7 --max-tokens 120 --monitor-log "$CSV" \
    -p "Count from one to fifty in words." >/dev/null 2>&1 && pass "-p with --monitor-log" || fail "-p failed"
python3 - "$CSV" <<'PY' && pass "-p CSV log parses with a decode reading" || fail "-p CSV log wrong"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert rows and rows[0]["time"], rows
assert any(r["decode_tok_s"] for r in rows), rows
assert all(r["gpu_util"] == "" for r in rows)  # no GPU: empty, never 0
PY
"$BIN" --monitor-log "$T/x.txt" -m "$MODEL" --no-history -p hi 2>&1 | grep -q '.csv or .jsonl' \
    && pass "a bad log name says what to do" || fail "no message for a bad log name"

[ $FAILS -eq 0 ] && echo "all passed" || { echo "$FAILS failed"; exit 1; }
