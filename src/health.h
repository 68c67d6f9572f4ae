/*
 * health.h: what the service knows of its own state, for /-/healthz, /-/ready
 * and /-/check-up. The consumer loop and the workers report; the HTTP thread
 * reads. Thread-safe.
 */
#ifndef RTU_HEALTH_H
#define RTU_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { RTU_DEP_KAFKA, RTU_DEP_MONGODB, RTU_DEP_SCRIPTS, RTU_DEP__COUNT } rtu_dep_t;

void rtu_health_init(void);
void rtu_health_free(void);

/* The poll loop calls this on every turn; /-/healthz fails when it has not been
 * called for longer than the limit given to rtu_health_alive. */
void rtu_health_heartbeat(void);
bool rtu_health_alive(int64_t max_silence_ms);

/* detail may be NULL; it is copied. */
void rtu_health_dependency(rtu_dep_t dep, bool ok, const char *detail);

bool rtu_health_dependency_ok(rtu_dep_t dep);

/* The consumer joined its group and has had an assignment (possibly empty). */
void rtu_health_joined(bool joined);

/* Ready: joined, every dependency ok. A stopped partition does not make the
 * instance unready (the others go on); it shows in check-up. */
bool rtu_health_ready(void);

void rtu_health_partition_stopped(const char *topic, int32_t partition, int64_t offset,
                                  const char *cause);
void rtu_health_partition_resumed(const char *topic, int32_t partition);

/* The problems of the last reload that was refused (every line of the checker),
 * shown by check-up as refusedReload while the running generation goes on; n =
 * 0 clears them (a reload was loaded). */
void rtu_health_reload_refused(char *const *problems, size_t n);

/* {"status":"OK"|"KO","name":"rtu","version":...,"dependencies":{...},
 *  "stoppedPartitions":[{"topic","partition","offset","cause"}],
 *  "refusedReload":{"problems":[...]} (only after a refused reload)}, malloc'd. */
char *rtu_health_checkup_json(size_t *len, bool *ok);

#endif
