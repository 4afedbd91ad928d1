#!/usr/bin/env bash
# Fails when a C source or header of ours is not formatted with the repo's .clang-format.
# Fix with: clang-format -i FILE...   (or: scripts/check-format.sh --fix)
set -euo pipefail
cd "$(dirname "$0")/.."

fix=0
[ "${1:-}" = "--fix" ] && fix=1

mapfile -d '' files < <(find include host common plugins tools bench tests \
    \( -name '*.c' -o -name '*.h' \) -type f -print0 2>/dev/null | sort -z)
if [ "${#files[@]}" -eq 0 ]; then
    echo "check-format: no C files found"
    exit 0
fi
if [ "$fix" = 1 ]; then
    clang-format -i "${files[@]}"
    echo "check-format: formatted ${#files[@]} files"
    exit 0
fi

bad=()
for f in "${files[@]}"; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        bad+=("$f")
    fi
done
if [ "${#bad[@]}" -ne 0 ]; then
    echo "check-format: ${#bad[@]} of ${#files[@]} files need clang-format -i:"
    printf '  %s\n' "${bad[@]}"
    # Show the first offending file's diff so the CI log says what is wrong.
    clang-format --dry-run --Werror "${bad[0]}" 2>&1 | head -20 || true
    exit 1
fi
echo "check-format: ${#files[@]} files OK"
