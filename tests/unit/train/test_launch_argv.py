"""Golden command lines: what `deepeyes sft` hands the executor for each launcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepeyes_cli.errors import LaunchError
from deepeyes_cli.launch.argv import build_plan, first_host
from deepeyes_cli.launch.config import LaunchConfig
from deepeyes_cli.launch.executor import RecordingExecutor
from deepeyes_cli.launch.run import execute
from deepeyes_cli.launch.slurm import parse_job_id

RUN = "/shared/runs/7b-sft-20261201T000000Z"
TAIL = ["--module", "deepeyes_cli.train", "--run-dir", RUN, "--stage", "sft"]


def _plan(environ=None, **launch):
    cfg = LaunchConfig(**launch)
    return build_plan(cfg, run_dir=RUN, python="/venv/bin/python", device="cuda", environ=environ or {},
                      cache_dir="/cache")


def test_torchrun_multi_node_static_and_c10d() -> None:
    plan = _plan(nnodes=2, gpus_per_node=8, master_addr="10.0.0.1", master_port=29501, rdzv_backend="static",
                 node_rank=1)
    assert [c.argv for c in plan.commands] == [
        ["/venv/bin/python", "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "8",
         "--node-rank", str(r), "--master-addr", "10.0.0.1", "--master-port", "29501", *TAIL] for r in (0, 1)]
    assert plan.run_here == 1
    env = plan.commands[0].env
    assert env["MASTER_ADDR"] == "10.0.0.1" and env["MASTER_PORT"] == "29501"
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    c10d = _plan(nnodes=4, gpus_per_node=8, master_addr="head", master_port=29500, rdzv_id="job7")
    assert c10d.commands[3].argv == [
        "/venv/bin/python", "-m", "torch.distributed.run", "--nnodes", "4", "--nproc-per-node", "8",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", "head:29500", "--rdzv-id", "job7", *TAIL]


def test_torchrun_single_node_cpu_gets_gloo_environment() -> None:
    cfg = LaunchConfig(gpus_per_node=2, zero_stage=3, master_port=29555, env={"NCCL_DEBUG": "WARN"})
    plan = build_plan(cfg, run_dir=RUN, python="py", device="cpu", environ={"NCCL_IB_DISABLE": "1", "SECRET": "x"},
                      resume=True)
    assert plan.commands[0].argv == ["py", "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                                     "--master-addr", "127.0.0.1", "--master-port", "29555", *TAIL, "--resume"]
    assert plan.commands[0].env == {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555", "OMP_NUM_THREADS": "1",
                                    "DS_ACCELERATOR": "cpu", "NCCL_IB_DISABLE": "1", "NCCL_DEBUG": "WARN"}


def test_deepspeed_with_hostfile(tmp_path: Path) -> None:
    plan = _plan(launcher="deepspeed", nnodes=4, gpus_per_node=8, hostfile="/etc/ds/hostfile", master_addr="n0")
    assert plan.commands[0].argv == [
        "/venv/bin/python", "-m", "deepspeed.launcher.runner", "--hostfile", "/etc/ds/hostfile", "--num_nodes", "4",
        "--num_gpus", "8", "--master_addr", "n0", "--master_port", "29500", *TAIL]
    assert plan.commands[0].env["DS_ENV_FILE"] == f"{RUN}/.deepspeed_env"
    with pytest.raises(LaunchError, match="needs a hostfile"):
        _plan(launcher="deepspeed", nnodes=2)


def test_srun_inside_an_allocation() -> None:
    env = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-10]"}
    plan = _plan(env, launcher="srun", nnodes=4, gpus_per_node=8, master_port=29600)
    assert plan.commands[0].argv == [
        "srun", "--nodes", "4", "--ntasks-per-node", "1", "--kill-on-bad-exit=1",
        "/venv/bin/python", "-m", "torch.distributed.run", "--nnodes", "4", "--nproc-per-node", "8",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", "gpu07:29600", "--rdzv-id", "4242", *TAIL]
    assert plan.commands[0].env["MASTER_ADDR"] == "gpu07"
    with pytest.raises(LaunchError, match="outside a SLURM allocation"):
        _plan({}, launcher="srun", nnodes=4)


def test_sbatch_script_is_written_submitted_and_the_job_id_recorded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    cfg = LaunchConfig(launcher="srun", nnodes=4, gpus_per_node=8,
                       slurm={"partition": "gpu", "account": "proj", "time": "12:00:00", "setup": ["module load cuda"]})
    plan = build_plan(cfg, run_dir=run, python="/venv/bin/python", device="cuda", environ={}, slurm=True)
    executor = RecordingExecutor(outputs=["981234;cluster\n"])
    result = execute(plan, run, executor)
    assert result.job_id == "981234"
    assert executor.calls[0][0] == ["sbatch", "--parsable", str(run / "sbatch.sh")]
    script = (run / "sbatch.sh").read_text()
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --time=12:00:00", "module load cuda"):
        assert line in script.splitlines()
    assert script.splitlines()[-1] == (
        "srun --nodes 4 --ntasks-per-node 1 --kill-on-bad-exit=1 /venv/bin/python -m torch.distributed.run "
        "--nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint \"$HEAD:29500\" --rdzv-id "
        f"\"$SLURM_JOB_ID\" --module deepeyes_cli.train --run-dir {run} --stage sft")
    assert (run / "slurm_job_id").read_text().strip() == "981234"
    assert '"job_id": "981234"' in (run / "launch.json").read_text()


def test_local_runs_one_process_and_helpers() -> None:
    plan = _plan(launcher="local")
    assert plan.commands[0].argv == ["/venv/bin/python", "-m", "deepeyes_cli.train", *TAIL[2:]]
    with pytest.raises(LaunchError, match="runs one process"):
        _plan(launcher="local", gpus_per_node=2)
    assert first_host("gpu[03-06,9],cpu1") == "gpu03" and first_host("node17") == "node17"
    with pytest.raises(LaunchError):
        parse_job_id("sbatch: error: invalid partition")
