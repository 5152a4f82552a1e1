#!/usr/bin/env bash
# Nsight Compute on the M = 1 decode GEMVs (tiled weights): where the int8 GEMV, the
# MMA GEMV and the loads-only stream of the same tiles spend their cycles, per SASS
# instruction (warp stall sampling). Run on the device (Firecracker: counters need
# --clock-control none):
#   GIT_COMMIT=<hash> bash benchmarks/ncu_m1_gemv.sh $OUT [KxN]
# Writes OUT/details.csv (every section of every kernel), OUT/<name>_sass.csv (source page,
# SASS with per-instruction metrics) and OUT/ncu_log.txt.
set -u
out=${1:?usage: ncu_m1_gemv.sh OUT [KxN]}
shape=${2:-4096x14336}
log=$out/ncu_log.txt
mkdir -p "$out"
ncu_flags=(--clock-control none --set full --import-source no -f)
export PYTHONUNBUFFERED=1
{
  echo "commit ${GIT_COMMIT:-unknown} shape $shape $(date -u)"
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,driver_version --format=csv
  ncu --version
} >>"$log" 2>&1

profile() {  # name, kernel regex, extra ncu flags..., --, command...
  local name=$1 regex=$2
  shift 2
  local extra=()
  while [[ $1 != -- ]]; do extra+=("$1"); shift; done
  shift
  echo "== $name: $*" >>"$log"
  timeout 100 ncu "${ncu_flags[@]}" "${extra[@]}" -k "regex:$regex" -c 1 \
    -o "/tmp/$name" "$@" >>"$log" 2>&1 || echo "ncu rc=$? ($name)" >>"$log"
  if [[ -f /tmp/$name.ncu-rep ]]; then
    echo "== $name" >>"$out/details.csv"
    ncu -i "/tmp/$name.ncu-rep" --page details --csv >>"$out/details.csv" 2>>"$log"
    ncu -i "/tmp/$name.ncu-rep" --page source --csv --print-source sass \
      >"$out/${name}_sass.csv" 2>>"$log" || echo "source page failed ($name)" >>"$log"
  fi
}

pd=(python3 benchmarks/profile_decode.py --m 1 --weight_layout tiles_64 --calls 4
    --copies 4 --shapes "$shape")
profile int8_s16 sharq_int8_gemv --profile-from-start off -- "${pd[@]}" --impl int8_gemv

profile mma_default sharq_mma_gemv --profile-from-start off -- "${pd[@]}" --impl mma_gemv
profile stream_s16 sol_stream_tiles_64 -- python3 benchmarks/sol_stream.py \
  --out /tmp/sol --budget_s 60 --shapes "$shape" --probes "pattern=tiles_64,split_k=16,prefetch=4"
echo "done $(date -u)" >>"$log"
