#!/usr/bin/env bash
# test-drivers.sh: vet and test the drivers module (auth.DB against SQLite and PostgreSQL) with
# a PostgreSQL server of its own from scripts/postgres.sh, which it stops at the end whatever
# happens. It exits with the status of vet and the tests. make test calls it.
#
# GO overrides go; GOTESTFLAGS adds flags to go test (e.g. GOTESTFLAGS=-v).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
GO=${GO:-go}

# A state file of its own, so that concurrent runs, and a server started by hand, are apart.
sdir=$(mktemp -d "${TMPDIR:-/tmp}/hawser-test-drivers.XXXXXXXX")
export HAWSER_PG_STATE=$sdir/state.env
cleanup() {
	"$here/postgres.sh" stop || echo "test-drivers.sh: stopping PostgreSQL failed" >&2
	rm -rf -- "$sdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

line=$("$here/postgres.sh" start)
eval "$line"
[ -n "${HAWSER_TEST_PG_DSN:-}" ] || { echo "test-drivers.sh: postgres.sh start gave no DSN" >&2; exit 1; }

cd "$root/drivers"
rc=0
# shellcheck disable=SC2086 # GOTESTFLAGS is a list of flags
"$GO" vet ./... && "$GO" test -race -count=1 -timeout=10m ${GOTESTFLAGS:-} ./... || rc=$?
exit "$rc"
