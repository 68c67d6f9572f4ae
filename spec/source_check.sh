#!/bin/sh
# Debugging left in the service's sources: a scratch file under a literal path
# (a per-poll log to /tmp/cg/polls.log shipped once in consumer.c, unnoticed by
# every behaviour test). The service writes only where its configuration says.
src="$1/src"
found=$(grep -nE '"/tmp/|fopen\("' "$src"/*.c "$src"/*.h)
if [ -n "$found" ]; then
  echo "literal file paths in src/ (debugging left behind?):"
  echo "$found"
  exit 1
fi
echo "src/: no literal scratch paths"
