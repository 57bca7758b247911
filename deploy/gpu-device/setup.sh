# Source on the device machine, from the repository root:  . deploy/gpu-device/setup.sh
# Installs .whl/*.whl into /tmp/site, builds the cuFFT 11 stand-in where ASTRA's RUNPATH looks
# for it ($ORIGIN/../nvidia/cufft/lib), and puts both on the paths.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || return 1
mkdir -p /tmp/site/nvidia/cufft/lib
gcc -shared -fPIC -O2 -Wl,--version-script=deploy/gpu-device/cufft.map \
  -Wl,-soname,libcufft.so.11 -o /tmp/site/nvidia/cufft/lib/libcufft.so.11 \
  deploy/gpu-device/cufft_shim.c || return 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
