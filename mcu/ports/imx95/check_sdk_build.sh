#!/usr/bin/env bash
# Build the imx95 port against NXP's public MCUXpresso SDK sources and print the image size.
#
#   mcu/ports/imx95/check_sdk_build.sh SDK_DIR
#
# SDK_DIR is laid out like the west workspace of mcuxsdk-manifests (release/24.12.00): the
# repositories below checked out at these paths and commits (README.md says how to get them).
# Nothing needs a network; nothing from SDK_DIR is copied into this repository.
set -euo pipefail

# path under SDK_DIR | repository (github.com/nxp-mcuxpresso/...) | commit
SOURCES=(
    ".|mcuxsdk-core|84547d55114471cd361e32559db1c4ecb3a32815"
    "arch/arm/CMSIS|mcu-sdk-cmsis|c3319a16588d05036a9e08cf59a92634a5a0e5dd"
    "devices/i.MX|mcux-devices-imx|bd9dec893950a163c5f9f4c53e5bc7a202b83819"
    "components|mcux-component|0a95c0536c168a97e1caac0bc41898c3cf9f75a8"
    "examples|mcuxsdk-examples|16bf470be9f9d7e66ea4ae832b3681e731773659"
    "middleware/multicore|mcuxsdk-middleware-multicore|d01bd05a80ab399fa0fc6e97da3380e5dd908639"
    "middleware/multicore/rpmsg-lite|rpmsg-lite|6b5ebb8b465554bca2a6993b0fbfb2fad3464ef1"
)
# folders the build reads (imx95.mk), each with the repository that provides it
NEEDED=(
    "drivers/common|mcuxsdk-core"
    "drivers/lpuart|mcuxsdk-core"
    "drivers/mu1|mcuxsdk-core"
    "arch/arm/CMSIS/Core/Include|mcu-sdk-cmsis"
    "devices/i.MX/i.MX95/MIMX9596|mcux-devices-imx"
    "devices/i.MX/i.MX95/periph|mcux-devices-imx"
    "components/clock|mcux-component"
    "components/pinctrl|mcux-component"
    "components/sm|mcux-component"
    "components/scmi|mcux-component"
    "components/smt|mcux-component"
    "components/imx_sm_crc|mcux-component"
    "components/debug_console_lite|mcux-component"
    "examples/_boards/imx95lpd5evk19|mcuxsdk-examples"
    "examples/_boards/imx95lpd5evk19/multicore_examples/rpmsg_lite_str_echo_rtos/remote/cm7|mcuxsdk-examples"
    "middleware/multicore/remoteproc|mcuxsdk-middleware-multicore"
    "middleware/multicore/rpmsg-lite/lib/rpmsg_lite/porting/platform/imx95_m7|rpmsg-lite"
)

me=$(basename "$0")
if [ $# -ne 1 ]; then
    echo "usage: $me SDK_DIR" >&2
    exit 2
fi
if [ ! -d "$1" ]; then
    echo "$me: SDK_DIR $1 is not a directory" >&2
    exit 2
fi
sdk=$(cd "$1" && pwd)
mcu=$(cd "$(dirname "$0")/../.." && pwd)

commit_of() {
    local s
    for s in "${SOURCES[@]}"; do
        IFS='|' read -r path repo commit <<<"$s"
        if [ "$repo" = "$1" ]; then
            echo "commit $commit, at SDK_DIR/$path"
            return
        fi
    done
}

missing=0
for n in "${NEEDED[@]}"; do
    IFS='|' read -r dir repo <<<"$n"
    if [ ! -d "$sdk/$dir" ]; then
        echo "$me: missing $sdk/$dir (nxp-mcuxpresso/$repo, $(commit_of "$repo"))" >&2
        missing=1
    fi
done
[ "$missing" -eq 0 ] || exit 1

for tool in arm-none-eabi-gcc arm-none-eabi-size arm-none-eabi-objcopy make; do
    command -v "$tool" >/dev/null || { echo "$me: $tool not found in PATH" >&2; exit 1; }
done

# the commits actually checked out, where SDK_DIR holds git work trees
for s in "${SOURCES[@]}"; do
    IFS='|' read -r path repo commit <<<"$s"
    if [ -e "$sdk/$path/.git" ]; then
        have=$(git -C "$sdk/$path" rev-parse HEAD 2>/dev/null || echo unknown)
        [ "$have" = "$commit" ] || echo "$me: note: $path is at $have, README.md lists $commit" >&2
    fi
done

# always from scratch: the check is the build itself
rm -rf "$mcu/build/imx95"
make -C "$mcu" imx95 SDK_DIR="$sdk"

elf="$mcu/build/imx95/edgevla-fw.elf"
[ -f "$elf" ] && [ -f "$mcu/build/imx95/edgevla-fw.bin" ] || { echo "$me: no image produced" >&2; exit 1; }
echo
arm-none-eabi-size "$elf"
read -r text data bss _ < <(arm-none-eabi-size "$elf" | tail -n 1)
echo "flash (text+data): $((text + data)) bytes, RAM (data+bss, 4 KiB stack included): $((data + bss)) bytes"
