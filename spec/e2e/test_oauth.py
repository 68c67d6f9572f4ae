"""End-to-end: KAFKA_SASL_MECHANISM=oauthbearer (issue 18 item 4).

The real rtu against a loopback token endpoint (http.server in this process):

- it asks for a token with the password grant: POST to KAFKA_SASL_OAUTH_BASE_URL
  + KAFKA_SASL_OAUTH_PATH, form fields grant_type=password, username and
  password (the SASL ones), the client id and secret in basic authentication;
  one token for all the Kafka clients (consumer and producers), and each logs
  that it got it;
- the development Kafka (librdkafka's mock cluster) cannot authenticate: rtu
  says so in its log, keeps running, answers /-/healthz, and exits 0 on SIGTERM;
- a failing endpoint (HTTP 500) gives an error line naming the endpoint's URL,
  never the password, asked again after librdkafka's 10 s, and rtu goes on;
- an https endpoint is trusted through CA_CERT_PATH, and refused without it;
- an endpoint that does not answer: SIGTERM during the request still ends rtu
  with code 0 within 10 s, and the timeout is logged with the URL;
- `rtu check` names a missing KAFKA_SASL_OAUTH_BASE_URL.
"""

import base64
import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for  # noqa: E402

TOPICS = {"oauth.ok": 1, "oauth.fail": 1, "oauth.hang": 1, "oauth.check": 1,
          "oauth.tls": 1, "oauth.tls-noca": 1}
MAP_TABLE = {"pr_items": {"destination": "items", "conversion": {"ID": {"fieldName": "id"}},
                          "fieldsInKey": ["id"]}}
PASSWORD = "p&ss w=rd+%"
SECRET = "s3cr:et"

S, R = {}, {}


class TokenEndpoint:
    """POST <path>: the token answer, or HTTP 500 for paths ending in /fail, or
    nothing for 30 s for paths ending in /hang. Every request is recorded (path,
    headers, decoded form fields, time)."""

    def __init__(self, tls=None):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n).decode("utf-8")
                with outer.lock:
                    outer.requests.append({
                        "path": self.path, "time": time.monotonic(),
                        "content_type": self.headers.get("Content-Type", ""),
                        "auth": self.headers.get("Authorization", ""),
                        "form": dict(urllib.parse.parse_qsl(body, keep_blank_values=True)),
                    })
                if self.path.endswith("/hang"):
                    time.sleep(30)
                    return
                if self.path.endswith("/fail"):
                    status, answer = 500, {"error": "server_error"}
                else:
                    status, answer = 200, {"access_token": "tok-%d" % len(outer.requests),
                                           "token_type": "Bearer", "expires_in": 3600}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def seen(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


EP = {}


def oauth_env(path, ep="ep", **more):
    env = {"KAFKA_SASL_MECHANISM": "oauthbearer", "KAFKA_SASL_USERNAME": "svc-rtu",
           "KAFKA_SASL_PASSWORD": PASSWORD, "KAFKA_SASL_OAUTH_BASE_URL": EP[ep].url + "/",
           "KAFKA_SASL_OAUTH_PATH": path, "KAFKA_SASL_OAUTH_CLIENT_ID": "rtu-client",
           "KAFKA_SASL_OAUTH_CLIENT_SECRET": SECRET}
    env.update(more)
    return env


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    EP["ep"] = TokenEndpoint()
    S["ok"] = c.scenario("oauth-ok", {"oauth.ok": "pr_items"}, MAP_TABLE,
                         env=oauth_env("/realms/fd/token", DEAD_LETTER_TOPIC="oauth.dead"))
    S["fail"] = c.scenario("oauth-fail", {"oauth.fail": "pr_items"}, MAP_TABLE,
                           env=oauth_env("/realms/fd/fail"))
    S["hang"] = c.scenario("oauth-hang", {"oauth.hang": "pr_items"}, MAP_TABLE,
                           env=oauth_env("/realms/fd/hang"))
    # A self-signed certificate for 127.0.0.1: trusted through CA_CERT_PATH only.
    cert, key = os.path.join(c.tmp, "idp.crt"), os.path.join(c.tmp, "idp.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    EP["tls"] = TokenEndpoint(tls=(cert, key))
    S["tls"] = c.scenario("oauth-tls", {"oauth.tls": "pr_items"}, MAP_TABLE,
                          env=oauth_env("/tls/token", ep="tls", CA_CERT_PATH=cert))
    S["tls-noca"] = c.scenario("oauth-tls-noca", {"oauth.tls-noca": "pr_items"}, MAP_TABLE,
                               env=oauth_env("/noca/token", ep="tls"))
    R["ok"] = S["ok"].start()
    R["fail"] = S["fail"].start()
    R["hang"] = S["hang"].start()
    R["tls"] = S["tls"].start()
    R["tls-noca"] = S["tls-noca"].start()


def tearDownModule():
    harness.stop_module()
    for ep in EP.values():
        ep.close()


class Token(E2ETestCase):
    @classmethod
    def tearDownClass(cls):
        R["ok"].stop()

    def test_password_grant_fields(self):
        ep = EP["ep"]
        reqs = wait_for(lambda: ep.seen("/realms/fd/token"), 20, "a token request", R["ok"])
        for r in reqs:
            self.assertEqual(r["form"], {"grant_type": "password", "username": "svc-rtu",
                                         "password": PASSWORD})
            self.assertIn("application/x-www-form-urlencoded", r["content_type"])
            self.assertEqual(r["auth"], "Basic " + base64.b64encode(
                ("rtu-client:" + SECRET).encode()).decode())
        got = wait_for(lambda: [l for l in R["ok"].log_lines()
                                if l.get("msg") == "Kafka OAuth token obtained"][1:] and
                       [l for l in R["ok"].log_lines() if l.get("msg") == "Kafka OAuth token obtained"],
                       20, "two 'token obtained' lines", R["ok"])
        # The consumer and the dead-letter producer share the token.
        self.assertEqual(sorted(l["fromEndpoint"] for l in got), [False, True])
        for l in got:
            # 3600 s of life less the default 60 s margin, renewed at 80% of that.
            self.assertLessEqual(int(l["expiresInMs"]), 3600000)
            self.assertGreater(int(l["expiresInMs"]), 3590000)
            self.assertAlmostEqual(int(l["renewedInMs"]), (3600000 - 60000) * 0.8, delta=10000)
        self.assertEqual(len(ep.seen("/realms/fd/token")), 1, "one request for both clients")

    def test_runs_without_a_broker_that_authenticates(self):
        rtu = R["ok"]
        wait_for(lambda: len(EP["ep"].seen("/realms/fd/token")) >= 1, 20, "a token request", rtu)
        time.sleep(3)
        self.assertTrue(rtu.alive(), "rtu exited")
        status, _, _ = rtu.http("/-/healthz")
        self.assertEqual(status, 200)
        self.assertEqual([l for l in rtu.log_lines() if PASSWORD in json.dumps(l)], [])
        # The SASL username and password go to the token endpoint, not to librdkafka.
        self.assertEqual([l for l in rtu.log_lines() if l.get("facility") == "CONFWARN"], [])


class FailingEndpoint(E2ETestCase):
    @classmethod
    def tearDownClass(cls):
        R["fail"].stop()

    def test_error_names_the_url(self):
        rtu = R["fail"]
        url = EP["ep"].url + "/realms/fd/fail"
        lines = rtu.wait_log(lambda l: l.get("msg", "").startswith("cannot get a Kafka OAuth token"),
                             20, "the token failure line")
        self.assertEqual(lines[0]["level"], 50)
        self.assertIn(url, lines[0]["cause"])
        self.assertIn("HTTP 500", lines[0]["cause"])
        self.assertEqual([l for l in rtu.log_lines() if PASSWORD in json.dumps(l)], [])

    def test_asked_again_and_still_running(self):
        rtu = R["fail"]
        first = wait_for(lambda: EP["ep"].seen("/realms/fd/fail"), 20, "a token request", rtu)
        again = wait_for(lambda: [r for r in EP["ep"].seen("/realms/fd/fail")
                                  if r["time"] > first[0]["time"] + 5], 20, "a second request", rtu)
        self.assertGreaterEqual(again[0]["time"] - first[0]["time"], 9)
        self.assertTrue(rtu.alive(), "rtu exited")


class HangingEndpoint(E2ETestCase):
    def test_sigterm_while_asking(self):
        """A token request in flight holds librdkafka's destroy back until its
        5 s timeout: SIGTERM still ends rtu, with code 0, within 10 s."""
        rtu = R["hang"]
        wait_for(lambda: EP["ep"].seen("/realms/fd/hang"), 20, "a token request", rtu)
        took = rtu.stop()
        self.assertLess(took, 10)
        lines = rtu.find_logs(lambda l: l.get("msg", "").startswith("cannot get a Kafka OAuth token"))
        self.assertTrue(lines, "the timeout is logged")
        self.assertIn(EP["ep"].url + "/realms/fd/hang", lines[0]["cause"])
        self.assertIn("timed out", lines[0]["cause"])


class Tls(E2ETestCase):
    """An https endpoint is verified: against CA_CERT_PATH (the brokers' CA)
    added to the system's, and refused when its certificate is unknown."""

    @classmethod
    def tearDownClass(cls):
        R["tls"].stop()
        R["tls-noca"].stop()

    def test_trusted_through_ca_cert_path(self):
        lines = R["tls"].wait_log(lambda l: l.get("msg") == "Kafka OAuth token obtained", 20,
                                  "the token over TLS")
        self.assertTrue(lines[0]["fromEndpoint"])
        self.assertEqual(EP["tls"].seen("/tls/token")[0]["form"]["grant_type"], "password")

    def test_unknown_certificate_refused(self):
        lines = R["tls-noca"].wait_log(
            lambda l: l.get("msg", "").startswith("cannot get a Kafka OAuth token"), 20,
            "the certificate failure line")
        self.assertIn(EP["tls"].url + "/noca/token", lines[0]["cause"])
        self.assertIn("certificate", lines[0]["cause"])
        self.assertEqual(EP["tls"].seen("/noca/token"), [], "no request without trust")


class Check(E2ETestCase):
    def test_missing_base_url(self):
        sc = harness.cluster().scenario("oauth-check", {"oauth.check": "pr_items"}, MAP_TABLE,
                                        env=oauth_env("/token"))
        del sc.env["KAFKA_SASL_OAUTH_BASE_URL"]
        rc, out, err = sc.check()
        self.assertNotEqual(rc, 0)
        self.assertTrue([l for l in out + err if "KAFKA_SASL_OAUTH_BASE_URL" in l], out + err)


if __name__ == "__main__":
    harness.main()
