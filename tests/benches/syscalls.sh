#!/bin/sh
# Kernel calls per unit of work of one workload, for one backend or several, counted by strace
# (outside the benchmark, which strace would slow down): epoll_ctl, epoll_wait/epoll_pwait,
# poll/ppoll, timerfd_settime, read and write (the payload's and any wake-up eventfd's or
# timerfd's), and for W8 the peer thread's sendto/recvfrom.
#
#   tests/benches/syscalls.sh W7 select          # one backend: floor, select, select-mio, glib,
#   tests/benches/syscalls.sh W4 calloop-raw     #   glib-raw, calloop, calloop-raw, tokio, tokio-raw
#   tests/benches/syscalls.sh W8 all             # every backend, then one markdown table
#   tests/benches/syscalls.sh W8 floor,select send 16
#   W7_ROUND_TRIPS=20000 tests/benches/syscalls.sh W7 glib
#   tests/benches/syscalls.sh W2 calloop         # 3 x 10 000 sequential firings
#
# The unit: a round trip for W4 (ping-pong), W7 (interest toggling that waits for WRITABLE)
# and W7c (interest changes that cancel out); a sequential one-shot firing for W2 (arm, run
# until it fired); a callback for W8 (streaming; PHASE recv or send, default recv, N sockets 1
# or 16, default 1).
#
# W4_ROUND_TRIPS / W7_ROUND_TRIPS set the round trips per repeat (default 10 000 each; three
# repeats plus a tenth for warm-up, and W4 runs twice, for the callbacks and for the futures
# variant W4a); W8_BYTES the bytes per repeat (default 64 MiB: about 13 000 callbacks in all).
# The counts include the setup (a handful of epoll_ctl ADDs, the loop's creation) and the
# harness's own log writes to stderr: about 0.01 per unit. W2 runs its N = 10 000 jobs (churn,
# batch and sequential firings) in one process; the churn's and the batch's few iterations add
# about 0.01 per sequential firing. "Loop calls" are all the counted calls but the payload's
# reads and writes (W4, W7, W7c: 2 reads and 2 writes per round trip; W8: the one read or
# write per callback; W2: none) and the peer's: every other read and write (eventfd wake-ups,
# timerfd reads, GLib's wake-ups around a dispatch) is the loop's. W8's peer thread uses
# sendto/recvfrom, so read and write are the loop thread's own.
set -eu
usage="usage: syscalls.sh W2|W4|W7|W7c|W8 BACKEND[,BACKEND...]|all [recv|send] [1|16]"
workload=${1:?$usage}
backends=${2:?$usage}
phase=${3:-recv}
sockets=${4:-1}
# The payload's reads and writes per unit, which the "loop calls" leave out.
case $workload in
W4 | W7 | W7c) args= unit="round trip" marker="round trips in all" reads=2 writes=2 ;;
W2) args="--n 10000" unit="firing" marker="round trips in all" reads=0 writes=0 ;;
W8)
    args="--n $sockets --phase $phase" unit="callback" marker="callbacks in all"
    case $phase in
    recv) reads=1 writes=0 ;;
    send) reads=0 writes=1 ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
    ;;
*) echo "$usage" >&2; exit 2 ;;
esac
[ "$backends" = all ] &&
    backends=floor,select,select-mio,glib,glib-raw,calloop,calloop-raw,tokio,tokio-raw
export W4_ROUND_TRIPS=${W4_ROUND_TRIPS:-10000}
export W7_ROUND_TRIPS=${W7_ROUND_TRIPS:-10000}
export W8_BYTES=${W8_BYTES:-67108864}
cd "$(dirname "$0")/../.."
exe=$(cargo bench -p anyloop-conformance --bench workloads --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$exe" ] || { echo "syscalls.sh: cannot find the workloads bench binary" >&2; exit 1; }
out=$(mktemp)
log=$(mktemp)
rows=$(mktemp)
# The run's own report (workloads.json and .md), not read: a scratch directory.
scratch=$(mktemp -d)
trap 'rm -rf "$out" "$log" "$rows" "$scratch"' EXIT
for backend in $(echo "$backends" | tr ',' ' '); do
    strace -f -c -o "$out" \
        -e trace=epoll_ctl,epoll_wait,epoll_pwait,epoll_pwait2,timerfd_settime,read,write,poll,ppoll,sendto,recvfrom \
        "$exe" --bench --quick --only "$workload" $args --backend "$backend" --json "$scratch/workloads.json" \
        >/dev/null 2>"$log" || {
        cat "$log" >&2
        exit 1
    }
    # One line per run of the workload in the process (W4 and its futures variant W4a both count).
    units=$(sed -n "s/.*$workload: \([0-9]*\) $marker.*/\1/p" "$log" | awk '{ t += $1 } END { if (t) print t }')
    [ -n "$units" ] || { cat "$log" >&2; echo "syscalls.sh: no count of ${unit}s" >&2; exit 1; }
    echo "$workload${args:+ ($args)} on $backend: $units ${unit}s (warm-up included); syscalls per $unit:"
    awk -v units="$units" -v unit="$unit" -v backend="$backend" -v rows="$rows" \
        -v reads="$reads" -v writes="$writes" '
        $NF ~ /^(epoll_ctl|epoll_wait|epoll_pwait|epoll_pwait2|timerfd_settime|read|write|poll|ppoll|sendto|recvfrom)$/ {
            # columns: % time, seconds, usecs/call, calls, [errors], syscall
            calls = $4
            printf "  %-16s %10d calls  %6.2f per %s\n", $NF, calls, calls / units, unit
            name = $NF
            if (name ~ /^epoll_(p?wait|pwait2)$/) name = "epoll_wait"
            if (name == "ppoll") name = "poll"
            if (name == "recvfrom" || name == "sendto") name = "peer"
            n[name] += calls
            if (name != "peer") loop += calls
        }
        END {
            loop -= (reads + writes) * units
            printf "  %-16s %10d calls  %6.2f per %s\n", "(loop calls)", loop, loop / units, unit
            printf "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", backend,
                n["epoll_wait"] / units, n["epoll_ctl"] / units, n["poll"] / units,
                n["timerfd_settime"] / units, n["read"] / units, n["write"] / units,
                loop / units, n["peer"] / units >> rows
        }
    ' "$out"
done
echo
echo "Kernel calls per $unit, $workload${args:+ ($args)}:"
echo
echo "| backend | epoll_wait | epoll_ctl | poll | timerfd_settime | read | write | loop calls | peer sendto/recvfrom |"
echo "|---|---|---|---|---|---|---|---|---|"
cat "$rows"
