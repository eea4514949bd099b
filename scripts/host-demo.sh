#!/usr/bin/env bash
# The host demo: builds a multi-file C program as separate objects and runs it
# with `modload run`, which loads the objects one after another into one
# namespace, resolves libc/libm from the host, and calls main.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh host

out=target/demo
mkdir -p "$out"
objects=()
for source in tests/fixtures/prog/*.c; do
    object="$out/$(basename "${source%.c}").o"
    gcc -c -O2 -fPIC -o "$object" "$source"
    objects+=("$object")
done

cargo build -q --release -p modload-cli
echo "== modload plan ${objects[0]}"
target/release/modload plan "${objects[0]}"
echo "== modload run ${objects[*]} -- hello world"
set +e
target/release/modload run "${objects[@]}" -- hello world
status=$?
set -e
echo "== main returned $status"
