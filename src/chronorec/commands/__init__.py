"""CLI subcommands; each module registers itself with ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from chronorec.errors import ChronorecError

if TYPE_CHECKING:
    from chronorec.recommender import Recommender


def check_out_dir(
    out: Path, force: bool, run: Path | None = None, what: str = "run directory"
) -> None:
    """Refuse to write into ``out`` when it holds something (unless ``force``) or is ``run``,
    the run the command reads; ``what`` names ``out`` in the message."""
    if run is not None and out.resolve() == run.resolve():
        raise ChronorecError(f"{out}: --out must be a new directory, not the run itself")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ChronorecError(f"{out}: {what} exists (use --force to overwrite)")


def write_dir(out: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a new directory beside ``out``, then put it in ``out``'s place
    (replacing what was there): the directory appears whole or not at all."""
    from chronorec.training.checkpoint import current_umask

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; give the usual mode
    try:
        write(tmp)
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_with_dataset(run: Path, data: Path | None) -> Recommender:
    """The run with its prepared dataset attached (``data``, else the one it was trained on)."""
    from chronorec.recommender import Recommender

    rec = Recommender.load(run, data)
    if rec.dataset is None:
        raise ChronorecError(
            f"{run}: its dataset {rec.meta.get('dataset')!r} is gone; give it with --data"
        )
    return rec


def write_derived_run(out: Path, rec: Recommender, source: Path) -> None:
    """Save ``rec``, a run made from the run ``source``, to ``out`` whole or not at all, with
    ``source``'s saved blend (linear or learned) going along."""
    from chronorec.blend import BLEND_FILE, LEARNED_FILE

    def write(tmp: Path) -> None:
        rec.save(tmp)
        for name in (BLEND_FILE, LEARNED_FILE):
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)

    write_dir(out, write)


def add_store_argument(p: argparse.ArgumentParser) -> None:
    """``--db``: the event store of the service a command reads (see :func:`store_url`)."""
    p.add_argument(
        "--db",
        default=None,
        help="the service's event store URL, as given to `chronorec serve` (default: "
        "CHRONOREC_DB_URL or sqlite:///chronorec-events.db)",
    )


def store_url(given: str | None) -> str:
    """The URL of an existing service event store: ``--db``, else the service's default
    (``CHRONOREC_DB_URL`` or ``sqlite:///chronorec-events.db``)."""
    from chronorec.service.settings import ServiceSettings

    url = ServiceSettings.from_env(db_url=given).db_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise ChronorecError(f"--db {url}: no such event store (the file does not exist)")
    return url
