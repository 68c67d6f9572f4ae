/*
 * util.h: clocks, number and date text, and aligned allocation: small helpers
 * with no state that every stage of the pipeline uses.
 */
#ifndef RTU_UTIL_H
#define RTU_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Zeroed memory for n elements of size bytes, aligned for structs that hold a
 * bson_t: Debian's libbson aligns bson_t to 128 bytes, more than malloc gives.
 * NULL on overflow or OOM; release with free(). */
void *rtu_aligned_calloc(size_t n, size_t size);

/* Monotonic milliseconds, and wall-clock milliseconds since the epoch. */
int64_t rtu_now_mono_ms(void);
int64_t rtu_now_mono_us(void);
int64_t rtu_now_ms(void);

/* ISO-8601 UTC with milliseconds, as JavaScript's toISOString; buf >= 32 bytes. */
void rtu_iso8601(int64_t ms, char *buf, size_t size);

/* The decimal text of v in buf (NUL-terminated); returns its length. Written by
 * hand rather than with snprintf: it runs several times per message. */
size_t rtu_int_text(int64_t v, char buf[24]);

#endif
