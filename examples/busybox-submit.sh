#!/bin/sh
# vo-run: submit a binary to the virt-offload host from a guest with busybox alone.
# The same script is in docs/protocol.md ("A busybox client"); test/guest keeps them equal.
set -eu
name=${VO_PORT_NAME:-virt-offload.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
id=1
nonce=${VO_NONCE:-vorun$$x$(date +%s)}

# find_port: /dev/virtio-ports/NAME (udev), else the /dev/vportNpM whose sysfs name is NAME
find_port() {
  if [ -e "${VO_DEV:-/dev}/virtio-ports/$name" ]; then echo "${VO_DEV:-/dev}/virtio-ports/$name"; return 0; fi
  found=
  for f in "${VO_SYS:-/sys}"/class/virtio-ports/*/name; do
    [ -r "$f" ] || continue
    n=$(cat "$f") d=${f%/name}
    if [ "$n" = "$name" ]; then echo "${VO_DEV:-/dev}/${d##*/}"; return 0; fi
    found="$found ${n:-(unnamed)}"
  done
  echo "vo-run: no virtio-serial port named $name (ports found:${found:- none})" >&2
  return 1
}
# be32 N: the four bytes of N, big-endian, as printf escapes
be32() { printf '\\%03o\\%03o\\%03o\\%03o' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
# crc FILE: the CRC-32 of FILE, as a number
crc() { set -- $(crc32 "$1"); echo $((0x$1)); }
# frame TYPE ID FILE: send one frame carrying FILE's bytes
frame() {
  printf "VOF1\\$(printf %03o "$1")\\000\\000\\000$(be32 "$2")$(be32 $(wc -c < "$3"))$(be32 $(crc "$3"))" > "$tmp/h"
  printf "$(be32 $(crc "$tmp/h"))" >> "$tmp/h"
  cat "$tmp/h" "$3" >&4
}
# next_byte: the next byte, as a number, in b: first the bytes put back into $pend, then the port
next_byte() {
  if [ -n "$pend" ]; then set -- $pend; b=$1; shift; pend="$*"; return 0; fi
  b=$(dd bs=1 count=1 2>/dev/null <&3 | od -An -tu1)
  [ -n "$b" ]
}
# read_frame: skip to the next magic; set T (0: not a valid frame), ID, LEN; payload in $tmp/p
read_frame() {
  w=
  while [ "$w" != "86 79 70 49" ]; do
    next_byte || return 1
    set -- $w $b
    [ $# -le 4 ] || shift
    w="$*"
  done
  # The header's 20 bytes: what is left in $pend (fewer than 20), then the port.
  set -- $pend
  pend=
  : > "$tmp/r"
  for x; do printf "\\$(printf %03o "$x")" >> "$tmp/r"; done
  dd bs=$((20 - $#)) count=1 iflag=fullblock 2>/dev/null <&3 >> "$tmp/r"
  set -- $(od -An -v -tu1 "$tmp/r")
  [ $# -eq 20 ] || return 1
  T=$1 ID=$(($5 << 24 | $6 << 16 | $7 << 8 | $8)) LEN=$(($9 << 24 | ${10} << 16 | ${11} << 8 | ${12}))
  pcrc=$((${13} << 24 | ${14} << 16 | ${15} << 8 | ${16})) hcrc=$((${17} << 24 | ${18} << 16 | ${19} << 8 | ${20}))
  { printf VOF1; head -c 16 "$tmp/r"; } > "$tmp/h"
  # Not a real header (stale bytes of an earlier conversation), or longer than any frame: its
  # 20 bytes are scanned again, since a real frame may begin among them.
  if [ "$(crc "$tmp/h")" -ne "$hcrc" ] || [ "$LEN" -gt 65536 ]; then T=0 pend="$*"; return 0; fi
  if [ "$LEN" -eq 0 ]; then : > "$tmp/p"; else dd bs="$LEN" count=1 iflag=fullblock 2>/dev/null <&3 > "$tmp/p"; fi
  [ "$(crc "$tmp/p")" -eq "$pcrc" ] || T=0
}
# hello: the resync marker, then a HELLO with the current nonce
hello() {
  head -c 65560 /dev/zero | tr '\000' '\377' >&4
  printf '{"role":"guest","versions":[1],"nonce":"%s"}' "$nonce" > "$tmp/j"
  frame 1 0 "$tmp/j"
}

[ $# -ge 1 ] || { echo "usage: vo-run FILE [--] [ARGS...] | vo-run --measurement sha256:HEX [--] [ARGS...]" >&2; exit 2; }
if [ "$1" = --measurement ]; then
  [ $# -ge 2 ] || { echo "vo-run: --measurement needs a measurement (sha256:HEX)" >&2; exit 2; }
  what="\"measurement\":\"$2\"" file=
  shift 2
else
  file=$1
  [ -f "$file" ] && [ -r "$file" ] || { echo "vo-run: cannot read $file" >&2; exit 66; }
  what="\"upload\":$(($(wc -c < "$file")))"
  shift
fi
# As with `virt-offload submit`, a -- before the program's arguments is not one of them.
[ "${1:-}" != -- ] || shift
args=
for a in "$@"; do
  # This client does not escape JSON: refuse what would need it rather than send broken JSON.
  case $a in *[\"\\]* | *[[:cntrl:]]*) echo "vo-run: an argument has a quote, a backslash or a control character, which this client cannot send" >&2; exit 2 ;; esac
  args="$args${args:+,}\"$a\""
done

if [ -n "${VO_IN:-}" ]; then
  exec 3< "$VO_IN" 4> "$VO_OUT"
else
  port=${VO_PORT:-$(find_port)} || exit 71
  # <> would create a missing file: check first. Opening twice is safe (one opener at a time).
  [ -e "$port" ] && ( exec 3<> "$port" ) 2>/dev/null || { echo "vo-run: cannot open $port" >&2; exit 71; }
  exec 3<> "$port" 4>&3
fi
first=$nonce tries=1 pend=
hello
while :; do
  if ! read_frame; then
    # A port reads end-of-file while the host end is not connected: wait, then a new HELLO.
    [ "$tries" -lt "${VO_WAIT:-30}" ] || { echo "vo-run: no answer from the host" >&2; exit 71; }
    sleep 1
    tries=$((tries + 1)) nonce=${first}r$tries
    hello
    continue
  fi
  if [ "$T" -eq 1 ] && grep -q "\"nonce\":\"$nonce\"" "$tmp/p"; then break; fi
done
max=$(sed -n 's/.*"maxFrame":\([0-9]*\).*/\1/p' "$tmp/p")

printf '{"argv":[%s],%s}' "$args" "$what" > "$tmp/j"
frame 16 $id "$tmp/j"
if [ -n "$file" ]; then
  size=$(($(wc -c < "$file"))) i=0
  while [ $((i * max)) -lt "$size" ]; do
    dd if="$file" bs="$max" skip=$i count=1 2>/dev/null > "$tmp/c"
    frame 17 $id "$tmp/c"
    i=$((i + 1))
  done
  : > "$tmp/c"
  frame 18 $id "$tmp/c"
fi

while read_frame; do
  if [ "$T" -eq 2 ]; then frame 3 "$ID" "$tmp/p"; continue; fi
  [ "$ID" -eq $id ] || continue
  case $T in
    32) cat "$tmp/p" ;;
    33) cat "$tmp/p" >&2 ;;
    34) code=$(sed -n 's/.*"exitCode":\([0-9]*\).*/\1/p' "$tmp/p"); exit "${code:-125}" ;;
    35) { printf 'vo-run: denied: '; cat "$tmp/p"; echo; } >&2; exit 77 ;;
    36) { printf 'vo-run: error: '; cat "$tmp/p"; echo; } >&2; exit 70 ;;
  esac
done
echo "vo-run: the channel closed before the reply" >&2
exit 71
