#!/usr/bin/env bash
# Runs the in-process test files listed in test/pg-files.txt on PostgreSQL: every app on a fresh database copied
# from a migrated template (test/support/pg-apps.ts); then the binary suites of test/pg-binary-files.txt with the
# compiled server on PostgreSQL (test/binary/harness.ts). Needs BULWARK_TEST_PG_URL (a server with trust auth).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BULWARK_TEST_PG_URL:?set BULWARK_TEST_PG_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres}"
mapfile -t files < <(grep -v '^#' test/pg-files.txt | grep -v '^$')
# This run's name: its databases are bw_<run>_* and bw_tpl_<run>_*, so the clean-up below leaves other runs' alone.
BULWARK_TEST_PG_RUN=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
export BULWARK_TEST_PG_RUN
rc=0
BULWARK_TEST_DB=postgres bun test "${files[@]}" || rc=$?
# The binary suites of test/pg-binary-files.txt, the compiled server on PostgreSQL (databases bw_bin_<run>_*).
mapfile -t binaries < <(grep -v '^#' test/pg-binary-files.txt | grep -v '^$')
BULWARK_TEST_BINARY_DB=postgres BULWARK_TEST_BINARY_RUN=$BULWARK_TEST_PG_RUN bun test "${binaries[@]}" || rc=$?
# What outlives the test process (its template, its spare database, drops still in flight): drop this run's.
bun -e '
  const { SQL } = await import("bun"); const { parsePgUrl } = await import("./src/db/pg/client.ts")
  const a = new SQL({ adapter: "postgres", ...parsePgUrl(process.env.BULWARK_TEST_PG_URL), max: 1 })
  const run = process.env.BULWARK_TEST_PG_RUN
  for (const r of await a`SELECT datname FROM pg_database WHERE datname LIKE ${`bw_${run}_%`} OR datname LIKE ${`bw_tpl_${run}_%`} OR datname LIKE ${`bw_bin_${run}_%`}`) await a.unsafe(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`)
  await a.close()'
exit $rc
