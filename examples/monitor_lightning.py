"""The word-level LSTM language model of `monitor_word_lm.py`, trained by PyTorch Lightning with
gradtrace's callback doing the monitoring, then the same report.

Lightning owns the loop here: `GradtraceCallback` opens a monitored step for every batch,
audits Lightning's own gradient clipping (`gradient_clip_val`) and writes the run into OUT.
The hidden state is carried between windows inside the module (detached), as truncated BPTT
does; needs the `lightning` extra (pip install 'gradtrace[lightning]').

    python examples/monitor_lightning.py --data tests/data/tiny.txt --steps 200 --out runs/wlm-pl
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitor_word_lm import WordLM, batchify, tokenize

from gradtrace.report import monitor_report


def main(argv: list[str] | None = None) -> None:
    try:
        import lightning as L
    except ImportError:
        raise SystemExit(
            "this example needs Lightning: pip install 'gradtrace[lightning]'"
        ) from None
    from gradtrace.monitor.lightning import GradtraceCallback

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("tests/data/tiny.txt"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--clip", type=float, default=0.25)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/word_lm_lightning"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    ids, vocab = tokenize(args.data)
    streams = batchify(ids, args.batch)  # (N, B)
    windows = [
        (streams[i : i + args.bptt], streams[i + 1 : i + 1 + args.bptt])
        for i in range(0, streams.shape[0] - args.bptt - 1, args.bptt)
    ]

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = WordLM(len(vocab), args.size, 2, 0.2)
            self.hidden: tuple[Tensor, Tensor] | None = None

        def forward(self, tokens: Tensor, hidden: tuple[Tensor, Tensor]) -> Any:
            return self.net(tokens, hidden)

        def training_step(self, batch: Any, batch_idx: int) -> Tensor:
            tokens, targets = batch[0][0], batch[1][0]  # one window per batch
            if self.hidden is None or batch_idx == 0:
                self.hidden = self.net.init_hidden(tokens.shape[1])
            output, hidden = self(tokens, tuple(h.detach() for h in self.hidden))
            self.hidden = hidden
            return F.nll_loss(output, targets.reshape(-1))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=args.lr)

    loader = torch.utils.data.DataLoader(windows, batch_size=1, shuffle=False)
    callback = GradtraceCallback(every=args.every, log=args.out, chunk=args.chunk)
    trainer = L.Trainer(
        max_steps=args.steps, callbacks=[callback], gradient_clip_val=args.clip,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=str(args.out),
    )  # fmt: skip
    with warnings.catch_warnings():  # Lightning's own notes (dataloader workers, pytree)
        warnings.simplefilter("ignore")
        trainer.fit(Module(), loader)
    report = monitor_report(args.out, args.out / "report")
    print(f"trained {args.steps} steps with Lightning; {report.steps} recorded")
    for line in report.verdicts:
        print(f"- {line}")
    print(f"report: {args.out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
