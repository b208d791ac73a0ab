#!/usr/bin/env bash
# CI check of examples/bot.rs against the real binaries: a ChatServer, the
# bot (stops after 3 answers), and a ChatClient fed by a pipe that must show
# all three answers. Exits non-zero on any failure. Needs `cargo build
# --bins --examples` first (TARGET_DIR defaults to target/debug).
set -euo pipefail
T=${TARGET_DIR:-target/debug}
dir=$(mktemp -d)
server=""
bot=""
cleanup() {
    [ -n "$bot" ] && kill "$bot" 2>/dev/null || true
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

"$T/ChatServer" -sp 0 --bind 127.0.0.1 >"$dir/server" &
server=$!
for _ in $(seq 100); do
    port=$(sed -n 's/^Listening on 127\.0\.0\.1://p' "$dir/server")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "${port:-}" ] || { echo "bot_check: the server did not start" >&2; exit 1; }

"$T/examples/bot" Echo "127.0.0.1:$port" --messages 3 --for 20 >"$dir/bot" 2>&1 &
bot=$!
sleep 0.5

# Keep the pipe open until all three answers are shown (at most 10 s).
{
    printf 'send Echo one\nsend Echo two\nsend Echo three\n'
    for _ in $(seq 200); do
        grep -q 'You said: three' "$dir/client" 2>/dev/null && break
        sleep 0.05
    done
} | NO_COLOR=1 timeout 20 "$T/ChatClient" -u Tester -sip 127.0.0.1 -sp "$port" >"$dir/client"

wait "$bot"
bot=""
for word in one two three; do
    grep -q "<– <From 127.0.0.1:[0-9]*:Echo>: You said: $word\$" "$dir/client" || {
        echo "bot_check: no answer to '$word'" >&2
        cat "$dir/client" "$dir/bot" >&2
        exit 1
    }
done
echo "bot_check: ok"
