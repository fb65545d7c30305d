"""DDP on CPU with gloo and 2 processes: ranks end identical, and match one process."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from pgf_sim.store import ResultStore
from pgf_sim.train.experiment import experiment_from_dict
from pgf_sim.train.trainer import train


pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str, cfg_dict: dict) -> None:
    # what torchrun sets for each process
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from pgf_sim.train import distributed

    cfg = experiment_from_dict(cfg_dict)
    summary = train(cfg, store=ResultStore(f"{tmp}/db.sqlite"), run_id="ddp", workdir=f"{tmp}/runs", progress=False)
    torch.save(summary.model.state_dict(), f"{tmp}/rank{rank}.pt")
    distributed.shutdown(distributed.context_from_env())


@pytest.mark.slow  # ~10 s idle, more on a busy machine: three processes import torch + DDP (dynamo)
def test_ddp_two_ranks_gloo(tmp_path, monkeypatch, tiny_dict):
    cfg_dict = tiny_dict(recipe="mdgf", steps=STEPS, checkpoint_every=2)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), cfg_dict), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key  # identical weights, hence identical masks

    store = ResultStore(tmp_path / "db.sqlite")
    assert store.get_run("ddp").status == "finished"
    ddp_loss = [v for _, _, v in store.run_metrics("ddp", "train_loss")]
    assert len(ddp_loss) == STEPS  # rank 0 alone wrote

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    single = train(experiment_from_dict(cfg_dict), store=store, run_id="single", workdir=tmp_path / "runs", progress=False)
    single_loss = [v for _, _, v in store.run_metrics("single", "train_loss")]
    # the same global batch split over 2 ranks: same loss and weights up to float summation order
    assert ddp_loss == pytest.approx(single_loss, rel=1e-4)
    s = single.model.state_dict()
    for key in r0:
        torch.testing.assert_close(r0[key], s[key], rtol=1e-3, atol=1e-4)
