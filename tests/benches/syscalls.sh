#!/bin/sh
# Kernel calls per round trip of W4 (ping-pong), W7 (interest toggling) or W2 (a round trip
# is one sequential one-shot firing: arm, run until it fired) for one backend,
# counted by strace (outside the benchmark, which strace would slow down): epoll_ctl,
# epoll_wait/epoll_pwait, poll/ppoll, timerfd_settime, and the 1-byte reads and writes of the
# ping-pong. The reads also count the drains of wake-up eventfds, if any.
#
#   tests/benches/syscalls.sh W7 select          # or floor, select-mio, glib, glib-raw,
#   tests/benches/syscalls.sh W4 calloop-raw     #   calloop, calloop-raw, tokio, tokio-raw
#   W7_ROUND_TRIPS=20000 tests/benches/syscalls.sh W7 glib
#   tests/benches/syscalls.sh W2 calloop          # 3 x 10 000 sequential firings
#
# W4_ROUND_TRIPS / W7_ROUND_TRIPS set the round trips per repeat (default 10 000 each; three
# repeats plus a tenth for warm-up, and W4 runs twice, for the callbacks and for the futures
# variant W4a). The counts include the setup (a handful of epoll_ctl ADDs, the loop's
# creation): well under 0.01 per round trip. W2 runs its N = 10 000 jobs (churn, batch and
# sequential firings) in one process; the churn's and the batch's few iterations and the
# harness's own log writes add about 0.01 per sequential firing. W2 has no payload reads or writes: every read and write there
# (eventfd wake-ups, timerfd reads) counts as a loop call.
set -eu
workload=${1:?usage: syscalls.sh W2|W4|W7 BACKEND}
backend=${2:?usage: syscalls.sh W2|W4|W7 BACKEND}
case $workload in
W4 | W7) sizes= ;;
W2) sizes="--n 10000" ;;
*) echo "syscalls.sh: W2, W4 or W7, not $workload" >&2; exit 2 ;;
esac
export W4_ROUND_TRIPS=${W4_ROUND_TRIPS:-10000}
export W7_ROUND_TRIPS=${W7_ROUND_TRIPS:-10000}
cd "$(dirname "$0")/../.."
exe=$(cargo bench -p anyloop-conformance --bench workloads --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$exe" ] || { echo "syscalls.sh: cannot find the workloads bench binary" >&2; exit 1; }
out=$(mktemp)
log=$(mktemp)
trap 'rm -f "$out" "$log"' EXIT
strace -f -c -o "$out" \
    -e trace=epoll_ctl,epoll_wait,epoll_pwait,epoll_pwait2,timerfd_settime,read,write,poll,ppoll \
    "$exe" --bench --quick --only "$workload" $sizes --backend "$backend" --json /dev/null >/dev/null 2>"$log" || {
    cat "$log" >&2
    exit 1
}
# One line per run of the workload in the process (W4 and its futures variant W4a both count).
trips=$(sed -n "s/.*$workload: \([0-9]*\) round trips in all.*/\1/p" "$log" | awk '{ t += $1 } END { if (t) print t }')
[ -n "$trips" ] || { cat "$log" >&2; echo "syscalls.sh: no round-trip count" >&2; exit 1; }
echo "$workload on $backend: $trips round trips (warm-up included); syscalls per round trip:"
awk -v trips="$trips" -v workload="$workload" '
    $NF ~ /^(epoll_ctl|epoll_wait|epoll_pwait|epoll_pwait2|timerfd_settime|read|write|poll|ppoll)$/ {
        # columns: % time, seconds, usecs/call, calls, [errors], syscall
        calls = $4
        printf "  %-16s %10d calls  %6.2f per round trip\n", $NF, calls, calls / trips
        if (workload == "W2" || ($NF != "read" && $NF != "write")) loop += calls
    }
    END { printf "  %-16s %10d calls  %6.2f per round trip\n", "(loop calls)", loop, loop / trips }
' "$out"
