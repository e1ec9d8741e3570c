"""The Debian-built runtimes of runtimes/ (`make runtimes-build`, cached by recipe content),
installed through rnx from the local registry the build wrote, then used by jobs: the design
document's examples, on a sandbox whose host languages the jobs must not see.

The archives come from $JOBLET_RUNTIME_CACHE (default /var/cache/joblet-runtimes); `make slow`
builds what is missing first.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import rnx

CACHE = Path(os.environ.get("JOBLET_RUNTIME_CACHE", "/var/cache/joblet-runtimes"))
REGISTRY = CACHE / "registry.json"
BUILT = ("python-3.11", "python-3.11-ml", "java-17", "java-21", "node-18")


@pytest.fixture(scope="module")
def installed() -> Iterator[dict[str, dict[str, object]]]:
    """Each built runtime removed if there, then installed from the registry (the real path)."""
    if not REGISTRY.exists():
        pytest.fail(f"no {REGISTRY}: run `make runtimes-build` (make slow does)", pytrace=False)
    index = json.loads(REGISTRY.read_text())["runtimes"]
    missing = [n for n in BUILT if n not in index]
    assert not missing, f"not built: {missing}; run `make runtimes-build`"
    infos = {}
    for name in BUILT:
        rnx("runtime", "remove", name)
        result = rnx("runtime", "install", name, "--registry", str(REGISTRY))
        assert result.returncode == 0, result.stderr
        infos[name] = json.loads(rnx("--json", "runtime", "info", name).stdout)
    yield infos


def job(*args: str) -> tuple[int, str, str]:
    result = rnx("job", "run", *args)
    return result.returncode, result.stdout, result.stderr


def pypi_version(info: dict[str, object], package: str) -> str:
    packages = info["packages"]
    assert isinstance(packages, list)
    return str(next(p.split()[1] for p in packages if p.startswith(f"pypi:{package} ")))


def test_runtime_list_shows_the_built_runtimes(installed: dict[str, dict[str, object]]) -> None:
    listed = json.loads(rnx("--json", "runtime", "list").stdout)
    assert set(BUILT) <= {r["name"] for r in listed["runtimes"]}


def test_pandas_and_sklearn_inside_the_job(installed: dict[str, dict[str, object]]) -> None:
    code, out, err = job(
        "--runtime=python-3.11-ml",
        "--",
        "python",
        "-c",
        "import pandas, sklearn; print(pandas.__version__)",
    )
    assert code == 0, err
    assert out.strip() == pypi_version(installed["python-3.11-ml"], "pandas")
    # The sandbox's own python has no pandas: the job's came from the runtime.
    host = rnx("job", "run", "--", "python3", "-c", "import pandas")
    assert host.returncode == 1 and "No module named 'pandas'" in host.stdout


def test_data_analysis_example(installed: dict[str, dict[str, object]], tmp_path: Path) -> None:
    """The design document's first example: pandas reads an uploaded CSV and describes it; then
    a model fitted with scikit-learn is saved with joblib."""
    rows = ["x,y"] + [f"{i / 10:.1f},{i % 2}" for i in range(200)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    script = (
        "import pandas as pd, joblib\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "data = pd.read_csv('data.csv')\n"
        "print(f'Dataset shape: {data.shape}')\n"
        "print(data.describe())\n"
        "model = RandomForestClassifier(n_estimators=5).fit(data[['x']], data['y'])\n"
        "joblib.dump(model, 'model.pkl'); print('model saved')\n"
    )
    code, out, err = job(
        "--runtime=python-3.11-ml",
        f"--upload={tmp_path / 'data.csv'}",
        "--max-memory=2G",
        "--",
        "python",
        "-c",
        script,
    )
    assert code == 0, out + err
    assert "Dataset shape: (200, 2)" in out
    assert "count  200.000000" in out
    assert "mean     9.950000    0.500000" in out  # x is 0.0 .. 19.9, y half ones
    assert out.rstrip().endswith("model saved")


def test_the_jobs_interpreter_is_the_runtimes(installed: dict[str, dict[str, object]]) -> None:
    code, out, err = job(
        "--runtime=python-3.11-ml",
        "--",
        "python",
        "-c",
        "import os, sys, sysconfig; print(sys.executable); print(os.path.realpath(sys.executable));"
        "print(sys.prefix); print(os.path.exists('/usr/bin/busctl'))",
    )
    assert code == 0, err
    assert out.splitlines() == [
        "/opt/ml-venv/bin/python",
        "/usr/bin/python3.11",
        "/opt/ml-venv",
        "False",
    ]
    # The host's /usr has systemd's busctl (`make deps` installs systemd); the runtime's has none.
    assert shutil.which("busctl") == "/usr/bin/busctl", "the host has busctl; the job must not"
    # PyYAML is in the host's Debian python (a job without a runtime imports it), not in the job's.
    assert rnx("job", "run", "--", "python3", "-c", "import yaml").returncode == 0
    code, out, _ = job("--runtime=python-3.11-ml", "--", "python", "-c", "import yaml")
    assert code == 1 and "No module named 'yaml'" in out


def test_min_memory_of_the_ml_runtime(installed: dict[str, dict[str, object]]) -> None:
    code, _, err = job("--runtime=python-3.11-ml", "--max-memory=256M", "--", "python", "-V")
    assert code == 2
    assert "256M is below what runtime python-3.11-ml needs: min_memory 512M" in err


def test_java_17_compiles_and_runs_a_java_file(installed: dict[str, dict[str, object]]) -> None:
    source = (
        "public class Hello { public static void main(String[] a) {"
        ' System.out.println("Hello from Java " + System.getProperty("java.version")); } }'
    )
    code, out, err = job(
        "--runtime=java:17",
        "--",
        "bash",
        "-c",
        f"cat > Hello.java <<'EOF'\n{source}\nEOF\njavac Hello.java && java Hello",
    )
    assert code == 0, out + err
    assert out.startswith("Hello from Java 17.")
    code, out, err = job("--runtime=java:17", "--", "java", "-version")
    assert code == 0, err
    assert 'openjdk version "17.' in out  # java -version writes to stderr: the job's log


def test_java_21_beside_17_on_a_newer_libc(installed: dict[str, dict[str, object]]) -> None:
    """Debian 13's JDK on this Debian 12 host: the runtime brings its own, newer libc."""
    source = (
        "public class V { public static void main(String[] a) throws Exception {"
        ' Thread t = Thread.ofVirtual().start(() -> System.out.println("virtual " +'
        " Thread.currentThread().isVirtual())); t.join(); } }"
    )
    code, out, err = job(
        "--runtime=java:21",
        "--",
        "bash",
        "-c",
        f"cat > V.java <<'EOF'\n{source}\nEOF\njavac V.java && java V && ldd --version | head -1",
    )
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "virtual true"
    job_glibc = lines[1].split()[-1]
    host_glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]  # type: ignore[union-attr]
    assert tuple(map(int, job_glibc.split("."))) > tuple(map(int, host_glibc.split(".")))


def test_node_18_runs_a_script(installed: dict[str, dict[str, object]]) -> None:
    code, out, err = job(
        "--runtime=node-18",
        "--",
        "sh",
        "-c",
        "printf 'const os = require(\"os\");\\nconsole.log(process.version, os.arch());\\n'"
        " > app.js && node app.js",
    )
    assert code == 0, out + err
    assert out.startswith("v18.")


def test_smoke_tests_pass(installed: dict[str, dict[str, object]]) -> None:
    for name in BUILT:
        result = rnx("runtime", "test", name)
        assert result.returncode == 0, (name, result.stdout, result.stderr)


def test_tampered_built_archive_is_rejected(
    installed: dict[str, dict[str, object]], tmp_path: Path
) -> None:
    entry = json.loads(REGISTRY.read_text())["runtimes"]["python-3.11"]["1.0.0"]
    tampered = tmp_path / "python-3.11.tar.gz"
    data = bytearray((REGISTRY.parent / entry["url"]).read_bytes())
    data[len(data) // 3] ^= 0x01
    tampered.write_bytes(bytes(data))
    index = tmp_path / "registry.json"
    index.write_text(
        json.dumps({"runtimes": {"python-3.11": {"9.9.9": {**entry, "url": tampered.name}}}})
    )
    result = rnx("runtime", "install", "python-3.11@9.9.9", "--registry", str(index))
    assert result.returncode == 2
    assert "tampered with or damaged; nothing was installed" in result.stderr
    with Client() as client, tampered.open("rb") as stream, pytest.raises(RnxError) as refused:
        client.install_runtime("python-3.11", stream, size=entry["size"], sha256=entry["sha256"])
    assert "does not match the expected" in refused.value.message
    # The installed one is untouched and still works.
    assert installed["python-3.11"]["release"] == "1.0.0"
    code, out, _ = job("--runtime=python-3.11", "--", "python3", "-c", "print('still here')")
    assert (code, out) == (0, "still here\n")


CONSUMER = """
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.util.concurrent.atomic.AtomicInteger;

public class Consumer {
    public static void main(String[] args) throws Exception {
        AtomicInteger count = new AtomicInteger();
        HttpServer server = HttpServer.create(new InetSocketAddress(8080), 0);
        server.createContext("/messages", exchange -> {
            String body = new String(exchange.getRequestBody().readAllBytes());
            exchange.sendResponseHeaders(204, -1);
            exchange.close();
            if (count.incrementAndGet() == 100) {
                System.out.println("all 100 arrived, the last: " + body);
                System.exit(0);
            }
        });
        server.start();
        System.out.println("listening");
    }
}
"""


def test_message_queue_across_runtimes(
    installed: dict[str, dict[str, object]], tmp_path: Path
) -> None:
    """The design document's message-queue example: a Python producer (requests) posts 100
    messages to a Java consumer found by name on the network `message-queue`, which is made on
    the spot (root is admin). The consumer is compiled first: `java Consumer` as written needs
    a class file, and only Consumer.java is uploaded."""
    (tmp_path / "Consumer.java").write_text(CONSUMER)
    with Client() as client:
        consumer = client.run(
            ["bash", "-c", "javac Consumer.java && java Consumer"],
            runtime="java:17",
            network="message-queue",
            name="queue",
            uploads=[str(tmp_path / "Consumer.java")],
        )
        try:
            for line in client.logs(consumer.id):
                if line == "listening":
                    break
            code, out, err = job(
                "--runtime=python-3.11-ml",
                "--network=message-queue",
                "python",
                "-c",
                "import requests\n"
                "for i in range(100):\n"
                "    message = {'id': i, 'data': f'message {i}'}\n"
                "    requests.post('http://queue:8080/messages', json=message)\n"
                "print('sent')",
            )
            assert code == 0, out + err
            end = client.wait(consumer.id)
            lines = list(client.logs(consumer.id, follow=False))
            assert lines[-1] == 'all 100 arrived, the last: {"id": 99, "data": "message 99"}'
            assert end.exit_code == 0
        finally:
            if client.get(consumer.id).state == "RUNNING":
                client.stop(consumer.id)
            client.remove_network("message-queue")
