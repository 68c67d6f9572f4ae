"""Deployment files: the Dockerfile and examples/kubernetes, checked without Docker or
a cluster (neither is available in CI). The Dockerfile builds from Debian 12 slim
with the README's own build commands and Debian packages tools/install-deps knows,
its runtime stage installs a package for every library the built rtu links, and it
runs `rtu run` as a non-root user. The Kubernetes manifests parse as YAML and hold
what a Deployment needs: a selector matching its pods, probes on the routes of the
service rtu replaces, config maps mounted at the folders the *_FOLDER variables
name (the Console's folders), only documented variables, a non-root user and a
grace period for the SIGTERM sequence. And the installed tree (`cmake --install`
into a scratch folder, as the image's build stage does) passes `rtu check` on the
example with the Lua runtime installed beside it, not the source tree's.

Environment: RTU_SOURCE_DIR (default: the repository holding this file),
RTU_BUILD_DIR (default: $RTU_SOURCE_DIR/build), a configured and built tree."""

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

import yaml

SRC = os.environ.get("RTU_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("RTU_BUILD_DIR") or os.path.join(SRC, "build")
K8S = os.path.join(SRC, "examples", "kubernetes")

# Where the Fast Data Console mounts the Real-Time Updater's config maps (the
# reference's sections 0, 3.1, 3.3, 5.2 and 7): a drop-in keeps these folders.
CONSOLE_FOLDERS = {
    "MAP_TABLE_FOLDER": "/home/node/app/configurations/mapTableFolder",
    "CAST_FUNCTIONS_FOLDER": "/home/node/app/configurations/castFunctionsFolder",
    "STRATEGIES_FOLDER": "/home/node/app/configurations/strategies",
    "KAFKA_ADAPTER_FOLDER": "/home/node/app/configurations/kafkaAdapterFolder",
    "KAFKA_PROJECTION_UPDATES_FOLDER": "/home/node/app/kafkaProjectionUpdates",
}
# Libraries every Debian 12 image has, and the sanitizers' runtime of a test build.
BASE_LIBS = re.compile(r"^(libc|libm|libpthread|libdl|librt|ld-linux.*|libgcc_s|libstdc\+\+"
                       r"|libasan|libubsan|liblsan|libtsan)\.so")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def dockerfile_stages():
    """The Dockerfile as stages: [{"from": image, "steps": [(instruction, args)]}],
    continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", read(os.path.join(SRC, "Dockerfile")))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr, args = instr.upper(), " ".join(args.split())
        if instr == "FROM":
            stages.append({"from": args.split()[0], "steps": []})
        else:
            stages[-1]["steps"].append((instr, args))
    return stages


def run_commands(stage):
    """The shell commands of a stage's RUN steps, split at &&."""
    return [c.strip() for instr, args in stage["steps"] if instr == "RUN"
            for c in args.split("&&")]


def apt_packages(stage):
    pkgs = []
    for c in run_commands(stage):
        words = shlex.split(c)
        if "apt-get" in words and "install" in words:
            pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def install_deps_packages():
    m = re.search(r"pkgs=\((.*?)\)", read(os.path.join(SRC, "tools", "install-deps")), re.S)
    return m.group(1).split()


def readme_code_lines():
    lines = set()
    for line in read(os.path.join(SRC, "README.md")).splitlines():
        if line.startswith("    "):
            lines.add(" ".join(line.split("#")[0].split()))
    return lines


def k8s_documents():
    docs = []
    for name in sorted(os.listdir(K8S)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(K8S, name), encoding="utf-8") as f:
                docs += [(name, d) for d in yaml.safe_load_all(f) if d is not None]
    return docs


class Dockerfile(unittest.TestCase):
    def setUp(self):
        self.stages = dockerfile_stages()
        self.build, self.final = self.stages[0], self.stages[-1]

    def test_debian_12_slim(self):
        self.assertGreaterEqual(len(self.stages), 2, "a build stage and a runtime stage")
        for s in self.stages:
            self.assertIn(s["from"], ("debian:12-slim", "debian:bookworm-slim"), s["from"])

    def test_build_steps_are_the_readmes(self):
        cmake = [re.sub(r"^DESTDIR=\S+\s+", "", c) for c in run_commands(self.build)
                 if re.match(r"^(DESTDIR=\S+\s+)?cmake ", c)]
        self.assertEqual([c.split()[1] for c in cmake], ["-S", "--build", "--install"], cmake)
        documented = readme_code_lines()
        for c in cmake:
            self.assertTrue(c in documented, "not a README command line: " + c)

    def test_build_packages_are_install_deps_ones(self):
        pkgs = apt_packages(self.build)
        self.assertTrue(pkgs)
        self.assertEqual(sorted(set(pkgs) - set(install_deps_packages())), [],
                         "packages the README's install-deps does not install")

    def test_runtime_packages_cover_linked_libraries(self):
        rtu = os.path.join(BUILD, "rtu")
        self.assertTrue(os.path.exists(rtu), "build rtu first: " + rtu)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                            subprocess.run(["readelf", "-d", rtu], check=True,
                                           capture_output=True, text=True).stdout)
        paths = dict(re.findall(r"^\s*(\S+) => (\S+)",
                                subprocess.run(["ldd", rtu], check=True, capture_output=True,
                                               text=True).stdout, re.M))
        runtime = set(apt_packages(self.final))
        checked = 0
        for lib in needed:
            if BASE_LIBS.match(lib):
                continue
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(paths[lib])], check=True,
                                   capture_output=True, text=True).stdout.split(":")[0]
            self.assertIn(owner, runtime, "%s (from %s) is not installed in the image" % (lib, owner))
            checked += 1
        self.assertGreaterEqual(checked, 5, needed)  # librdkafka, libmongoc, libbson, Lua, MHD

    def test_runs_rtu_run_as_non_root(self):
        steps = dict(self.final["steps"])
        user = steps.get("USER", "root").split(":")[0]
        self.assertNotIn(user, ("root", "0"))
        self.assertEqual(json.loads(steps["ENTRYPOINT"]), ["/usr/local/bin/rtu"])
        self.assertEqual(json.loads(steps["CMD"]), ["run"])
        copies = [a for i, a in self.final["steps"] if i == "COPY"]
        self.assertTrue(any(a.endswith("/usr/local /usr/local") for a in copies), copies)


class Kubernetes(unittest.TestCase):
    def setUp(self):
        docs = k8s_documents()
        deployments = [d for _, d in docs if d.get("kind") == "Deployment"]
        self.assertEqual(len(deployments), 1)
        self.d = deployments[0]
        self.pod = self.d["spec"]["template"]["spec"]
        self.c = self.pod["containers"][0]
        self.env = {e["name"]: e for e in self.c.get("env", [])}

    def value(self, name):
        return self.env[name]["value"]

    def test_a_deployment(self):
        self.assertEqual(self.d["apiVersion"], "apps/v1")
        self.assertTrue(self.d["metadata"]["name"])
        labels = self.d["spec"]["template"]["metadata"]["labels"]
        for k, v in self.d["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(labels.get(k), v, "the selector must match the pods")
        self.assertTrue(self.c["image"])
        self.assertEqual(self.c.get("args", ["run"]), ["run"])

    def test_probes_on_the_reference_routes(self):
        port = int(self.value("HTTP_PORT"))
        ports = {p.get("name"): p["containerPort"] for p in self.c["ports"]}
        self.assertIn(port, ports.values())
        for probe, path in (("livenessProbe", "/-/healthz"), ("readinessProbe", "/-/ready")):
            get = self.c[probe]["httpGet"]
            self.assertEqual(get["path"], path)
            self.assertEqual(ports.get(get["port"], get["port"]), port, probe)

    def test_grace_period_covers_the_sigterm_sequence(self):
        # rtu exits within about 10 s; a MongoDB command in flight may take its 30 s.
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], 30)

    def test_non_root(self):
        sc = self.pod.get("securityContext", {})
        self.assertTrue(sc.get("runAsNonRoot"))
        self.assertNotEqual(sc.get("runAsUser", 0), 0)

    def test_config_maps_mounted_at_the_folders(self):
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        mounts = {m["mountPath"]: m for m in self.c["volumeMounts"]}
        folders = [n for n in self.env if n.endswith("_FOLDER")]
        self.assertIn("MAP_TABLE_FOLDER", folders)
        for name in folders:
            path = self.value(name)
            self.assertIn(path, mounts, "%s=%s is not mounted" % (name, path))
            self.assertIn("configMap", volumes[mounts[path]["name"]], name)
            if name in CONSOLE_FOLDERS:
                self.assertEqual(path, CONSOLE_FOLDERS[name], "the Console's folder for " + name)

    def test_config_maps_made_from_the_example(self):
        made = dict(re.findall(r"kubectl create configmap (\S+) --from-file=(\S+)",
                               read(os.path.join(K8S, "README.md"))))
        for v in self.pod["volumes"]:
            name = v["configMap"]["name"]
            self.assertIn(name, made, "README.md does not say how to make " + name)
            self.assertTrue(os.path.isdir(os.path.join(SRC, made[name])), made[name])

    def test_only_documented_variables(self):
        readme = read(os.path.join(SRC, "README.md"))
        for name in self.env:
            self.assertTrue("`%s`" % name in readme, name + " is not in the README's configuration")

    def test_the_example_systems_topics(self):
        example = read(os.path.join(SRC, "examples", "food-delivery", "env"))
        topic_map = re.search(r"^INVARIANT_TOPIC_MAP='(.*)'$", example, re.M).group(1)
        self.assertEqual(json.loads(self.value("INVARIANT_TOPIC_MAP")), json.loads(topic_map))


class InstalledTree(unittest.TestCase):
    """cmake --install into a scratch DESTDIR, as the image's build stage does."""

    @classmethod
    def setUpClass(cls):
        cls.dest = tempfile.mkdtemp(prefix="rtu-install-")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", "/usr/local"], check=True,
                       env=dict(os.environ, DESTDIR=cls.dest), capture_output=True)
        cls.bin = os.path.join(cls.dest, "usr", "local", "bin", "rtu")
        cls.lua = os.path.join(cls.dest, "usr", "local", "share", "rtu", "lua")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def check(self):
        env = {k: v for k, v in os.environ.items() if k != "LUA_RUNTIME_FOLDER"}
        env.update(EXAMPLE_DIR=os.path.join(SRC, "examples", "food-delivery"),
                   KAFKA_BROKERS="127.0.0.1:1", MONGODB_URL="mongodb://127.0.0.1:1")
        return subprocess.run(["sh", "-c", 'set -a; . "$EXAMPLE_DIR/env"; set +a; exec "$0" check',
                               self.bin], env=env, capture_output=True, text=True, timeout=60)

    def test_binary_and_lua_runtime_together(self):
        self.assertTrue(os.access(self.bin, os.X_OK))
        self.assertTrue(os.path.isfile(os.path.join(self.lua, "rtu", "pipeline.lua")))
        self.assertTrue(os.path.isdir(os.path.join(self.lua, "rtu", "adapters")))

    def test_check_passes_with_its_own_runtime(self):
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("configuration is valid", r.stdout)
        # The installed runtime is the one loaded: broken there, the check fails.
        pipeline = os.path.join(self.lua, "rtu", "pipeline.lua")
        saved = read(pipeline)
        try:
            with open(pipeline, "a", encoding="utf-8") as f:
                f.write("\nthis is not Lua\n")
            r = self.check()
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("pipeline", r.stderr)
        finally:
            with open(pipeline, "w", encoding="utf-8") as f:
                f.write(saved)

    def test_version(self):
        r = subprocess.run([self.bin, "version"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^rtu \d+\.\d+\.\d+ \(librdkafka")


if __name__ == "__main__":
    unittest.main(verbosity=2)
