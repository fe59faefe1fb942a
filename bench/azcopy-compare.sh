#!/usr/bin/env bash
# AzCopy against edgeblob and Azurite in one run, on this machine: upload and download of one
# 1 GiB file and of 1,000 small files. Prints a Markdown table of seconds and MiB/s.
# Needs ../shared/peers/install.sh (azcopy, Azurite) and a release build of edgeblob.
# Usage: bench/azcopy-compare.sh [WORKDIR]   (default: ./bench-data/azcopy)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers=$here/../shared/peers
# shellcheck disable=SC1091
source "$peers/env.sh"
work=${1:-$here/bench-data/azcopy}
rm -rf "$work" && mkdir -p "$work"/{src/small,down,edgeblob,azurite}
EB_PORT=${EB_PORT:-10300}; AZ_PORT=${AZ_PORT:-10400}

echo "generating data in $work/src" >&2
head -c $((1 << 30)) /dev/urandom > "$work/src/big.bin"
for i in $(seq 1 1000); do head -c 16384 /dev/urandom > "$work/src/small/f$i.bin"; done

"$here/target/release/edgeblob" --data "$work/edgeblob/data.dat" --port "$EB_PORT" --listen 127.0.0.1 \
  > "$work/edgeblob/out" 2> "$work/edgeblob/log" & eb=$!
azurite-blob --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --skipApiVersionCheck --location "$work/azurite" \
  > "$work/azurite/log" 2>&1 & az=$!
trap 'kill $eb $az 2>/dev/null || true' EXIT
sleep 3

sas=$("$PEERS_HOME/venv/bin/python" "$peers/gen_sas.py")
export AZCOPY_LOG_LOCATION=$work/azlogs AZCOPY_JOB_PLAN_LOCATION=$work/azplans
run() { # name, then the command; prints seconds
  local t0 t1
  t0=$(date +%s.%N); "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log" >&2; echo "FAILED: $*" >&2; exit 1; }
  t1=$(date +%s.%N); echo "$t1 - $t0" | bc
}
echo "| server | 1 GiB up s | MiB/s | 1 GiB down s | MiB/s | 1,000 × 16 KiB up s | files/s | 1,000 × 16 KiB down s | files/s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for server in edgeblob azurite; do
  port=$EB_PORT; [ "$server" = azurite ] && port=$AZ_PORT
  base=http://127.0.0.1:$port/devstoreaccount1/bench
  curl -sf -X PUT -H 'x-ms-version: 2021-08-06' -H 'Content-Length: 0' "$base?restype=container&$sas" > /dev/null
  up=$(run azcopy copy "$work/src/big.bin" "$base/big.bin?$sas" --from-to LocalBlob)
  down=$(run azcopy copy "$base/big.bin?$sas" "$work/down/big.bin" --from-to BlobLocal)
  cmp -s "$work/src/big.bin" "$work/down/big.bin" || { echo "$server: 1 GiB download differs" >&2; exit 1; }
  sup=$(run azcopy copy "$work/src/small" "$base/?$sas" --from-to LocalBlob --recursive)
  rm -rf "$work/down/small"
  sdown=$(run azcopy copy "$base/small?$sas" "$work/down/" --from-to BlobLocal --recursive)
  diff -r "$work/src/small" "$work/down/small" > /dev/null || { echo "$server: small files differ" >&2; exit 1; }
  rm -rf "$work/down/"*
  printf '| %s | %.1f | %.0f | %.1f | %.0f | %.1f | %.0f | %.1f | %.0f |\n' "$server" \
    "$up" "$(echo "1024 / $up" | bc -l)" "$down" "$(echo "1024 / $down" | bc -l)" \
    "$sup" "$(echo "1000 / $sup" | bc -l)" "$sdown" "$(echo "1000 / $sdown" | bc -l)"
done
