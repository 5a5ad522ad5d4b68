#!/usr/bin/env bash
# Fuzzes the project's parsers with AFL++ and SharpFuzz, one target at a time, each for a bounded time.
# Not part of CI. Installs nothing: it says what is missing and stops.
#
#   tests/fuzz/run.sh [seconds-per-target] [target...]
#
# Targets: http1-head http1-chunked http2-frames hpack clienthello (default: all, in that order).
# Output (ignored by git): tests/fuzz/out/{bin,seeds,findings/<target>,logs}. Set FUZZ_OUT to put it elsewhere.
# afl-fuzz runs under `nice -n 19` (the machine is shared). A crash or hang is replayed at the end with the
# uninstrumented harness so its exception is printed; copy the input into a regression test (see README.md).
set -euo pipefail

seconds=${1:-300}
if [[ $# -gt 0 ]]; then shift; fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(http1-head http1-chunked http2-frames hpack clienthello)
fi
if ! [[ $seconds =~ ^[0-9]+$ ]] || [[ $seconds -lt 10 ]]; then
  echo "seconds-per-target must be a number >= 10 (got '$seconds')" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
shared=${SHARED_DATA:-$root/../shared/data}
out=${FUZZ_OUT:-$root/tests/fuzz/out}
export PATH="$PATH:$HOME/.dotnet/tools"

missing=0
if ! command -v afl-fuzz >/dev/null; then
  echo "missing afl-fuzz: run  apt-get update && apt-get install -y afl++" >&2
  missing=1
fi
if ! command -v dotnet >/dev/null; then
  echo "missing dotnet: install the .NET SDK named in global.json" >&2
  missing=1
fi
if ! command -v sharpfuzz >/dev/null; then
  echo "missing sharpfuzz: run  dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0" >&2
  missing=1
fi
if [[ ! -f $shared/llhttp-cases/llhttp-cases.json ]]; then
  echo "missing seed data: $shared/llhttp-cases (set SHARED_DATA to the shared data folder)" >&2
  missing=1
fi
[[ $missing -eq 0 ]] || exit 1

mkdir -p "$out/logs" "$out/findings"
echo "== build (Release) into $out/bin"
rm -rf "$out/bin"
dotnet publish "$root/tests/fuzz/Proxy.Fuzz/Proxy.Fuzz.csproj" -c Release -o "$out/bin" --nologo -v quiet >"$out/logs/build.log" 2>&1 \
  || { cat "$out/logs/build.log"; exit 1; }

echo "== seeds into $out/seeds"
rm -rf "$out/seeds"
dotnet "$out/bin/Proxy.Fuzz.dll" seeds "$shared" "$root/tests/Proxy.Tls.Tests/ClientHello/Vectors" "$out/seeds"

# The replay copy stays uninstrumented; the fuzzed copy gets SharpFuzz's AFL coverage hooks in the parser assemblies.
rm -rf "$out/replay" && cp -r "$out/bin" "$out/replay"
echo "== instrument Proxy.Http.dll and Proxy.Tls.dll"
sharpfuzz "$out/bin/Proxy.Http.dll" >"$out/logs/instrument.log" 2>&1
sharpfuzz "$out/bin/Proxy.Tls.dll" >>"$out/logs/instrument.log" 2>&1

export AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_UI=1 AFL_FORKSRV_INIT_TMOUT=60000
for target in "${targets[@]}"; do
  findings="$out/findings/$target"
  rm -rf "$findings"
  echo "== $target: afl-fuzz for ${seconds}s (log: $out/logs/$target.log)"
  start=$(date +%s)
  nice -n 19 afl-fuzz -V "$seconds" -i "$out/seeds/$target" -o "$findings" -t 2000 -m none \
    -- "$(command -v dotnet)" "$out/bin/Proxy.Fuzz.dll" "$target" >"$out/logs/$target.log" 2>&1 || {
      echo "   afl-fuzz failed, last lines of its log:"; tail -n 20 "$out/logs/$target.log"; }
  echo "   wall time $(( $(date +%s) - start ))s"
done

echo
echo "== summary (seconds per target: $seconds)"
printf '%-14s %8s %12s %9s %7s %8s %7s %6s\n' target run_s execs execs/s paths coverage crashes hangs
for target in "${targets[@]}"; do
  stats="$out/findings/$target/default/fuzzer_stats"
  if [[ ! -f $stats ]]; then
    printf '%-14s %s\n' "$target" "no fuzzer_stats (see $out/logs/$target.log)"
    continue
  fi
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  printf '%-14s %8s %12s %9s %7s %8s %7s %6s\n' "$target" "$(get run_time)" "$(get execs_done)" "$(get execs_per_sec)" \
    "$(get corpus_count)" "$(get bitmap_cvg)" "$(get saved_crashes)" "$(get saved_hangs)"
done

found=0
for target in "${targets[@]}"; do
  for kind in crashes hangs; do
    dir="$out/findings/$target/default/$kind"
    [[ -d $dir ]] || continue
    for input in "$dir"/id:*; do
      [[ -e $input ]] || continue
      found=1
      echo
      echo "== $target $kind: $input"
      timeout 20 dotnet "$out/replay/Proxy.Fuzz.dll" "$target" "$input" | head -n 15 || true
    done
  done
done
[[ $found -eq 0 ]] && echo && echo "no crashes or hangs"
exit 0
