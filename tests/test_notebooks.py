"""The lecture notebooks in notebooks/ run top to bottom in a fresh kernel, as a reader runs them.

The references live in the notebooks: each ends with an `assert` cell that holds its key numbers
against an independent reference (torch.autograd, torch.linalg, a closed form, each with its
tolerance stated beside it), and each widget callback is also called once directly, so executing
a notebook checks its numbers and its callbacks. A cell that raises fails the test with that
cell's traceback. The kernel is ipykernel's "python3", which jupyter_client starts with the
interpreter running the tests, one fresh kernel per notebook in its own temporary folder.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
import pytest
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from traitlets import Type, default

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds for one cell; a whole notebook takes a few seconds here
KERNELS_AT_ONCE = 2  # starting a kernel and importing torch dominate; two cores overlap them
WAKE_EVERY = 0.1  # seconds: the longest a missed wake-up can delay a message (see below)


class _WakefulChannel(AsyncZMQSocketChannel):
    """A kernel channel that looks for messages at least every `WAKE_EVERY` seconds.

    Now and then (a few notebooks in thirty here, after a cell that displays widgets) the
    asyncio poll on a kernel socket misses the wake-up of a message that has arrived, and the
    client sees it only when the poll times out and checks once more: nbclient's execute-reply
    wait then stalls for the whole cell timeout (measured: 120 s, with the reply stamped by the
    kernel two minutes earlier). Polling in short slices turns such a stall into at most
    `WAKE_EVERY` seconds and changes nothing else.
    """

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAKE_EVERY if deadline is None else deadline - time.monotonic()
            try:
                return await super().get_msg(timeout=max(0.0, min(WAKE_EVERY, left)))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise


class _WakefulClient(AsyncKernelClient):
    shell_channel_class = Type(_WakefulChannel)
    iopub_channel_class = Type(_WakefulChannel)


class _WakefulKernelManager(AsyncKernelManager):
    @default("client_factory")
    def _wakeful_client(self) -> type[AsyncKernelClient]:
        return _WakefulClient


def test_there_is_one_notebook_per_lecture() -> None:
    assert [path.name[:4] for path in PATHS] == ["000_", "001_", "002_", "003_", "004_"]


@pytest.mark.parametrize("path", PATHS, ids=[path.stem for path in PATHS])
def test_the_notebook_is_stored_valid_and_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)  # raises on anything that is not valid nbformat 4
    assert notebook.nbformat == 4
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    sources = "\n".join(cell.source for cell in code)
    assert "interactive_output" in sources and "assert " in sources  # widgets and a check


@pytest.fixture(scope="module")
def executed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The notebooks this session's tests ask for, executed `KERNELS_AT_ONCE` at a time.

    Maps each path to the executed notebook, or to the exception its execution raised (a
    `CellExecutionError` names the cell and carries its traceback).
    """
    wanted = [
        item.callspec.params["path"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_the_notebook_executes_and_its_checks_pass"
    ]

    async def execute(path: Path, slots: asyncio.Semaphore) -> Any:
        async with slots:
            notebook = nbformat.read(path, as_version=4)
            client = NotebookClient(
                notebook,
                timeout=CELL_TIMEOUT,
                kernel_name="python3",
                kernel_manager_class=_WakefulKernelManager,
                resources={"metadata": {"path": str(tmp_path_factory.mktemp(path.stem))}},
            )
            await client.async_execute()  # raises on the first cell that raises
            return notebook

    async def execute_all() -> list[Any]:
        slots = asyncio.Semaphore(KERNELS_AT_ONCE)
        runs = (execute(path, slots) for path in wanted)
        return await asyncio.gather(*runs, return_exceptions=True)

    # A loop of its own in a thread of its own: the browser tests' Playwright keeps an event
    # loop running in this thread for the whole session, and asyncio.run refuses to nest.
    with ThreadPoolExecutor(1) as thread:
        results = thread.submit(lambda: asyncio.run(execute_all())).result()
    return dict(zip(wanted, results, strict=True))


@pytest.mark.parametrize("path", PATHS, ids=[path.stem for path in PATHS])
def test_the_notebook_executes_and_its_checks_pass(path: Path, executed: Any) -> None:
    notebook = executed[path]
    if isinstance(notebook, BaseException):
        raise notebook
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    data = [output.get("data", {}) for output in outputs]
    assert any("image/png" in shown for shown in data), "no figure was displayed"
    widget = "application/vnd.jupyter.widget-view+json"
    assert any(widget in shown for shown in data), "no widget was displayed"
