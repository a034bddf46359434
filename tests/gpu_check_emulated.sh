#!/usr/bin/env bash
# gpu_check_emulated - scripts/gpu-check without a device: the run ends
# with exit 0 and ONE report (beside the logs) that lists every step with a status (the device
# steps "skipped: no CUDA device", the emulator's tests "pass"); a budget
# too small for a step skips it instead of running over; and the model's
# parts (--pack) reassemble byte for byte across two unpacks, while a
# damaged part is refused; a CUDA build packed with --pack-build is used by
# --from-pack, and refused when damaged; --steps runs only what it names.
#   gpu_check_emulated.sh GPU_CHECK BUILD_DIR
set -uo pipefail
check=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

steps=(environment model_pack build test_cuda test_kernels test_cuda_emu test_kernels_emu
       model_greedy bench_smollm2-135m_q4_1 bench_llama-1b_q4_k bench_llama-1b_q8_0 bench_llama-8b_q4_k
       profile_llama-8b_q4_k bench_llama-8b_q8_0 bench_llama-8b_f16 memcheck synccheck racecheck bench_qwen3-30b-a3b_q4_k)
status_of() { # REPORT STEP: the status cell of STEP's row
  awk -F' \\| ' -v s="| $2" '$1 == s { print $2 }' "$1"
}

# 1. the emulated run
export GPU_CHECK_WORK=$tmp/work
OUT=$tmp/out "$check" --emulate --quick --no-build --build-dir "$build" >"$tmp/log" 2>&1
rc=$?
((rc == 0)) && ok "exit 0" || { bad "exit $rc"; cat "$tmp/log"; }
report=$tmp/out/gpu-check.md
n=$(find "$tmp/out" -type f | wc -l)
((n == 2)) && [ -f "$report" ] && tar -tzf "$tmp/out/gpu-check-logs.tar.gz" | grep -q '^logs/test_cuda_emu.log$' &&
  ok "the report and the logs" || bad "$n files under OUT, want gpu-check.md and gpu-check-logs.tar.gz"
for s in "${steps[@]}"; do
  st=$(status_of "$report" "$s")
  case $s in
    test_cuda_emu|test_kernels_emu) want="pass" ;;
    environment) want="pass" ;;
    model_pack|build) want="skipped: *" ;;
    *) want="skipped: no CUDA device" ;;
  esac
  # shellcheck disable=SC2254
  case $st in
    $want) ok "$s: $st" ;;
    *) bad "$s: '$st', want '$want'" ;;
  esac
done
grep -q '^- run: .*emulator mode' "$report" && ok "mode named" || bad "no emulator mode line"
grep -q '| test_cuda_emu | pass | [0-9.]* | [0-9]* test(s) run |' "$report" &&
  ok "emulator tests counted" || bad "test_cuda_emu's row has no count"

# 2. a budget too small for any test: skipped, not run over, and said so
OUT=$tmp/out2 "$check" --emulate --quick --no-build --build-dir "$build" --budget 12 >"$tmp/log2" 2>&1
rc=$?
st=$(status_of "$tmp/out2/gpu-check.md" test_cuda_emu)
[[ $st == "skipped: the time budget (12 s) is spent" || $st == "timeout ("*" s)" ]] &&
  ok "budget 12: test_cuda_emu '$st'" || bad "budget 12: test_cuda_emu '$st'"
((rc == 0 || rc == 1)) && ok "budget 12: exit $rc" || bad "budget 12: exit $rc"

# 3. the model in parts: 5 MiB + 1 byte in 2 MiB parts, carried in two calls
mkdir -p "$tmp/repo"
head -c $((5 * 1048576 + 1)) /dev/urandom >"$tmp/model.gguf"
"$check" --pack "$tmp/repo/pack" --part-size 2 "$tmp/model.gguf" 2>"$tmp/pack.log" &&
  ok "--pack" || { bad "--pack failed"; cat "$tmp/pack.log"; }
n=$(find "$tmp/repo/pack" -name 'model.gguf.part*' | wc -l)
((n == 3)) && ok "3 parts" || bad "$n parts, want 3"
big=$(find "$tmp/repo/pack" -name 'model.gguf.part*' -size +2048k | wc -l)
((big == 0)) && ok "no part over 2 MiB" || bad "$big parts over 2 MiB"
mkdir -p "$tmp/call1" "$tmp/call2"
cp -r "$tmp/repo/pack/1" "$tmp/repo/pack/2" "$tmp/call1/"
cp -r "$tmp/repo/pack/3" "$tmp/call2/"
"$check" --unpack "$tmp/call1" 2>"$tmp/unpack1.log" && ok "first unpack: waits for the rest" ||
  bad "first unpack failed: $(cat "$tmp/unpack1.log")"
grep -q 'have 2 of 3 parts' "$tmp/unpack1.log" && ok "says what is missing" || bad "$(cat "$tmp/unpack1.log")"
[ ! -e "$tmp/work/pack/model.gguf" ] && ok "nothing assembled yet" || bad "assembled from 2 of 3 parts"
"$check" --unpack "$tmp/call2" 2>"$tmp/unpack2.log" && ok "second unpack" || bad "second unpack: $(cat "$tmp/unpack2.log")"
cmp -s "$tmp/model.gguf" "$tmp/work/pack/model.gguf" && ok "reassembled byte for byte" || bad "reassembled file differs"
# a damaged part is refused, and nothing is assembled from it
rm -rf "$tmp/work/pack"
# (the byte is flipped, not overwritten: the parts are random, and a fixed
# byte would leave one part in 256 unchanged)
part0=$tmp/call1/1/model.gguf.part000
byte=$(od -An -tu1 -j100 -N1 "$part0" | tr -d ' ')
printf "\\$(printf %03o $((byte ^ 255)))" | dd of="$part0" bs=1 seek=100 conv=notrunc 2>/dev/null
"$check" --unpack "$tmp/call1" 2>"$tmp/unpack3.log"
rc=$?
((rc == 2)) && grep -q 'does not match SHA256SUMS' "$tmp/unpack3.log" && ok "damaged part refused" ||
  bad "damaged part: exit $rc, $(cat "$tmp/unpack3.log")"
# 4. a prebuilt CUDA build, packed here and taken from the pack there
if [ -x "$build/kvchat-cuda.so" ] && [ -x "$build/tests/test_cuda" ] && [ -x "$build/kvchat" ]; then
  "$check" --pack-build "$tmp/repo/gp" --build-dir "$build" 2>"$tmp/packb.log" &&
    [ -f "$tmp/repo/gp/build/build.tar.xz" ] && ok "--pack-build" || { bad "--pack-build"; cat "$tmp/packb.log"; }
  GPU_CHECK_WORK=$tmp/work4 OUT=$tmp/out4 "$check" --emulate --from-pack "$tmp/repo/gp" --steps 'test_kernels_emu' \
    >"$tmp/log4" 2>&1
  st=$(status_of "$tmp/out4/gpu-check.md" build)
  [[ $st == pass ]] && grep -q '| build | pass | [0-9.]* | prebuilt' "$tmp/out4/gpu-check.md" &&
    ok "--from-pack: the build comes from the pack" || { bad "--from-pack: build '$st'"; cat "$tmp/log4"; }
  [ -x "$tmp/work4/build/kvchat" ] && [ -n "$(ls "$tmp/work4/build/lib")" ] &&
    ok "unpacked with its libraries" || bad "nothing unpacked under $tmp/work4/build"
  st=$(status_of "$tmp/out4/gpu-check.md" test_cuda_emu)
  [[ $st == "skipped: not asked for (--steps)" ]] && ok "--steps: test_cuda_emu '$st'" || bad "--steps: test_cuda_emu '$st'"
  # the CUDA build holds no emulator tests: the one step asked for fails, and says why
  st=$(status_of "$tmp/out4/gpu-check.md" test_kernels_emu)
  [[ $st == "FAIL (not built: "* ]] && ok "--steps: test_kernels_emu '$st'" || bad "--steps: test_kernels_emu '$st'"
  xz=$tmp/repo/gp/build/build.tar.xz
  byte=$(od -An -tu1 -j1000 -N1 "$xz" | tr -d ' ')
  printf "\\$(printf %03o $((byte ^ 255)))" | dd of="$xz" bs=1 seek=1000 conv=notrunc 2>/dev/null
  GPU_CHECK_WORK=$tmp/work5 OUT=$tmp/out5 "$check" --emulate --from-pack "$tmp/repo/gp" --steps none >"$tmp/log5" 2>&1
  st=$(status_of "$tmp/out5/gpu-check.md" build)
  [[ $st == "FAIL (the build pack: exit 2)" ]] && grep -q 'does not match its SHA256SUMS' "$tmp/out5/gpu-check.md" &&
    ok "damaged build pack refused" || bad "damaged build pack: '$st'"
else
  echo "skip: $build has no CUDA build (kvchat-cuda.so, test_cuda) to pack"
fi

"$check" --frobnicate >/dev/null 2>&1
(($? == 2)) && ok "unknown option: exit 2" || bad "unknown option accepted"

((fails == 0)) && echo "all passed" || echo "$fails failed"
((fails == 0))
