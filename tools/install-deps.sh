#!/usr/bin/env bash
# Installs the Debian 12 packages the engine builds with (only what is missing).
set -euo pipefail
PACKAGES=(
  cmake ninja-build g++ pkg-config
  libsentencepiece-dev      # tokenizer
  libjpeg62-turbo-dev       # JPEG decoding (libjpeg-turbo)
  libpng-dev zlib1g-dev     # PNG decoding
  libexif-dev               # EXIF orientation
  nlohmann-json3-dev        # config.json, safetensors headers, --json
  libcli11-dev              # command line
  libdnnl-dev               # oneDNN matrix products (speed)
  ocl-icd-opencl-dev        # OpenCL headers: Debian's oneDNN CMake config requires them
                            # (a Recommends of libdnnl-dev, skipped by --no-install-recommends)
  libzip-dev                # .npz archives (segmentation VAE)
  libcairo2-dev fonts-dejavu-core  # drawing boxes, masks and labels
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev  # video frames (FFmpeg)
  libcpp-httplib-dev        # HTTP server
  libbenchmark-dev          # kernel microbenchmarks
  libopenmpi-dev openmpi-bin  # data-parallel fine-tuning
  libgtest-dev libgmock-dev # tests
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
