#!/bin/sh
# Runs irctest's server tests against guildhall's IRC gateway (tests/irctest/README.md).
# Extra arguments go to pytest: `tests/irctest/run.sh -k chathistory -x`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
irctest=${IRCTEST_DIR:-$repo/../irctest}
python=${IRCTEST_PYTHON:-python3}
if [ -z "${IRCTEST_GUILDHALL_BIN:-}" ]; then
    (cd "$repo" && cargo build --quiet --bin guildhall)
fi
cd "$irctest"
# The whole server suite, unless test paths were given.
tests=irctest/server_tests/
for arg in "$@"; do
    case "$arg" in irctest/*) tests= ;; esac
done
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m pytest \
    -p guildhall_plugin --timeout 60 \
    --controller guildhall_controller \
    -m 'not Ergo and not Sable and not deprecated and not strict' \
    $tests "$@"
