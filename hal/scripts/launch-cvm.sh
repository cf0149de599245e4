#!/usr/bin/env bash
# Launch the CVM a deployment description describes: SEV-SNP with upstream QEMU >= 9.1, or with
# --no-sev a plain VM under TCG for hosts without SNP. The QEMU arguments come from
# `cube-stack hal launch-args`, which reads the same description `cube-stack policy measure` measures,
# so what runs is what the client policy pins. Arguments after `--` are passed to QEMU as they are.
#   QEMU=...        the QEMU binary (default qemu-system-x86_64)
#   CUBE_STACK=...  the cube-stack command (default cube-stack on PATH)
set -euo pipefail

usage() {
    echo "usage: $0 [--no-sev] DEPLOYMENT.toml [-- QEMU-ARGS...]" >&2
    exit "${1:-2}"
}

mode=()
deployment=
while [ $# -gt 0 ]; do
    case "$1" in
        --no-sev) mode=(--no-sev); shift ;;
        --) shift; break ;;
        -h|--help) usage 0 ;;
        -*) usage ;;
        *) [ -z "$deployment" ] || usage; deployment=$1; shift ;;
    esac
done
[ -n "$deployment" ] || usage
qemu=${QEMU:-qemu-system-x86_64}
cube_stack=${CUBE_STACK:-cube-stack}

if [ ${#mode[@]} -eq 0 ]; then
    # sev-snp-guest with -bios and confidential-guest-support is upstream QEMU 9.1's syntax.
    version=$("$qemu" --version | sed -n 's/^QEMU emulator version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    read -r major minor <<<"${version:-0 0}"
    if [ "$major" -lt 9 ] || { [ "$major" -eq 9 ] && [ "$minor" -lt 1 ]; }; then
        echo "$0: $qemu is QEMU $major.$minor; SEV-SNP needs upstream QEMU >= 9.1 (or use --no-sev)" >&2
        exit 1
    fi
fi

# NUL-separated, so a command line with spaces or quotes arrives intact; a file, so that a failure of
# cube-stack (an invalid description) stops the launch.
args_file=$(mktemp)
trap 'rm -f "$args_file"' EXIT
"$cube_stack" hal launch-args --deployment "$deployment" ${mode[@]+"${mode[@]}"} --null >"$args_file"
mapfile -d '' -t args <"$args_file"
rm -f "$args_file"
trap - EXIT
exec "$qemu" "${args[@]}" "$@"
