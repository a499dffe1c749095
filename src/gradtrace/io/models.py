"""A model from where users keep it: a factory in their code, a torch.save'd module, TorchScript.

package.module:factory   a callable that returns the model, imported with the current
                         folder on the path (so a local models.py works)
model.pt                 a module saved with torch.save(model), loaded with
                         torch.load(weights_only=False), which runs code from the file:
                         load only files you trust; its class is imported with the
                         current folder on the path too
model.ts / any archive   a TorchScript file (a bare nn.RNN / nn.LSTM / nn.GRU, since
                         TorchScript modules take no hooks)
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradtrace.errors import GradtraceError, check
from gradtrace.io.arrays import first_line

MODEL_FORMS = (
    "a TorchScript file (a bare nn.RNN/LSTM/GRU), a torch.save'd module (loaded with "
    "torch.load(weights_only=False), which runs code from the file: load only files you "
    "trust), or package.module:factory, a callable that returns the model"
)


def import_callable(spec: str, name: str) -> Any:
    """The object `attr` of `package.module` for a spec "package.module:attr".

    The current folder is put on the import path first, so a local module works.

    Raises:
        GradtraceError: if the spec is malformed, the module does not import, or it has no
            callable of that name.
    """
    module_name, _, attr = spec.partition(":")
    check(
        bool(module_name) and attr.isidentifier(),
        f"`{name}` must be package.module:function, got {spec!r}",
    )
    _current_folder_on_path()
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise GradtraceError(
            f"`{name}` module {module_name!r} could not be imported: {err}"
        ) from None
    check(hasattr(module, attr), f"`{name}` names {attr!r}, which {module_name!r} does not define")
    found = getattr(module, attr)
    check(
        callable(found),
        f"`{name}` names {attr!r} in {module_name!r}, which is a {type(found).__name__}, not "
        "a callable that returns a model",
    )
    return found


def _current_folder_on_path() -> None:
    """Put the current folder first on the import path, as `python script.py` would: a
    factory in a local models.py imports, and so does the class a torch.save'd module was
    pickled from."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def call_user(function: Any, spec: str, name: str, *args: Any) -> Any:
    """Call a user's function; whatever it raises, SystemExit included, becomes one sentence."""
    try:
        return function(*args)
    except (Exception, SystemExit) as err:  # the user's code: one line, never a traceback
        quiet = isinstance(err, SystemExit) and err.code is None
        detail = f": {first_line(err)}" if str(err).strip() and not quiet else ""
        raise GradtraceError(
            f"`{name}` {spec!r} raised {type(err).__name__}{detail}; expected it to return normally"
        ) from None


def is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (it carries code) rather than a pickle."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in n or n.endswith("constants.pkl") for n in archive.namelist())


def _load_file(path: Path) -> Any:
    if is_torchscript(path):
        with warnings.catch_warnings():  # torch 2.13 marks torch.jit deprecated; it still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    _current_folder_on_path()  # the pickle names its classes' modules: a local models.py
    return torch.load(path, weights_only=False, map_location="cpu")


def load_model(model: str | Path, name: str = "model") -> nn.Module:
    """Load the model that `model` names (see the module docstring), on the CPU.

    Raises:
        GradtraceError: if the file is missing or unreadable, or the factory does not import,
            fails, or returns something other than a torch.nn.Module.
    """
    spec = str(model)
    path = Path(spec)
    if path.is_file():
        try:
            loaded = _load_file(path)
        except Exception as err:  # a pickle can raise anything: every failure is "unreadable"
            if isinstance(err, AttributeError) and "__main__" in str(err):
                raise GradtraceError(  # pickle names the class by the saving script
                    f"`{name}` file {spec!r} holds a model whose class was defined in the "
                    f"script that saved it ({first_line(err)}); pickle finds classes by their "
                    "module, so move the class into a module beside the file (models.py) and "
                    "save again, or give package.module:factory"
                ) from None
            raise GradtraceError(
                f"`{name}` file {spec!r} could not be loaded ({type(err).__name__}: "
                f"{first_line(err)}); expected {MODEL_FORMS}"
            ) from None
    elif ":" in spec:
        loaded = call_user(import_callable(spec, name), spec, name)
    else:
        raise GradtraceError(
            f"`{name}` must be an existing file or package.module:factory, got {spec!r}"
        )
    check(
        isinstance(loaded, nn.Module),
        f"`{name}` must give a torch.nn.Module, got {type(loaded).__name__}",
    )
    return loaded
