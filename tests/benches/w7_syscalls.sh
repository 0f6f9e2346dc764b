#!/bin/sh
# W7 kernel calls per round trip for one backend, counted by strace (outside the benchmark,
# which strace would slow down): epoll_ctl, epoll_wait/epoll_pwait, timerfd_settime, and the
# 1-byte reads and writes of the ping-pong.
#
#   tests/benches/w7_syscalls.sh select          # or floor, select-mio, glib, calloop, tokio
#   W7_ROUND_TRIPS=20000 tests/benches/w7_syscalls.sh glib
#
# The counts include the setup (a handful of epoll_ctl ADDs, the loop's creation): with the
# default 10 000 round trips per repeat that is well under 0.01 per round trip.
set -eu
backend=${1:?usage: w7_syscalls.sh BACKEND}
export W7_ROUND_TRIPS=${W7_ROUND_TRIPS:-10000}
cd "$(dirname "$0")/../.."
exe=$(cargo bench -p anyloop-conformance --bench workloads --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$exe" ] || { echo "w7_syscalls.sh: cannot find the workloads bench binary" >&2; exit 1; }
out=$(mktemp)
log=$(mktemp)
trap 'rm -f "$out" "$log"' EXIT
strace -f -c -o "$out" \
    -e trace=epoll_ctl,epoll_wait,epoll_pwait,epoll_pwait2,timerfd_settime,read,write,poll,ppoll \
    "$exe" --bench --quick --only W7 --backend "$backend" --json /dev/null >/dev/null 2>"$log" || {
    cat "$log" >&2
    exit 1
}
trips=$(sed -n 's/.*W7: \([0-9]*\) round trips in all.*/\1/p' "$log" | tail -n 1)
[ -n "$trips" ] || { cat "$log" >&2; echo "w7_syscalls.sh: no round-trip count" >&2; exit 1; }
echo "W7 on $backend: $trips round trips (warm-up included); syscalls per round trip:"
awk -v trips="$trips" '
    $NF ~ /^(epoll_ctl|epoll_wait|epoll_pwait|epoll_pwait2|timerfd_settime|read|write|poll|ppoll)$/ {
        # columns: % time, seconds, usecs/call, calls, [errors], syscall
        calls = $4
        printf "  %-16s %10d calls  %6.2f per round trip\n", $NF, calls, calls / trips
        if ($NF != "read" && $NF != "write") loop += calls
    }
    END { printf "  %-16s %10d calls  %6.2f per round trip\n", "(loop calls)", loop, loop / trips }
' "$out"
