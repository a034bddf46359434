#!/usr/bin/env bash
# e2e_cli.sh - drives the real kvchat binary without a terminal: -p, -p -,
# tokenize, bench --json, history commands, usage errors and bad model files.
#
# usage: e2e_cli.sh PATH/TO/kvchat
# Runs with XDG folders and the database in a temporary folder, so it never
# touches the user's data; models come from the real models folder.
set -uo pipefail

kvchat=$1
real_data=${XDG_DATA_HOME:-$HOME/.local/share}
models=${KVCHAT_MODEL_DIR:-$real_data/kvchat/models}
smol=$models/SmolLM2-135M-Instruct.Q4_1.gguf
gemma=$models/gemma-3-270m-q4_k_m.gguf

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_CONFIG_HOME=$tmp/config XDG_DATA_HOME=$tmp/data
db=$tmp/history.db

pass=0 fail=0 skipped=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$1"; [ -n "${2:-}" ] && printf '     %s\n' "$2"; }
skip() { skipped=$((skipped + 1)); printf 'SKIPPED: %s\n' "$1"; }

# expect_exit CODE NAME CMD...: runs CMD, checks its exit status, keeps its
# stdout in $out and stderr in $errout.
expect_exit() {
  local want=$1 name=$2; shift 2
  out=$("$@" 2>"$tmp/stderr"); local rc=$?
  errout=$(cat "$tmp/stderr")
  if [ "$rc" -eq "$want" ]; then ok "$name"; else bad "$name" "exit $rc, wanted $want; stderr: $errout"; fi
}

one_line_error() {
  local name=$1
  if [ "$(printf '%s\n' "$errout" | grep -c .)" -eq 1 ] && [[ $errout == kvchat:* ]]; then
    ok "$name: one-line error"
  else
    bad "$name: one-line error" "$errout"
  fi
}

# --- usage ---------------------------------------------------------------
expect_exit 0 "--help" "$kvchat" --help
[[ $out == *"--ctx-size"* && $out == *"tokenize"* ]] && ok "--help lists options" || bad "--help lists options"
expect_exit 0 "--version" "$kvchat" --version
[[ $out == kvchat\ * ]] && ok "--version prints a version" || bad "--version prints a version" "$out"
expect_exit 2 "unknown option" "$kvchat" --frobnicate
one_line_error "unknown option"
expect_exit 2 "bad number" "$kvchat" -p hi --temp abc
one_line_error "bad number"
expect_exit 2 "out of range" "$kvchat" -p hi --top-p 7
expect_exit 2 "missing value" "$kvchat" -p
expect_exit 2 "bad backend" "$kvchat" -p hi --backend tpu
expect_exit 2 "bad template" "$kvchat" -p hi --chat-template jinja
expect_exit 2 "stray argument" "$kvchat" hello
expect_exit 2 "bad --think" "$kvchat" -p hi --think maybe
one_line_error "bad --think"
[[ $errout == *"--think: 'maybe' is not on or off"* ]] && ok "... names the option and the value" \
  || bad "... names the option and the value" "$errout"

# --- bad model files -----------------------------------------------------
expect_exit 1 "missing model" "$kvchat" -m "$tmp/nope.gguf" -p hi --no-history
one_line_error "missing model"
[[ $errout == *nope.gguf* ]] && ok "missing model: names the file" || bad "missing model: names the file" "$errout"
printf 'not a model' >"$tmp/junk.gguf"
expect_exit 1 "junk model" "$kvchat" -m "$tmp/junk.gguf" -p hi --no-history
one_line_error "junk model"
if [ -f "$smol" ]; then
  head -c 5000000 "$smol" >"$tmp/truncated.gguf"
  expect_exit 1 "truncated model" "$kvchat" -m "$tmp/truncated.gguf" -p hi --no-history
  one_line_error "truncated model"
fi

if [ ! -f "$smol" ]; then
  if [ "${CI:-}" = true ]; then
    bad "default model present in CI" "$smol"
  else
    skip "model $smol not found (run scripts/test to fetch it)"
  fi
  echo "$pass passed, $fail failed, $skipped skipped"
  [ "$fail" -eq 0 ]; exit
fi

# --- answering -----------------------------------------------------------
expect_exit 0 "-p answers" "$kvchat" -m "$smol" -p "What is the capital of France?" --temp 0 -n 24 --db "$db"
[[ $out == *Paris* ]] && ok "-p: the answer names Paris" || bad "-p: the answer names Paris" "$out"
[ -z "$errout" ] && ok "-p: nothing on stderr without --verbose" || bad "-p: stderr quiet" "$errout"

expect_exit 0 "-p - reads stdin" bash -c "printf 'What is the capital of France?' | '$kvchat' -m '$smol' -p - --temp 0 -n 24 --no-history"
[[ $out == *Paris* ]] && ok "-p -: the answer names Paris" || bad "-p -: the answer names Paris" "$out"

expect_exit 0 "--verbose" "$kvchat" -m "$smol" -p "Hi" --temp 0 -n 4 --no-history --verbose
[[ $errout == *"tok/s"* ]] && ok "--verbose prints statistics" || bad "--verbose prints statistics" "$errout"

expect_exit 1 "invalid UTF-8 prompt" "$kvchat" -m "$smol" -p $'\xff\xfe' --no-history
one_line_error "invalid UTF-8 prompt"
# one rule for every way text enters: an option, standard input, the config file
expect_exit 1 "invalid UTF-8 --system" "$kvchat" -m "$smol" --system $'be \xff' -p hi --no-history
[[ $errout == *"system prompt is not valid UTF-8 (byte 3)"* ]] && ok "... names the system prompt and the byte" \
  || bad "... names the system prompt and the byte" "$errout"
expect_exit 1 "invalid UTF-8 tokenize text" "$kvchat" tokenize -m "$smol" $'a\xffb'
one_line_error "invalid UTF-8 tokenize text"
expect_exit 1 "invalid UTF-8 tokenize stdin" bash -c "printf 'a\\xffb' | '$kvchat' tokenize -m '$smol' -"
[[ $errout == *"not valid UTF-8"* ]] && ok "... standard input too" || bad "... standard input too" "$errout"
expect_exit 1 "invalid UTF-8 --search" "$kvchat" --search $'\xc3' --db "$tmp/none.db"
one_line_error "invalid UTF-8 --search"
mkdir -p "$tmp/badcfg/kvchat"
printf 'system = caf\xe9\n' >"$tmp/badcfg/kvchat/config"
expect_exit 2 "invalid UTF-8 in the config file" env XDG_CONFIG_HOME="$tmp/badcfg" "$kvchat" -m "$smol" -p hi --no-history
[[ $errout == *config:1:*"not valid UTF-8"* ]] && ok "... names the file and line" || bad "... names the file and line" "$errout"

# think_switch_missing_notice: --think (or the config key think) on a
# template without a thinking switch (the test models have none) is a
# notice, said once on stderr, not an error: the reply still comes.
expect_exit 0 "--think on without a switch runs on" "$kvchat" -m "$smol" -p "Say hi." --temp 0 -n 4 --no-history --think on
[ "$(grep -c . <<<"$errout")" = 1 ] && [[ $errout == "kvchat: --think on is ignored: the chatml chat template has no thinking switch" ]] \
  && ok "think_switch_missing_notice: one line naming the template" || bad "think_switch_missing_notice: one line naming the template" "$errout"
[ -n "$out" ] && ok "think_switch_missing_notice: the reply on stdout" || bad "think_switch_missing_notice: the reply on stdout" "$out"
expect_exit 0 "-p without --think says nothing of it" "$kvchat" -m "$smol" -p "Say hi." --temp 0 -n 4 --no-history
[[ $errout != *think* ]] && ok "... no notice without --think" || bad "... no notice without --think" "$errout"
mkdir -p "$tmp/thinkcfg/kvchat"
printf 'think = off\n' >"$tmp/thinkcfg/kvchat/config"
expect_exit 0 "config think = off" env XDG_CONFIG_HOME="$tmp/thinkcfg" "$kvchat" -m "$smol" -p "Say hi." --temp 0 -n 4 --no-history
[[ $errout == *"--think off is ignored: the chatml chat template"* ]] && ok "... the config key says so too" \
  || bad "... the config key says so too" "$errout"
expect_exit 0 "--think overrides the config" env XDG_CONFIG_HOME="$tmp/thinkcfg" "$kvchat" -m "$smol" -p "Say hi." --temp 0 -n 4 --no-history --think on
[[ $errout == *"--think on is ignored"* ]] && ok "... the command line wins" || bad "... the command line wins" "$errout"
printf 'think = maybe\n' >"$tmp/thinkcfg/kvchat/config"
expect_exit 2 "config think = maybe" env XDG_CONFIG_HOME="$tmp/thinkcfg" "$kvchat" -m "$smol" -p hi --no-history
[[ $errout == *"config:1: think: 'maybe' is not on or off"* ]] && ok "... names the file, line and key" \
  || bad "... names the file, line and key" "$errout"

# same seed, same output
a=$("$kvchat" -m "$smol" -p "Tell me a word." --seed 7 --temp 1 -n 12 --no-history 2>/dev/null)
b=$("$kvchat" -m "$smol" -p "Tell me a word." --seed 7 --temp 1 -n 12 --no-history 2>/dev/null)
[ "$a" = "$b" ] && ok "same seed, same output" || bad "same seed, same output" "$a / $b"

# --- tokenize ------------------------------------------------------------
expect_exit 0 "tokenize" "$kvchat" tokenize -m "$smol" "Hello world"
[[ $out =~ ^[0-9]+(\ [0-9]+)*$ ]] && ok "tokenize prints ids" || bad "tokenize prints ids" "$out"
expect_exit 0 "tokenize special text stays plain" "$kvchat" tokenize -m "$smol" "<|im_end|>"
[[ $out != 2 ]] && [ "$(wc -w <<<"$out")" -gt 1 ] && ok "tokenize: <|im_end|> is not the control token" \
  || bad "tokenize: <|im_end|> is not the control token" "$out"
expect_exit 0 "tokenize --pieces" "$kvchat" tokenize -m "$smol" --pieces "Hello world"
[[ $out == *'"Hello"'* ]] && ok "tokenize --pieces shows pieces" || bad "tokenize --pieces shows pieces" "$out"
expect_exit 0 "tokenize stdin" bash -c "printf 'Hello world' | '$kvchat' tokenize -m '$smol' -"
if [ -f "$gemma" ]; then
  expect_exit 0 "tokenize gemma" "$kvchat" tokenize -m "$gemma" "Hello world"
  first=$(cut -d' ' -f1 <<<"$out")
  [ "$first" = 2 ] && ok "gemma adds BOS" || bad "gemma adds BOS" "$out"
  expect_exit 0 "tokenize gemma --no-bos" "$kvchat" tokenize -m "$gemma" --no-bos "Hello world"
  [ "$(cut -d' ' -f1 <<<"$out")" != 2 ] && ok "--no-bos drops BOS" || bad "--no-bos drops BOS" "$out"
fi

# --- bench ---------------------------------------------------------------
expect_exit 0 "bench --json" "$kvchat" bench -m "$smol" --backend cpu --depth 256 --json
if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["prefill_tok_s"]>0 and d["decode_tok_s"]>0 and d["bytes_per_token"]>0' "$out" 2>/dev/null; then
  ok "bench --json is valid JSON with figures"
else
  bad "bench --json is valid JSON with figures" "$out"
fi

# --- history -------------------------------------------------------------
expect_exit 0 "--list-sessions" "$kvchat" --list-sessions --db "$db"
[[ $out == *"capital of France"* ]] && ok "the -p turn was saved" || bad "the -p turn was saved" "$out"
id=$(awk 'NR==1{print $1}' <<<"$out")
expect_exit 0 "--resume -p" "$kvchat" -m "$smol" --resume -p "And of Italy?" --temp 0 -n 24 --db "$db"
[[ $out == *Rome* ]] && ok "--resume: the model sees the earlier turn" || bad "--resume: the model sees the earlier turn" "$out"
# the saved turns do not all fit: the user is told, at resume or when the
# new message is added
expect_exit 0 "--resume with a small context" "$kvchat" -m "$smol" --resume -p "And of Spain?" -c 80 -n 8 --db "$db"
[[ $errout == *"do not fit the context of 80 tokens"* || $errout == *"dropped the "*" oldest turn"* ]] \
  && ok "--resume says which turns do not fit" || bad "--resume says which turns do not fit" "$errout"
expect_exit 0 "--resume with a tiny context" "$kvchat" -m "$smol" --resume -p "Hi" -c 48 -n 4 --db "$db"
[[ $errout == *"do not fit the context of 48 tokens"* ]] && ok "--resume tells at once when turns do not fit" \
  || bad "--resume tells at once when turns do not fit" "$errout"
expect_exit 0 "--search" "$kvchat" --search "Italy" --db "$db"
[[ $out == *Italy* ]] && ok "--search finds the message" || bad "--search finds the message" "$out"
expect_exit 0 "--search with no hits" "$kvchat" --search "xylophone-never-said" --db "$db"
[[ -z $out && $errout == *"no matches for 'xylophone-never-said'"* ]] && ok "--search says when nothing matches" \
  || bad "--search says when nothing matches" "$out / $errout"
# --resume ID with a space, as well as --resume=ID
sid=$("$kvchat" --list-sessions --db "$db" | awk 'NR==1 {print $1}' | tr -dc 0-9)
before=$("$kvchat" --export "$sid" --format json --db "$db" | grep -c '"role"')
expect_exit 0 "--resume N (with a space)" "$kvchat" -m "$smol" --resume "$sid" -p "And of Germany?" --temp 0 -n 8 --db "$db"
after=$("$kvchat" --export "$sid" --format json --db "$db" | grep -c '"role"')
[ "$after" -eq $((before + 2)) ] && ok "--resume N continues session N" \
  || bad "--resume N continues session N" "messages $before -> $after"
expect_exit 1 "--resume of a missing session" "$kvchat" -m "$smol" --resume 999999 -p "hi" --db "$db"
[[ $errout == *"no session 999999"* ]] && ok "... names the missing session" || bad "... names the missing session" "$errout"
expect_exit 0 "--search hostile text" "$kvchat" --search '"NEAR( * AND -x' --db "$db"
expect_exit 0 "--export md" "$kvchat" --export "$id" --format md --db "$db"
[[ $out == *"capital of France"* && $out == *Italy* ]] && ok "--export md holds both turns" || bad "--export md holds both turns" "$out"
expect_exit 0 "--export json -o" "$kvchat" --export "$id" --format json -o "$tmp/s.json" --db "$db"
python3 -m json.tool "$tmp/s.json" >/dev/null 2>&1 && ok "--export json is valid JSON" || bad "--export json is valid JSON"
expect_exit 1 "--export unknown id" "$kvchat" --export 99999 --db "$db"
one_line_error "--export unknown id"
expect_exit 0 "--delete" "$kvchat" --delete "$id" --db "$db"
expect_exit 0 "--list-sessions after delete" "$kvchat" --list-sessions --db "$db"
[ -z "$out" ] && ok "the session is gone" || bad "the session is gone" "$out"
printf 'garbage garbage garbage' >"$tmp/corrupt.db"
expect_exit 1 "corrupt database" "$kvchat" --list-sessions --db "$tmp/corrupt.db"
one_line_error "corrupt database"
expect_exit 0 "-p with a corrupt database still answers" "$kvchat" -m "$smol" -p "Hi" -n 4 --db "$tmp/corrupt.db"
[[ $errout == *"not saving"* ]] && ok "... and warns it is not saving" || bad "... and warns it is not saving" "$errout"

# --- synthetic models: bench --synthetic, kvchat synth ---------------------
expect_exit 0 "bench --synthetic --json" "$kvchat" bench --synthetic smollm2-135m:q8_0 --backend cpu --depth 1024 --json
if python3 - "$out" <<'PY' 2>"$tmp/py.err"
import json, sys
d = json.loads(sys.argv[1])
pos = ["bandwidth_gb_s", "bandwidth_min_gb_s", "bandwidth_max_gb_s", "bandwidth_passes", "prefill_tok_s", "ttft_s", "decode_tok_s", "bytes_per_token", "decode_gb_s",
       "roofline_tok_s", "roofline_pct", "prefill_depth_tok_s", "decode_depth_tok_s",
       "bytes_per_token_depth", "decode_depth_gb_s", "roofline_depth_tok_s", "roofline_depth_pct",
       "n_params", "weight_bytes", "threads", "n_ctx"]
for k in pos:
    assert isinstance(d[k], (int, float)) and d[k] > 0, k
assert d["synthetic"] is True and d["bandwidth_kind"] == "read"
assert d["bandwidth_min_gb_s"] <= d["bandwidth_gb_s"] <= d["bandwidth_max_gb_s"]
assert d["model"] == "synthetic smollm2-135m:q8_0" and d["arch"] == "llama" and d["backend"] == "cpu"
assert d["prompt_tokens"] == 512 and d["decode_tokens"] == 128 and d["depth"] == 1024
assert d["n_params"] == 134515008 and d["n_ctx"] >= 1024 + 128
assert d["bytes_per_token_depth"] > d["bytes_per_token"] >= d["weight_bytes"]
PY
then
  ok "bench --synthetic --json has every field"
else
  bad "bench --synthetic --json has every field" "$out $(cat "$tmp/py.err")"
fi
expect_exit 1 "bench --synthetic unknown shape" "$kvchat" bench --synthetic llama-70b:q4_k --backend cpu
one_line_error "bench --synthetic unknown shape"
[[ $errout == *llama-8b*smollm2-135m* ]] && ok "... lists the shapes" || bad "... lists the shapes" "$errout"
expect_exit 1 "bench --synthetic unknown type" "$kvchat" bench --synthetic llama-1b:iq2_xs --backend cpu
[[ $errout == *q4_k*q6_k* ]] && ok "... lists the types" || bad "... lists the types" "$errout"
expect_exit 2 "--synthetic outside bench" "$kvchat" --synthetic smollm2-135m:q8_0 -p "Hi"
one_line_error "--synthetic outside bench"
expect_exit 2 "synth without -o" "$kvchat" synth smollm2-135m:q4_1
syn=$tmp/synthetic-smollm2.gguf
expect_exit 0 "synth writes a GGUF with SmolLM2's tokenizer" \
  "$kvchat" synth smollm2-135m:q4_1 -o "$syn" --tokenizer-from "$smol"
expect_exit 0 "tokenize with the copied tokenizer" "$kvchat" tokenize -m "$syn" "Hello world"
syn_ids=$out
expect_exit 0 "tokenize with the original" "$kvchat" tokenize -m "$smol" "Hello world"
[ "$syn_ids" = "$out" ] && ok "the copied tokenizer gives the same ids" || bad "the copied tokenizer gives the same ids" "$syn_ids vs $out"
expect_exit 0 "-p on the synthetic file (gibberish, but it runs)" "$kvchat" -m "$syn" -p "Hello" -n 8 --temp 0 --no-history
expect_exit 0 "bench on the synthetic file" "$kvchat" bench -m "$syn" --backend cpu --depth 0 --json
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["synthetic"] is False and d["n_params"]==134515008 and d["decode_depth_tok_s"] is None' "$out" 2>/dev/null \
  && ok "bench on the written file: same model, --depth 0 skips the long run" || bad "bench on the written file" "$out"
novocab=$tmp/synthetic-novocab.gguf
expect_exit 0 "synth without a tokenizer" "$kvchat" synth smollm2-135m:q8_0 -o "$novocab"
expect_exit 0 "bench on a file without a vocabulary" "$kvchat" bench -m "$novocab" --backend cpu --depth 0 --json
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["decode_tok_s"] > 0 and d["n_params"]==134515008' "$out" 2>/dev/null \
  && ok "... decodes" || bad "... decodes" "$out"
expect_exit 1 "-p on a file without a vocabulary" "$kvchat" -m "$novocab" -p "Hello" --no-history
one_line_error "-p on a file without a vocabulary"
[[ $errout == *"--tokenizer-from"* ]] && ok "... says how to give it one" || bad "... says how to give it one" "$errout"
expect_exit 1 "tokenize on a file without a vocabulary" "$kvchat" tokenize -m "$novocab" "Hello"
one_line_error "tokenize on a file without a vocabulary"
[[ $errout == *"no tokenizer"* ]] && ok "... says it has no tokenizer" || bad "... says it has no tokenizer" "$errout"
expect_exit 1 "synth with a tokenizer of another size" \
  "$kvchat" synth llama-1b:q8_0 -o "$tmp/wrong.gguf" --tokenizer-from "$smol"
one_line_error "synth with a tokenizer of another size"
[[ $errout == *49152*smollm2-135m* ]] && ok "... names the shape that fits" || bad "... names the shape that fits" "$errout"
[ ! -e "$tmp/wrong.gguf" ] && ok "... and writes nothing" || bad "... and writes nothing"

# --- a damaged model file ------------------------------------------------
# The last 4 KiB overwritten with noise (a fixed seed, so a run repeats):
# the load or the first token must say the file is damaged, not exit 0
# with an empty reply (the model is there: the script stopped above if not).
damaged=$tmp/damaged.gguf
cp "$smol" "$damaged"
size=$(stat -c %s "$damaged")
python3 -c 'import random,sys; r=random.Random(4096); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(4096)))' |
  dd of="$damaged" bs=1 seek=$((size - 4096)) conv=notrunc status=none
expect_exit 1 "-p on a model with a damaged tail" "$kvchat" -m "$damaged" -p hi --no-history
one_line_error "-p on a model with a damaged tail"
[[ $errout == *damaged* ]] && ok "... says the file is damaged" || bad "... says the file is damaged" "$errout"
rm -f "$damaged"

# --- subcommand help, perplexity, raw completion, token ids, KV type -----
expect_exit 0 "bench --help" "$kvchat" bench --help
[[ $out == usage:\ kvchat\ bench* && $out == *"--depth"* && $out != *"--resume"* ]] \
  && ok "bench --help is the bench usage" || bad "bench --help is the bench usage" "$out"
for sub in tokenize synth perplexity; do
  expect_exit 0 "$sub --help" "$kvchat" $sub --help
  [[ $out == usage:\ kvchat\ $sub* ]] && ok "$sub --help is its own usage" || bad "$sub --help is its own usage" "$out"
done
expect_exit 2 "perplexity without -f" "$kvchat" perplexity -m "$smol"
one_line_error "perplexity without -f"
expect_exit 2 "-f outside perplexity" "$kvchat" -p hi -f x

gpl=/usr/share/common-licenses/GPL-3
if [ -f "$gpl" ]; then
  head -c 2000 "$gpl" >"$tmp/gpl.txt"
  expect_exit 0 "perplexity on GPL-3 (2000 bytes, -c 128)" \
    "$kvchat" perplexity -m "$smol" -f "$tmp/gpl.txt" -c 128 -t 2
  if [[ $out =~ ^Final\ estimate:\ PPL\ =\ ([0-9]+\.[0-9]{4})\ \+/-\ ([0-9]+\.[0-9]{5})$ ]] &&
     python3 -c 'import math,sys; p,e=float(sys.argv[1]),float(sys.argv[2]); assert math.isfinite(p) and 1<p<1000 and 0<e<p' \
       "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"; then
    ok "... prints the final estimate as llama-perplexity does"
  else
    bad "... prints the final estimate as llama-perplexity does" "$out"
  fi
  [[ $errout =~ \[1\][0-9]+\.[0-9]{4},\[2\] ]] && ok "... with running values per chunk on stderr" \
    || bad "... with running values per chunk on stderr" "$errout"
  expect_exit 0 "perplexity --json" "$kvchat" perplexity -m "$smol" -f "$tmp/gpl.txt" -c 128 -t 2 --json
  python3 -c 'import json,math,sys; d=json.loads(sys.argv[1]); assert d["n_ctx"]==128 and d["chunks"]>=2 and d["scored"]==d["chunks"]*63 and math.isfinite(d["ppl"])' "$out" 2>/dev/null \
    && ok "... --json: chunks of 128, 63 tokens scored in each" || bad "... --json" "$out"
  head -c 100 "$gpl" >"$tmp/short.txt"
  expect_exit 1 "perplexity on a text shorter than a chunk" "$kvchat" perplexity -m "$smol" -f "$tmp/short.txt" -c 128
  [[ $errout == *"fewer than one chunk"* ]] && ok "... says so" || bad "... says so" "$errout"
else
  skip "perplexity: $gpl is missing"
fi

expect_exit 0 "--show-ids" "$kvchat" -m "$smol" -p "Say hello." -n 4 --temp 0 --no-history --show-ids
[[ $errout =~ kvchat:\ ids:((\ [0-9]+){1,4})$ ]] && ok "... the reply's ids on stderr" || bad "... the reply's ids on stderr" "$errout"
expect_exit 2 "--show-ids without -p" "$kvchat" tokenize --show-ids hi
expect_exit 2 "bad --kv-type" "$kvchat" -p hi --kv-type f8
expect_exit 0 "--kv-type f32" "$kvchat" -m "$smol" -p "Say hello." -n 4 --temp 0 --no-history --kv-type f32 -v
[[ $errout == *"KV cache"*"(f32)"* ]] && ok "... -v names the KV type" || bad "... -v names the KV type" "$errout"
expect_exit 0 "--kv-type q8_0 on the CPU" "$kvchat" -m "$smol" -p "Say hello." -n 4 --temp 0 --no-history --kv-type q8_0 --backend cpu -v
[[ $errout == *"KV cache"*"(q8_0)"* ]] && ok "... -v names the KV type" || bad "... -v names the KV type" "$errout"
[[ -n $out ]] && ok "... and answers" || bad "... and answers" "$out"

if [ -f "$gemma" ]; then
  expect_exit 0 "--raw on the Gemma base model" \
    "$kvchat" -m "$gemma" -p "Monday, Tuesday, Wednesday, Thursday," --raw --temp 0 -n 2 --no-history
  [[ $out == " Friday"* ]] && ok "... continues with Friday" || bad "... continues with Friday" "$out"
  [[ $errout != *"no chat template"* ]] && ok "... without the template note" || bad "... without the template note" "$errout"
  expect_exit 0 "-p on the Gemma base model without --raw" "$kvchat" -m "$gemma" -p hi -n 2 --temp 0 --no-history
  [[ $errout == *"no chat template"*--raw* ]] && ok "... says it has no template and suggests --raw" \
    || bad "... says it has no template and suggests --raw" "$errout"
else
  skip "--raw: $gemma is missing"
fi

# --- --list-models ---------------------------------------------------------
# The models folder ($XDG_DATA_HOME/kvchat/models, here in $tmp): the default
# model linked in, a .gguf file that is not one (listed with its error), and
# a file of another kind (ignored); a missing folder is exit status 1.
mdir=$XDG_DATA_HOME/kvchat/models
rm -rf "$mdir"
expect_exit 1 "--list-models without a models folder" "$kvchat" --list-models
one_line_error "--list-models without a models folder"
[[ $errout == *"$mdir"* ]] && ok "... names the folder" || bad "... names the folder" "$errout"
mkdir -p "$mdir"
ln -s "$smol" "$mdir/SmolLM2-135M-Instruct.Q4_1.gguf"
printf 'not a model at all' >"$mdir/junk.gguf"
printf 'notes' >"$mdir/README.txt"
expect_exit 0 "--list-models" "$kvchat" --list-models
[ "$(printf '%s\n' "$out" | wc -l)" -eq 3 ] && ok "... a header and two rows" || bad "... a header and two rows" "$out"
row=$(printf '%s\n' "$out" | grep '^SmolLM2-135M-Instruct.Q4_1.gguf ')
[[ $row == *MiB*llama*Q4_1*8192*135M* ]] && ok "... the model: size, architecture, quantisation, context, parameters" \
  || bad "... the model: size, architecture, quantisation, context, parameters" "$out"
[[ $(printf '%s\n' "$out" | grep '^junk.gguf ') == *error:* ]] && ok "... the junk file with its error" \
  || bad "... the junk file with its error" "$out"
[[ $out != *README* ]] && ok "... other files ignored" || bad "... other files ignored" "$out"
expect_exit 2 "--list-models with --list-sessions" "$kvchat" --list-models --list-sessions

# --- a damaged history database, and --repair -------------------------------
# An index whose schema text was altered in place passes PRAGMA quick_check;
# kvchat must still refuse it, say what is wrong and how to mend it, and
# --repair must keep every row and the damaged file.
rdb=$tmp/damaged/history.db
mkdir -p "$tmp/damaged"
expect_exit 0 "damaged database: a first session" "$kvchat" -m "$smol" -p hi -n 2 --temp 0 --db "$rdb"
python3 - "$rdb" <<'PY'
import sqlite3, sys
d = sqlite3.connect(sys.argv[1])
d.execute("PRAGMA writable_schema = ON")
d.execute("UPDATE sqlite_schema SET sql = replace(sql, '(session_id, id)', '(session_id DESC, id)') "
          "WHERE name = 'messages_by_session'")
d.commit()
d.close()
PY
expect_exit 1 "damaged database: --list-sessions refuses it" "$kvchat" --list-sessions --db "$rdb"
one_line_error "damaged database: --list-sessions"
[[ $errout == *"damaged (index messages_by_session"*"kvchat --repair"* ]] \
  && ok "... names the index and --repair" || bad "... names the index and --repair" "$errout"
expect_exit 0 "damaged database: -p still answers" "$kvchat" -m "$smol" -p hi -n 2 --temp 0 --db "$rdb"
[[ $errout == *"not saving"*"damaged"*"--repair"* ]] && ok "... says why it is not saving" \
  || bad "... says why it is not saving" "$errout"
[[ $errout != *"no reply"* ]] && ok "... no failed write mid-reply" || bad "... no failed write mid-reply" "$errout"
n_stream=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from messages not indexed where end_reason=\"streaming\"").fetchone()[0])' "$rdb")
[ "$n_stream" = 0 ] && ok "... leaves no streaming row" || bad "... leaves no streaming row" "$n_stream"
expect_exit 0 "--repair" "$kvchat" --repair --db "$rdb"
[[ $errout == *"kept 1 session and 2 messages"*"lost nothing"*".damaged-"* ]] \
  && ok "... says what was kept, lost and where the damaged file is" \
  || bad "... says what was kept, lost and where the damaged file is" "$errout"
ls "$rdb".damaged-* >/dev/null 2>&1 && ok "... keeps the damaged file" || bad "... keeps the damaged file"
expect_exit 0 "--list-sessions after --repair" "$kvchat" --list-sessions --db "$rdb"
[ "$(printf '%s\n' "$out" | grep -c msgs)" -eq 1 ] && ok "... lists the session" || bad "... lists the session" "$out"
expect_exit 0 "--repair on a sound database" "$kvchat" --repair --db "$rdb"
[[ $errout == *"nothing to repair"* ]] && ok "... says so" || bad "... says so" "$errout"
expect_exit 1 "--repair without a database" "$kvchat" --repair --db "$tmp/damaged/none.db"
[ ! -e "$tmp/damaged/none.db" ] && ok "... creates nothing" || bad "... creates nothing"

# A 0-byte file is a valid empty database: a listing shows nothing and
# leaves it 0 bytes.
: >"$tmp/empty.db"
expect_exit 0 "--list-sessions on a 0-byte file" "$kvchat" --list-sessions --db "$tmp/empty.db"
[ -z "$out" ] && ok "... lists nothing" || bad "... lists nothing" "$out"
[ ! -s "$tmp/empty.db" ] && ok "... creates no tables" || bad "... creates no tables"
expect_exit 0 "--search on a 0-byte file" "$kvchat" --search hello --db "$tmp/empty.db"
expect_exit 1 "--export on a 0-byte file" "$kvchat" --export 1 --db "$tmp/empty.db"
[[ $errout == *"no such session"* ]] && ok "... no such session" || bad "... no such session" "$errout"
[ ! -s "$tmp/empty.db" ] && ok "... still 0 bytes" || bad "... still 0 bytes"

# A lock held for a moment mid-reply only delays a progress save (retried;
# the final save waits out the lock): -p must not say "not saving", and the
# reply must be saved.
lockout=$(python3 - "$kvchat" "$smol" "$tmp/locked/history.db" 2>&1 <<'PY'
import sqlite3, subprocess, sys, time
kvchat, model, db = sys.argv[1:4]
p = subprocess.Popen([kvchat, "-m", model, "-p", "Write a long story about a lighthouse keeper.",
                      "-n", "300", "--temp", "0", "--db", db],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
held = False
t0 = time.time()
while p.poll() is None and time.time() - t0 < 60:
    try:
        d = sqlite3.connect(db, timeout=0.05, isolation_level=None)
        n = d.execute("select count(*) from messages where end_reason='streaming'").fetchone()[0]
        if n and not held:
            d.execute("BEGIN IMMEDIATE")
            time.sleep(2.2)  # under the final save's 3 s busy timeout
            d.execute("ROLLBACK")
            held = True
        d.close()
    except sqlite3.Error:
        pass
    time.sleep(0.02)
err = p.communicate()[1]
d = sqlite3.connect(db)
left = d.execute("select count(*) from messages where end_reason='streaming'").fetchone()[0]
saved = d.execute("select count(*) from messages where role='assistant' and end_reason is not null").fetchone()[0]
print("held=%d rc=%d streaming=%d saved=%d" % (held, p.returncode, left, saved))
print(err.strip())
PY
)
[[ $lockout == "held=1 rc=0 streaming=0 saved=1"* ]] && ok "lock mid-reply: the reply is saved" \
  || bad "lock mid-reply: the reply is saved" "$lockout"
[[ $lockout != *"not saving"* ]] && ok "... without 'not saving'" || bad "... without 'not saving'" "$lockout"

echo "$pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
