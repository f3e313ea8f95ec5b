"""Logging set-up shared by the command line and the workflow scripts."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from cxrgen.errors import CxrgenError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: int = logging.INFO, log_file: str | Path | None = None) -> None:
    """Log to stderr, and also to ``log_file`` (appended) when given."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)


@contextlib.contextmanager
def stage_log(log_file: str | Path, level: int = logging.INFO) -> Iterator[None]:
    """Run one pipeline stage with its log (and progress bars) going to ``log_file``.

    Used by the workflow scripts. Standard error is redirected into the log so tqdm's bars
    land there too. An error the user can fix (CxrgenError) is logged and repeated on the
    real standard error as one line, then the process exits with status 1, so the failing
    rule shows what to fix rather than a traceback.
    """
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    real_stderr = sys.stderr
    with open(log_file, "a", encoding="utf-8", buffering=1) as stream:
        sys.stderr = stream
        try:
            setup(level)
            yield
        except CxrgenError as exc:
            logging.getLogger("cxrgen").error("%s", exc)
            sys.stderr = real_stderr
            raise SystemExit(f"cxrgen error: {exc}") from exc
        except BaseException:
            logging.getLogger("cxrgen").exception("stage failed")
            raise
        finally:
            sys.stderr = real_stderr
            logging.basicConfig(handlers=[logging.StreamHandler(real_stderr)], force=True)
