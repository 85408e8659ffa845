#!/usr/bin/env bash
# Measures the Redis client's throughput against a redis-server it starts itself (release build):
#   SET/GET vs `redis-benchmark -q -P 16 -t set,get -n 200000` on the same server, printed as a ratio,
#   and pub/sub messages of 100 bytes drained per second by one subscriber connection.
# Not part of the test run: the benchmark suite is enabled only by REDIS_THROUGHPUT.
# Usage: Tests/RedisTests/redis-throughput.sh   (from the package root; needs redis-server and redis-benchmark)
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in redis-server redis-benchmark; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found on PATH" >&2; exit 1; }
done
REDIS_THROUGHPUT=1 swift test -c release --filter ThroughputBenchmark 2>&1 | grep -E '^== |✘|error' || true
# The figures above are the result; fail if the suite failed.
REDIS_THROUGHPUT=1 swift test -c release --skip-build --filter ThroughputBenchmark >/dev/null 2>&1 \
    || { echo "error: the throughput suite failed" >&2; exit 1; }
