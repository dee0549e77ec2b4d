#!/usr/bin/env bash
# Starts a real clamd for the test suite on 127.0.0.1:3311 with a tiny signature database of our own
# (the EICAR test string as a body signature): the official databases are downloaded by freshclam from
# the internet, which these machines cannot reach. Installs clamav-daemon from Debian when missing.
# Prints the address to use as BULWARK_TEST_CLAMD on success; exits non-zero (printing why) otherwise.
set -u
ADDR=127.0.0.1:3311
dir=${CLAMD_TEST_DIR:-/tmp/bulwark-test-clamd}
if ! command -v clamd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clamav-daemon) >/dev/null 2>&1 || { echo "cannot install clamav-daemon" >&2; exit 1; }
  else
    echo "clamd is not installed" >&2; exit 1
  fi
fi
mkdir -p "$dir/db"
eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
hex=$(printf '%s' "$eicar" | od -An -tx1 -v | tr -d ' \n')
printf 'Bulwark.Test.EICAR:0:*:%s\n' "$hex" > "$dir/db/bulwark-test.ndb"
cat > "$dir/clamd.conf" <<CONF
Foreground no
TCPSocket 3311
TCPAddr 127.0.0.1
DatabaseDirectory $dir/db
LogFile $dir/clamd.log
PidFile $dir/clamd.pid
StreamMaxLength 64M
User root
CONF
ping() { bun -e "import { ClamdClient } from '$(pwd)/src/lib/clamd'; process.exit((await new ClamdClient('$ADDR', 1000).ping().catch(() => false)) ? 0 : 1)" >/dev/null 2>&1; }
if ! ping; then
  clamd -c "$dir/clamd.conf" >/dev/null 2>&1 || { echo "clamd did not start (see $dir/clamd.log)" >&2; exit 1; }
  for _ in $(seq 1 30); do ping && break; sleep 0.5; done
fi
ping || { echo "clamd is not answering on $ADDR" >&2; exit 1; }
echo "$ADDR"
