#!/usr/bin/env bash
# Regenerates the jextract bindings of ffm-bindings from the real headers.
#
#   JEXTRACT=/path/to/jextract-22/bin/jextract CUDA_HOME=/usr/local/cuda ./regenerate.sh [cudart cuda nvrtc cublas nccl mpi]
#
# Optional: NCCL_INCLUDE (folder with nccl.h; default: $CUDA_HOME/include, then the pip wheel nvidia/nccl/include),
#           MPI_INCLUDE (folder with Open MPI's mpi.h; default: `mpicc --showme:incdir`, then Debian's path).
# Each run replaces src/main/java/dev/exeunt/ffm/<pkg>/<header>_h.java (and the struct classes jextract emits), then
# swaps jextract's eager `SymbolLookup.libraryLookup(System.mapLibraryName(...))` for the lazy
# NativeLibraries.symbolLookup(...) so that the library is searched for the way NativeLibraries does it.
# Hand-written classes (facades, exceptions, mpi/MpiHandles.java) are never touched.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$HERE/../src/main/java"
JEXTRACT="${JEXTRACT:?set JEXTRACT to the jextract launcher (https://jdk.java.net/jextract/)}"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
CUDA_INC="$CUDA_HOME/include"

first_dir_with() { # file dir...
  local f="$1"; shift
  for d in "$@"; do [ -n "$d" ] && [ -f "$d/$f" ] && { echo "$d"; return 0; }; done
  return 1
}

nccl_inc() {
  local pip
  pip="$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "include"))' 2>/dev/null || true)"
  first_dir_with nccl.h "${NCCL_INCLUDE:-}" "$CUDA_INC" "$pip" /usr/include
}

mpi_inc() {
  first_dir_with mpi.h "${MPI_INCLUDE:-}" "$(mpicc --showme:incdir 2>/dev/null | awk '{print $1}')" \
    /usr/lib/x86_64-linux-gnu/openmpi/include /usr/include/openmpi-x86_64 /usr/local/mpi/include
}

# run <list> <package> <header class> <library> <include dir> <header file>
run() {
  local list="$1" pkg="$2" cls="$3" lib="$4" inc="$5" header="$6"
  echo "== $header -> dev.exeunt.ffm.$pkg.$cls"
  "$JEXTRACT" --output "$OUT" --target-package "dev.exeunt.ffm.$pkg" --header-class-name "$cls" \
    --library "$lib" -I "$inc" -I "$CUDA_INC" "@$HERE/$list" "$inc/$header"
  local file="$OUT/dev/exeunt/ffm/$pkg/$cls.java"
  # jextract writes (over several lines):
  #   static final SymbolLookup SYMBOL_LOOKUP = SymbolLookup.libraryLookup(System.mapLibraryName("<lib>"), LIBRARY_ARENA)
  #           .or(SymbolLookup.loaderLookup())
  #           .or(Linker.nativeLinker().defaultLookup());
  perl -0pi -e 's/static final SymbolLookup SYMBOL_LOOKUP = .*?;\n/static final SymbolLookup SYMBOL_LOOKUP = dev.exeunt.ffm.loader.NativeLibraries.symbolLookup("'"$lib"'");\n/s' "$file"
  grep -q 'NativeLibraries.symbolLookup("'"$lib"'")' "$file" || { echo "could not patch SYMBOL_LOOKUP in $file" >&2; exit 1; }
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(cudart cuda nvrtc cublas nccl mpi)
for t in "${targets[@]}"; do
  case "$t" in
    cudart) run cudart.txt cuda   cuda_runtime_api_h cudart "$CUDA_INC" cuda_runtime_api.h ;;
    cuda)   run cuda.txt   cuda   cuda_h             cuda   "$CUDA_INC" cuda.h ;;
    nvrtc)  run nvrtc.txt  nvrtc  nvrtc_h            nvrtc  "$CUDA_INC" nvrtc.h ;;
    cublas) run cublas.txt cublas cublas_api_h       cublas "$CUDA_INC" cublas_api.h ;;
    nccl)   run nccl.txt   nccl   nccl_h             nccl   "$(nccl_inc)" nccl.h ;;
    mpi)    run mpi.txt    mpi    mpi_h              mpi    "$(mpi_inc)" mpi.h ;;
    *) echo "unknown target $t (cudart cuda nvrtc cublas nccl mpi)" >&2; exit 2 ;;
  esac
done
echo "done; now: ./mvnw -B -q -pl ffm-bindings test"
