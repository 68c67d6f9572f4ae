#!/bin/sh
# rtu test on its own cases: the true ones pass, each deliberately wrong one
# fails with the difference it was written for, --explain shows the three hops
# of the food-delivery path dish -> order line -> order -> customer, a manual
# strategy's db calls with their results, and a path
# that does not exist is a configuration error. Usage: check.sh RTU_BINARY
set -u
rtu=$1
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail=0

expect() { # expect WHAT LINE: the output has LINE
  if ! grep -qxF -- "$2" "$out"; then
    echo "FAILED: $1: no line: $2"; fail=1
  fi
}

"$rtu" test "$here/true" >"$out" 2>&1; rc=$?
cat "$out"
[ $rc -eq 0 ] || { echo "FAILED: true cases: exit $rc, expected 0"; fail=1; }
expect "true cases" "3/3 passed"

"$rtu" test "$here/wrong" >"$out" 2>&1; rc=$?
cat "$out"
[ $rc -eq 1 ] || { echo "FAILED: wrong cases: exit $rc, expected 1"; fail=1; }
expect "wrong field" "    NAME: expected \"Pasta\", got \"Pizza\""
expect "missing document" "  pr_dishes: missing document {\"ID_DISH\":\"dish-555\"}"
expect "missing change" "  projection change missing: {\"type\":\"sv_restaurants\",\"identifier\":{\"ID_RESTAURANT\":\"rest-002\"}}"
expect "unexpected change" "  projection change unexpected: {\"type\":\"sv_restaurants\",\"identifier\":{\"ID_RESTAURANT\":\"rest-001\"}}"
expect "missing message" "  prUpdates: message missing: {\"value\":{\"operationType\":\"DELETE\"}}"
grep -q '^  pr_dishes: unexpected document {"_id":"[0-9a-f]*","ID_DISH":"dish-101","__STATE__":"PUBLIC"}$' "$out" ||
  { echo "FAILED: unexpected document not reported"; fail=1; }
expect "wrong cases" "0/4 passed"
[ "$(grep -c '^FAIL ' "$out")" -eq 4 ] || { echo "FAILED: not 4 FAIL lines"; fail=1; }

"$rtu" test --explain "$here/true/dish.test.json" >"$out" 2>&1; rc=$?
cat "$out"
[ $rc -eq 0 ] || { echo "FAILED: explain: exit $rc"; fail=1; }
# the three hops, in order, each with the query sent and the documents found
# (other paths' lookups may come between them)
line_of() { grep -nF -- "$1" "$out" | head -1 | cut -d: -f1; }
h1=$(line_of '    lookup pr_orders_dishes {"$or":[{"ID_DISH":"dish-101"},{"ID_DISH_SUBSTITUTE":"dish-101"}],"__STATE__":"PUBLIC"}')
h2=$(line_of '    lookup pr_orders {"ID_ORDER":{"$in":[7001,7002]},"__STATE__":"PUBLIC"}')
h3=$(line_of '    lookup pr_registry {"ID_USER":{"$in":["user-1","user-2"]},"__STATE__":"PUBLIC"}')
if [ -z "$h1" ] || [ -z "$h2" ] || [ -z "$h3" ] || [ "$h1" -ge "$h2" ] || [ "$h2" -ge "$h3" ]; then
  echo "FAILED: explain: the three hops (lines '$h1' '$h2' '$h3')"; fail=1
fi
expect "explain: found" '      {"ID_ORDER":7002,"ID_USER_ORDER":"user-2"}'
expect "explain: before image" '    [0] before {"ID_DISH":"dish-101"}'
expect "explain: after image" '    [1] after  {"ID_DISH":"dish-101"}'
expect "explain: identifiers of the before image" '    [0] identifiers: sv_restaurants {"ID_RESTAURANT":"rest-001"}'
expect "explain: identifiers of the after image" '    [1] identifiers: sv_restaurants {"ID_RESTAURANT":"rest-002"}'
expect "explain: identifier" '    [0] identifiers: sv_customers {"ID_USER":"user-1"}, sv_customers {"ID_USER":"user-2"}, sv_restaurants {"ID_RESTAURANT":"rest-001"}'

# a hand-written strategy (manual mode, its own env file): each db call and its result
"$rtu" test --explain "$here/manual" >"$out" 2>&1; rc=$?
cat "$out"
[ $rc -eq 0 ] || { echo "FAILED: manual: exit $rc"; fail=1; }
grep -qF '    lookup pr_orders {"ID_ORDER":7001,"__STATE__":"PUBLIC"} options {"limit":1} -> 1 document(s)' "$out" ||
  { echo "FAILED: manual: the first db call"; fail=1; }
grep -qF '      {"ID_USER":"user-1","NAME":"Ada","__STATE__":"PUBLIC","_id":' "$out" ||
  { echo "FAILED: manual: the second db call's result"; fail=1; }
expect "manual: identifier" '    [0] identifiers: sv_customers {"ID_USER":"user-1"}'

"$rtu" test "$here/no-such-folder" >"$out" 2>&1; rc=$?
[ $rc -eq 2 ] || { echo "FAILED: missing path: exit $rc, expected 2"; fail=1; }

[ $fail -eq 0 ] && echo "rtu test: all checks passed"
exit $fail
