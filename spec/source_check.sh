#!/bin/sh
# Checks of the service's sources that no behaviour test sees.
src="$1/src"
status=0

# Debugging left in the service's sources: a scratch file under a literal path
# (a per-poll log to /tmp/cg/polls.log shipped once in consumer.c, unnoticed by
# every behaviour test). The service writes only where its configuration says.
found=$(grep -nE '"/tmp/|fopen\("' "$src"/*.c "$src"/*.h)
if [ -n "$found" ]; then
  echo "literal file paths in src/ (debugging left behind?):"
  echo "$found"
  status=1
else
  echo "src/: no literal scratch paths"
fi

# A header for every .c file (main.c has no callers), so what a file offers is
# read in one place.
missing=""
for c in "$src"/*.c; do
  name=$(basename "$c" .c)
  [ "$name" = main ] && continue
  [ -f "$src/$name.h" ] || missing="$missing $name.c"
done
if [ -n "$missing" ]; then
  echo "src/ files without a header of the same name:$missing"
  status=1
else
  echo "src/: every .c has its header"
fi

# No include cycle: a file and its header are one module, and module X depends
# on Y when X.c or X.h includes "Y.h". A cycle (batch -> emit -> consumer ->
# batch, once) means data no longer flows one way through the pipeline.
# tsort lists the modules of any loop on stderr and exits non-zero.
edges=$(for f in "$src"/*.c "$src"/*.h; do
  from=$(basename "$f" | sed 's/\.[ch]$//')
  sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)\.h".*/\1/p' "$f" |
    while read -r to; do
      [ "$to" != "$from" ] && echo "$from $to"
    done
done | sort -u)
if loops=$(echo "$edges" | tsort 2>&1 >/dev/null) && [ -z "$loops" ]; then
  echo "src/: no include cycle"
else
  echo "include cycle among src/ files; modules on a loop, as tsort finds them:"
  echo "$loops" | awk '/input contains a loop/ { if (l) print "  " l; l = ""; next }
    { sub(/^tsort: /, ""); l = l ? l " " $0 : $0 } END { if (l) print "  " l }'
  status=1
fi
exit $status
