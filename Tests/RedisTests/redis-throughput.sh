#!/usr/bin/env bash
# Measures the Redis client's throughput against a redis-server it starts itself (release build):
#   SET/GET vs `redis-benchmark -q -P 16 -t set,get -n 200000` on the same server, printed as a ratio,
#   and pub/sub messages of 100 bytes drained per second by one subscriber connection.
# Not part of the test run: the benchmark suite is enabled only by REDIS_THROUGHPUT.
# Usage: Tests/RedisTests/redis-throughput.sh   (from anywhere; needs redis-server and redis-benchmark)
# REDIS_THROUGHPUT_REQUESTS and REDIS_THROUGHPUT_MESSAGES change the sizes (defaults 200000 and 2000000).
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in redis-server redis-benchmark; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found on PATH" >&2; exit 1; }
done
output=$(mktemp)
trap 'rm -f "$output"' EXIT
status=0
REDIS_THROUGHPUT=1 swift test -c release -Xswiftc -enable-testing --filter ThroughputBenchmark >"$output" 2>&1 \
    || status=$?
grep -E '^== ' "$output" || true
if [ "$status" -ne 0 ] || ! grep -q '^== drained' "$output"; then
    tail -40 "$output" >&2
    echo "error: the throughput suite failed (exit $status)" >&2
    exit 1
fi
