/*
 * mongo_server.h: the MongoDB test server (tools/mongo-test-server.py, or
 * $RTU_TOOLS_DIR's) for the C unit tests that need one: started on a free
 * loopback port, killed at exit or on a fatal signal, never outliving the test.
 */
#ifndef RTU_TEST_MONGO_SERVER_H
#define RTU_TEST_MONGO_SERVER_H

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t server_pid = -1;
static char port_file[256];

static __attribute__((unused)) void mongo_server_stop(void) {
  if (server_pid <= 0) return;
  kill(server_pid, SIGTERM);
  for (int i = 0; i < 100; i++) {
    if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
      server_pid = -1;
      break;
    }
    usleep(50000);
  }
  if (server_pid > 0) {
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = -1;
  }
  unlink(port_file);
}

static void on_signal(int sig) {
  mongo_server_stop();
  signal(sig, SIG_DFL);
  raise(sig);
}

static __attribute__((unused)) bool mongo_server_start(const char *tag, char *url, size_t size) {
  const char *tools = getenv("RTU_TOOLS_DIR");
  char script[4096];
  if (tools && *tools) {
    snprintf(script, sizeof script, "%s/mongo-test-server.py", tools);
  } else {
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(script, sizeof script, "%s/../tools/mongo-test-server.py", exe);
  }
  snprintf(port_file, sizeof port_file, "/tmp/rtu-unit-%s-port-%d", tag, (int)getpid());
  unlink(port_file);
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  server_pid = fork();
  if (server_pid < 0) return false;
  if (server_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test, whatever kills it */
    if (getppid() != parent) _exit(1);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execl("/usr/bin/python3", "python3", script, "--port", "0", "--port-file", port_file,
          (char *)NULL);
    _exit(127);
  }
  atexit(mongo_server_stop);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGABRT, on_signal);
  for (int i = 0; i < 600; i++) { /* 30 s */
    FILE *f = fopen(port_file, "r");
    int port = 0;
    if (f) {
      if (fscanf(f, "%d", &port) != 1) port = 0;
      fclose(f);
    }
    if (port > 0) {
      snprintf(url, size, "mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=10000", port);
      return true;
    }
    if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
      server_pid = -1;
      fprintf(stderr, "the MongoDB test server %s exited at start\n", script);
      return false;
    }
    usleep(50000);
  }
  fprintf(stderr, "the MongoDB test server did not write %s within 30 s\n", port_file);
  return false;
}

#endif
