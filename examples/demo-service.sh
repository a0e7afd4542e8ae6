#!/bin/sh
# A stand-in for a real daemon (a data feed, a trading engine) for
# examples/control.toml: `start` leaves a process running and records its pid,
# `stop` ends it, `status` exits 0 when it runs and 3 when it does not (the
# exit codes gatehouse's command backend reads). $NAME comes from the entry's
# env; the pid file lands in the entry's working_dir.
pidfile="./$NAME.pid"
case "$1" in
  start)
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$NAME already running"; exit 0
    fi
    sleep 100000 >/dev/null 2>&1 &
    echo $! > "$pidfile"
    echo "$NAME started (pid $!)"; exit 0 ;;
  stop)
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null; rm -f "$pidfile"; fi
    echo "$NAME stopped"; exit 0 ;;
  status)
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && exit 0
    exit 3 ;;
esac
echo "usage: $0 start|stop|status" >&2
exit 2
