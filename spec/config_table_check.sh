#!/bin/sh
# The README's configuration table (between <!-- config-table:begin... --> and
# <!-- config-table:end -->) must be what `rtu help config --markdown` prints:
# the table in config.c is the one source. To refresh it:
#   spec/config_table_check.sh README.md build/rtu --fix
set -eu
readme=$1 rtu=$2
gen=$(mktemp)
block=$(mktemp)
trap 'rm -f "$gen" "$block"' EXIT
"$rtu" help config --markdown > "$gen"
awk '/<!-- config-table:end/ {on=0} on {print} /<!-- config-table:begin/ {on=1}' "$readme" > "$block"
if ! grep -q '<!-- config-table:begin' "$readme" || ! grep -q '<!-- config-table:end' "$readme"; then
  echo "$readme: no <!-- config-table:begin --> / <!-- config-table:end --> markers" >&2
  exit 1
fi
if [ "${3:-}" = "--fix" ]; then
  awk -v gen="$gen" '
    /<!-- config-table:end/ {on=0}
    !on {print}
    /<!-- config-table:begin/ {on=1; while ((getline l < gen) > 0) print l}' "$readme" > "$block"
  cat "$block" > "$readme"
  exit 0
fi
if ! diff -u "$block" "$gen" >&2; then
  echo "$readme: the configuration table differs from \`rtu help config --markdown\` (- README, + generated);" >&2
  echo "  run: spec/config_table_check.sh $readme $rtu --fix" >&2
  exit 1
fi
