import pytest
import torch
from safetensors.torch import load_file

from spiral.deploy.errors import InputError
from spiral.pipeline.distill.config import DistillConfig, LossWeights
from spiral.pipeline.distill.ddp import STUDENT_WEIGHTS, launch, model_from_ref, read_job
from spiral.pipeline.distill.train import distill
from spiral.pipeline.evaluate import evaluate_model
from spiral.pipeline.tasks import build_task

CFG = DistillConfig(epochs=3, batch_size=32, weights=LossWeights(feature=1.0))


@pytest.mark.slow
def test_two_gloo_processes_reach_the_accuracy_of_one(tmp_path, make_job, make_student, digits8, trained_teacher):
    job = make_job("ddp", CFG)

    two = launch(job, tmp_path / "job.json", processes=2)

    one = distill(make_student(), trained_teacher, *digits8, CFG)
    assert {h["processes"] for h in two.history} == {2}
    assert two.epochs_run == one.epochs_run == 3
    # Per-process batch-norm batches are half as large; across seeds the two differ by up to 0.022 here.
    assert abs(two.best_val_quality - one.best_val_quality) <= 0.04, (two.best_val_quality, one.best_val_quality)
    student = model_from_ref(job.student)
    student.load_state_dict(load_file(str(job.output_dir / STUDENT_WEIGHTS)))
    assert evaluate_model(student, digits8[1], build_task())["accuracy"] == pytest.approx(two.best_val_quality)
    assert torch.cuda.is_available() or two.history[-1]["precision"] == "fp32"


def test_a_job_with_an_unknown_key_is_an_input_error(tmp_path, make_job) -> None:
    path = tmp_path / "job.json"
    path.write_text(make_job("bad", CFG).model_dump_json().replace('"epochs"', '"epoch"'))
    with pytest.raises(InputError, match="config.epoch: Extra inputs are not permitted"):
        read_job(path)


def test_a_missing_job_file_is_an_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="cannot read distillation job"):
        read_job(tmp_path / "nowhere.json")


@pytest.mark.slow
def test_a_bad_job_under_torchrun_is_one_input_error(tmp_path, make_job) -> None:
    job = make_job("bad", CFG.model_copy(update={"batch_size": 33}))
    with pytest.raises(InputError, match="batch_size 33 does not split evenly across 2 processes"):
        launch(job, tmp_path / "job.json", processes=2)
