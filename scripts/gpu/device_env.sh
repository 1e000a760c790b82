# Sourced by the device scripts (from the repository root; OUT required, PY and WORK defaulted): puts the carried wheels
# (.whl/: monai, nibabel, absent from the device image) and this checkout's src/ on PYTHONPATH, and unpacks
# the 8-bit ACDC pack (.gpu/acdc.tar.xz) into $WORK/data unless DATA already holds a dataset.
OUT=${OUT:?set OUT}; PY=${PY:-python3}; WORK=${WORK:-/tmp/lms}
mkdir -p "$WORK/runs" "$OUT"
if [ -d .whl ] && ! $PY -c "import monai, nibabel" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl || exit 3
  export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
DATA=${DATA:-$WORK/data/acdc}
[ -f "$DATA/dataset.json" ] || { mkdir -p "$WORK/data" && tar -xJf .gpu/acdc.tar.xz -C "$WORK/data"; } || exit 4
