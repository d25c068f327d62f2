"""A checkpoint write that fails for want of space (docs/method.md, "Recipes and runs": checkpoints).

A full disk (ENOSPC), a quota (EDQUOT) or a file-size limit (EFBIG) while :class:`CheckpointManager`
writes reaches the command either as that ``OSError`` or, from ``torch.save``'s C++ writer, as a
``RuntimeError`` without an errno ("iostream error", "unexpected pos", "file write failed"). Either way
the checkpoint being written is only a ``.tmp-step_*`` folder and the previous checkpoint is intact;
:func:`describe` turns the failure into the one line ``chorus train`` prints (exit 2).
"""
from __future__ import annotations

import errno
import os
import shutil
from typing import Optional

SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
TORCH_WRITE_FAILURES = ("iostream error", "unexpected pos", "file write failed", "PytorchStreamWriter failed")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _save_frame(exc: BaseException):
    """The locals of ``CheckpointManager.save`` on the failure's traceback, or None."""
    for e in _chain(exc):
        tb = e.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_name == "save" and code.co_filename.endswith(os.path.join("train", "checkpoint.py")):
                return tb.tb_frame.f_locals
            tb = tb.tb_next
    return None


def describe(exc: BaseException, recipe_path: str) -> Optional[str]:
    """The message for a checkpoint write that ran out of space, or None for any other failure."""
    frame = _save_frame(exc)
    if frame is None:
        return None
    space = any(isinstance(e, OSError) and e.errno in SPACE_ERRNOS for e in _chain(exc))
    torch_write = any(isinstance(e, RuntimeError) and any(s in str(e) for s in TORCH_WRITE_FAILURES)
                      for e in _chain(exc))
    if not (space or torch_write):
        return None
    from chorus.train.checkpoint import latest_checkpoint

    manager = frame.get("self")
    root = getattr(manager, "root", None) or ""
    tmp = frame.get("tmp") or root
    cause = next((e for e in _chain(exc) if isinstance(e, OSError) and e.errno in SPACE_ERRNOS), exc)
    free = ""
    try:
        free = f"; {shutil.disk_usage(root).free / 2**20:.0f} MB free there"
    except OSError:
        pass
    last = latest_checkpoint(root) if root else None
    kept = f"the last complete checkpoint {last} is intact" if last else "no complete checkpoint was written yet"
    run_dir = os.path.dirname(root) if root else "RUN_DIR"
    return (f"no space to write checkpoint {tmp} ({type(cause).__name__}: {cause}{free}; a full disk, quota "
            f"or file-size limit); {kept}. Free space, then resume with: "
            f"chorus train {recipe_path} --out {run_dir} --resume")
