#!/bin/sh
# rtu-produce's reading and writing of JSON (it reads with rtu's own reader and
# writes key and value objects back from the BSON): members in their order, a
# double still a double (2.0, not 2), -0.0 kept, strings escaped, integers with
# all their digits, headers; and a line that rtu's reader refuses stops it.
# Usage: produce_check.sh TOOLS_DIR (run under TOOLS_DIR/with-servers --topic t:1).
set -eu
tools="$1"
in='{"topic":"t","key":"k","value":{"b":2.0,"a":[-0.0,0.1,"q\"t\\\\",null,true,-9223372036854775808]},"headers":{"h":"v","n":null}}'
want='k {"b":2.0,"a":[-0.0,0.1,"q\"t\\\\",null,true,-9223372036854775808]} h=v,n=NULL'
printf '%s\n' "$in" | "$tools/rtu-produce" >/dev/null
got=$(kcat -b "$KAFKA_BROKERS" -C -t t -e -q -f '%k %s %h')
if [ "$got" != "$want" ]; then
  printf 'got:  %s\nwant: %s\n' "$got" "$want"
  exit 1
fi
if printf '%s\n' '{"topic":"t","value":NaN}' | "$tools/rtu-produce" 2>/dev/null; then
  echo "rtu-produce took NaN"
  exit 1
fi
echo "rtu-produce: JSON read and written as rtu reads it"
