"""Start a real WebUI as its own application (`launch.py`, the host's own venv), with this repository in its
`extensions/` folder, a tiny random checkpoint and no download; for tests through HTTP and in a browser.

    with webui_app(host, ui=True, probe=False, settings=None, extra_args=(), timeout=420) as app:
        requests.post(f"{app.api}/txt2img", json={...})

- `host`: "a1111" (AUTOMATIC1111 1.10.1, .venv-a1111), "forge" (Forge main dfdcbab6, .venv-forge),
  "reforge" (reForge 3b56b268) or "classic" (Forge Classic 1f95d717), the last two in .venv-forks; each
  from its tarball in ../shared/hosts/, unpacked into the ignored .hosts/.
- `ui`: True starts `--api` (the gradio page at `app.url` and the API on the same server); False starts
  `--nowebui` (the API alone; there X/Y/Z lacks the axes an extension adds only in `on_before_ui`, see
  ../shared/notes/hosts.md).
- `probe`: also place tests/webui_probe (routes for the hand reference computed in the server's process).
- `settings`: entries written to the data folder's config.json before start (the WebUI's Settings).
- Yields an `App`: `url` (http://127.0.0.1:PORT), `api` (`url` + /sdapi/v1), `root` (the host tree), `data`
  (its --data-dir, a fresh folder under .hosts/apps/, removed afterwards), `log` (stdout and stderr of the
  process; `app.console()` reads it), `checkpoints` (their titles, the first loaded at start).
- Ready when the log shows "Startup time:" (an earlier HTTP 200 is not enough: Forge main answers before its
  scripts' default args exist, and a request then kills the forks' API thread). On exit the whole process
  group gets SIGTERM, then SIGKILL.
- Raises `HostUnavailable` (say why: a test skips with it) when the host's tarball or venv is missing, and
  RuntimeError with the log's tail when the host dies or does not get ready in `timeout` seconds.
"""
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import REPO, free_port
from skip_tuning_lab.hosts import UNPACKED, host_tree

TESTS = Path(__file__).resolve().parent
CHECKPOINTS = UNPACKED / "checkpoints"
APPS = UNPACKED / "apps"
A1111 = "a1111-"

# Flags from ../shared/notes/hosts.md ("The Forge WebUIs started as applications"; A1111 1.10.1): CPU, no
# download, no install, nothing outside 127.0.0.1.
COMMON = ["--skip-prepare-environment", "--skip-install", "--skip-python-version-check", "--skip-torch-cuda-test",
          "--skip-version-check", "--no-download-sd-model", "--disable-console-progressbars", "--server-name", "127.0.0.1"]
FORKS = ["--always-cpu", "--no-half"]


@dataclasses.dataclass(frozen=True)
class Host:
    tarball: str  # prefix of its file in ../shared/hosts/
    venv: str
    checkpoints: str  # kind in tests/webui_checkpoints.py
    flags: tuple


HOSTS = {
    "a1111": Host(A1111, ".venv-a1111", "a1111",
                  ("--use-cpu", "all", "--no-half", "--no-half-vae", "--precision", "full")),
    "forge": Host("forge-dfdcbab6", ".venv-forge", "forge", ("--always-cpu",)),
    "reforge": Host("reforge-", ".venv-forks", "forks", tuple(FORKS)),
    "classic": Host("forge-classic-", ".venv-forks", "forks", tuple(FORKS)),
}


class HostUnavailable(Exception):
    """What is missing for this host to start here (its tarball, its venv)."""


@dataclasses.dataclass
class App:
    host: str
    url: str
    root: Path
    data: Path
    log: Path
    checkpoints: list
    process: subprocess.Popen

    @property
    def api(self) -> str:
        return f"{self.url}/sdapi/v1"

    def console(self) -> str:
        return self.log.read_text(errors="replace")


def host_python(host: str) -> Path:
    python = REPO / HOSTS[host].venv / "bin" / "python"
    if not python.exists():
        raise HostUnavailable(f"the venv for {host} is missing ({python}): run tools/setup.sh")
    return python


def source_tree(host: str) -> Path:
    try:
        return host_tree(HOSTS[host].tarball)
    except FileNotFoundError as missing:
        raise HostUnavailable(f"{host}'s source is not here: {missing}") from None


def prepare_tree(host: str, root: Path) -> None:
    """`--api` needs a `repositories/stable-diffusion-webui-assets` folder (its UI thread dies without one);
    the forks import ldm, sgm and k-diffusion from `repositories/`, the same commits as A1111 1.10.1's tarball
    holds (reForge pins a fork of ldm that is not reachable here)."""
    repositories = root / "repositories"
    (repositories / "stable-diffusion-webui-assets").mkdir(parents=True, exist_ok=True)
    if HOSTS[host].checkpoints == "forks":
        for name in ("stable-diffusion-stability-ai", "generative-models", "k-diffusion"):
            if not (repositories / name).exists():
                (repositories / name).symlink_to(source_tree("a1111") / "repositories" / name)


def checkpoint_folder(kind: str) -> Path:
    """KIND's checkpoints (tests/webui_checkpoints.py), built once and kept in .hosts/checkpoints/, keyed by the
    files that build them; a lock lets two test sessions share them."""
    builders = [TESTS / "webui_checkpoints.py", TESTS / "tiny_models.py"]
    key = hashlib.sha256(b"".join(path.read_bytes() for path in builders)).hexdigest()[:12]
    folder = CHECKPOINTS / f"{kind}-{key}"
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    with open(CHECKPOINTS / f"{kind}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".done").exists():
            for stale in CHECKPOINTS.glob(f"{kind}-*"):  # built by earlier builders: up to 1.2 GB each
                shutil.rmtree(stale, ignore_errors=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            if kind == "a1111":
                command = [host_python("a1111"), TESTS / "webui_checkpoints.py", kind, folder, source_tree("a1111")]
                # webui_site's sitecustomize: ldm imports torchvision (through pytorch_lightning), whose CUDA wheel
                # dies beside CPU torch unless its ops are declared first.
                env["PYTHONPATH"] = str(TESTS / "webui_site")
            else:
                command = [REPO / ".venv" / "bin" / "python", TESTS / "webui_checkpoints.py", kind, folder]
            done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"building the {kind} checkpoints failed:\n{done.stderr[-4000:]}")
            (folder / ".done").touch()
    return folder


@contextlib.contextmanager
def webui_app(host: str, ui: bool = True, probe: bool = False, settings: dict = None, extra_args=(),
              timeout: float = 420):
    spec = HOSTS[host]
    python, root = host_python(host), source_tree(host)
    prepare_tree(host, root)
    models = checkpoint_folder(spec.checkpoints) / "models"
    APPS.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix=f"{host}-", dir=APPS))
    (data / "extensions").mkdir()
    (data / "extensions" / "skip-tuning").symlink_to(REPO)
    if probe:
        (data / "extensions" / "skip-tuning-probe").symlink_to(TESTS / "webui_probe")
    # reForge's live preview downloads a model at the first generation (HTTP 500 here without a network).
    config = {"sd_model_checkpoint": "tiny.safetensors", "live_previews_enable": False, **(settings or {})}
    (data / "config.json").write_text(json.dumps(config))
    port = free_port()
    command = [str(python), "launch.py", *COMMON, *spec.flags, "--api" if ui else "--nowebui", "--port", str(port),
               "--data-dir", str(data), "--ckpt-dir", str(models), "--ckpt", str(models / "tiny.safetensors"),
               *extra_args]
    env = {**os.environ, "PYTHONPATH": str(TESTS / "webui_site"), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("VIRTUAL_ENV", None)
    log = data / "console.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    app = App(host, f"http://127.0.0.1:{port}", root, data, log,
              sorted(p.name for p in models.glob("*.safetensors")), process)
    try:
        deadline = time.monotonic() + timeout
        # With --nowebui the hosts print "Startup time:" before uvicorn binds the port (forge/webui.py, api_only:
        # the print precedes api.launch), so the port must answer too: a loaded machine lost that race.
        while "Startup time:" not in app.console() or not listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {process.returncode}" if process.poll() is not None else f"not ready in {timeout} s"
                raise RuntimeError(f"{host} {why}: {' '.join(command)}\n{app.console()[-6000:]}")
            time.sleep(0.5)
        yield app
    finally:
        stop(process)
        shutil.rmtree(data, ignore_errors=True)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        return True
    return False


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group the host started in (its own children too), SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
