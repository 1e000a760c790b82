# Shared prelude of the ACDC CPU run scripts (sourced): repository root, the converted data (made once from
# ../shared/data/acdc-wsl4mis when missing) and the Python to use. DATA and PY may be set by the caller.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DATA=${DATA:-/work/data/acdc}
PY=${PY:-.venv/bin/python}
[ -f "$DATA/dataset.json" ] || $PY -m lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
