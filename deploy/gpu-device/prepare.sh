#!/usr/bin/env bash
# Collect, in .whl/ at the repository root, the wheels a bare CUDA 13 machine with Python 3.12,
# numpy, scipy, cupy, pandas and numba needs to run sxtdist's GPU tests and bench_gpu.py:
# ASTRA 2.5 (built for CUDA 12) with its CUDA 12 runtime, dask, distributed, dask-cuda, zarr,
# ome-zarr and what they need. ASTRA's other CUDA library, cuFFT 11 (280 MB), is replaced on the
# device by cufft_shim.c (see setup.sh). Run here; about 26 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-python3}
plat=(--only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mkdir -p .whl
"$py" -m pip download -q --no-deps "${plat[@]}" -d .whl \
  astra-toolbox==2.5.0 nvidia-cuda-runtime-cu12 dask-cuda==26.10.0 \
  "dask==2026.8.0" "distributed==2026.8.0" "zarr>=3.2" "ome-zarr>=0.19" ome-zarr-models \
  numcodecs donfig google-crc32c msgspec "pydantic==2.12.5" "pydantic-core==2.41.5" pydantic-zarr annotated-types \
  typing-extensions typing-inspection array-api-compat transformnd deprecated \
  partd locket toolz tblib zict tornado mrcfile olefile
du -sh .whl
