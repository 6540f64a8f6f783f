"""The unmodified host source trees in ../shared/hosts/, unpacked on first use into the ignored .hosts/ folder."""
import shutil
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_HOSTS = REPO.parent / "shared" / "hosts"
UNPACKED = REPO / ".hosts"


def host_tree(prefix: str) -> Path:
    """The top folder of ../shared/hosts/<prefix>*.tar.gz, unpacked; FileNotFoundError naming what is missing."""
    archives = sorted(SHARED_HOSTS.glob(f"{prefix}*.tar.gz"))
    if not archives:
        raise FileNotFoundError(f"{SHARED_HOSTS}/{prefix}*.tar.gz is missing (the shared host source trees)")
    target = UNPACKED / archives[-1].name[:-len(".tar.gz")]
    done = target / ".unpacked"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(archives[-1]) as tar:
            tar.extractall(target, filter="data")
        done.touch()
    (top,) = [path for path in target.iterdir() if path.is_dir()]
    return top
